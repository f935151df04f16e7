"""``coalqa serve``: the fine-tuned model behind an OpenAI-compatible API and a web page.

::

    coalqa serve --peft_model DIR                          # http://127.0.0.1:8000/ (page), /v1 (API)
    COALQA_API_KEY=… coalqa serve --peft_model DIR --host 0.0.0.0
    coalqa serve --backend_url http://gpu-host:8000/v1 --backend_model coal   # in front of vLLM
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from coalqa.config import config_options, load_config
from coalqa.errors import CoalqaError, StopRequested
from coalqa.serve.config import ServeConfig
from coalqa.web import is_loopback

ENV_API_KEY = "COALQA_API_KEY"


@config_options(ServeConfig, bool_style="flag", exclude=("show_think",))
def serve(
    peft_model: Annotated[
        Path | None, typer.Option("--peft_model", help="LoRA adapter folder written by `coalqa train` (proxy mode: "
                                  "only its prompt format is read).")
    ] = None,
    adapter: Annotated[
        bool, typer.Option("--adapter/--no-adapter", help="--no-adapter: serve the base model alone, same prompt format.")
    ] = True,
    api_key: Annotated[
        str | None, typer.Option("--api_key", help=f"require 'Authorization: Bearer KEY' on /v1 (default: "
                                 f"${ENV_API_KEY}; prefer the variable: a flag shows in the process list)",
                                 show_default=False)
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with ServeConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Serve the model: OpenAI-compatible API (/v1/chat/completions, /v1/models) and a chat page at /."""
    cfg = load_config(ServeConfig, config, overrides)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    api_key = api_key or os.environ.get(ENV_API_KEY) or None
    proxy = cfg.backend_url is not None
    _check_settings(cfg, peft_model, api_key, err)

    from coalqa.chat_model import ChatModel, announce_grounding, load_index_for, start_model

    index = load_index_for(peft_model, cfg, use_adapter=adapter)
    if proxy:
        from coalqa.serve.proxy import ProxyEngine

        served = ChatModel.prompt_format_only(peft_model, cfg.system_prompt)
        served.index = index
        announce_grounding(served, cfg, err)
        engine = ProxyEngine(cfg, served.fmt)
        what = f"backend {cfg.backend_url} model {cfg.backend_model}"
    else:
        from coalqa.serve.engine import LocalEngine

        served = start_model(peft_model, cfg, use_adapter=adapter, console=err, index=index)
        engine = LocalEngine(served.loaded, cfg)
        what = f"{served.summary()} · batches of up to {cfg.batch_size}"

    import uvicorn

    from coalqa.serve.app import create_app

    grounder = None
    if index is not None:
        from coalqa.serve.grounding import Grounder

        grounder = Grounder(index, cfg, served)
    feedback_context = None
    if cfg.feedback_dir is not None:
        feedback_context = _feedback_context(cfg, peft_model if adapter else None, index)
        what += f"\nfeedback on answers → {cfg.feedback_dir / 'feedback.jsonl'} (review: coalqa review --feedback {cfg.feedback_dir})"
    app = create_app(engine, cfg, api_key=api_key, grounder=grounder, feedback_context=feedback_context)
    url = f"http://{cfg.host if ':' not in cfg.host else f'[{cfg.host}]'}:{cfg.port}"
    err.print(f"{what}", style="dim", markup=False)
    err.print(f"serving {cfg.served_model_name!r}: page {url}/ · API {url}/v1 · "
              f"{'API key required' if api_key else 'no API key'}"
              + (f" · CORS {', '.join(cfg.cors_origins)}" if cfg.cors_origins else ""), markup=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Ctrl-C/SIGTERM: uvicorn stops taking requests, gives answers still streaming 10 s, then cancels their
    # generations; it re-raises the signal afterwards, which is ignored for SIGTERM and reported like Ctrl-C here.
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           timeout_graceful_shutdown=10))
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if server.should_exit and not server.started:
        raise CoalqaError(f"could not serve on {cfg.host}:{cfg.port} (see the error above: port in use?)")
    raise StopRequested("SIGTERM")


def _check_settings(cfg: ServeConfig, peft_model: Path | None, api_key: str | None, err: Console) -> None:
    """Refuse settings that cannot serve (proxy flags without each other, no model at all); warn about a non-local
    address without an API key.

    Raises:
        CoalqaError: ``--backend_url`` without ``--backend_model`` or the reverse, or no model to serve.
    """
    proxy = cfg.backend_url is not None
    if proxy and not cfg.backend_model:
        raise CoalqaError("--backend_url needs --backend_model (the model name the backend serves, e.g. vLLM's "
                          "--lora-modules name)")
    if cfg.backend_model and not proxy:
        raise CoalqaError("--backend_model needs --backend_url (the backend's API, e.g. http://gpu-host:8000/v1)")
    if not proxy and peft_model is None and cfg.model_name_or_path is None:
        raise CoalqaError("give --peft_model DIR (the output folder of `coalqa train`), --model_name_or_path with "
                          "--no-adapter, or --backend_url/--backend_model")
    if not is_loopback(cfg.host) and api_key is None:
        err.print(f"[yellow]warning:[/] listening on {escape(cfg.host)} without an API key: anyone who can reach "
                  f"this machine can use the model (set {ENV_API_KEY})")


def _feedback_context(cfg: ServeConfig, peft_model: Path | None, index) -> dict:
    """What every feedback item records about this server: model name, adapter folder and the SHA-256 of its weights,
    index folder and fingerprint."""
    from coalqa.jsonio import file_sha256

    weights = peft_model / "adapter_model.safetensors" if peft_model is not None else None
    return {"model": cfg.served_model_name, "adapter": str(peft_model.resolve()) if peft_model else None,
            "adapter_fingerprint": file_sha256(weights)[:16] if weights is not None and weights.is_file() else None,
            "index": str(cfg.index) if cfg.index else None,
            "index_fingerprint": getattr(index, "fingerprint", None) if index is not None else None}
