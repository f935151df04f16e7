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
import warnings
from pathlib import Path
from types import SimpleNamespace
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

    index = None
    if cfg.index is not None:
        from coalqa.retrieval import load_index

        index = load_index(cfg.index)  # before the model: a missing or stale index fails in a second
        if peft_model is not None and adapter:
            from coalqa.grounding import check_adapter_fits_index

            check_adapter_fits_index(peft_model, index, cfg)

    if proxy:
        from coalqa.serve.proxy import ProxyEngine

        served = _adapter_info(peft_model, cfg.system_prompt)
        engine = ProxyEngine(cfg, served.fmt)
        what = f"backend {cfg.backend_url} model {cfg.backend_model}"
    else:
        from coalqa.ask.inference import load_model
        from coalqa.serve.engine import LocalEngine

        err.print(f"loading {peft_model or cfg.model_name_or_path} …", style="dim", markup=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="coalqa")
            loaded = load_model(peft_model, model_name_or_path=cfg.model_name_or_path, load_in_4bit=cfg.load_in_4bit,
                                dtype=cfg.dtype, use_adapter=adapter, system_prompt=cfg.system_prompt)
        for note in loaded.notes:
            err.print(f"[yellow]note:[/] {escape(note)}")
        engine = LocalEngine(loaded, cfg)
        served = loaded
        what = (f"base {loaded.base} · adapter {loaded.adapter or '(none)'} · "
                f"{'4-bit NF4, ' if loaded.load_in_4bit else ''}{loaded.dtype} ({loaded.dtype_reason}) · "
                f"system prompt {repr(loaded.fmt.system_prompt[:20] + '…') if loaded.fmt.system_prompt else 'none'} · "
                f"batches of up to {cfg.batch_size}")

    import uvicorn

    from coalqa.serve.app import create_app

    grounder = None
    if index is not None:
        from coalqa.serve.grounding import Grounder

        grounder = Grounder(index, cfg, served)
        what += (f"\ngrounded on {index.path} ({index.manifest['chunks']} chunks): {grounder.k} clauses per question, "
                 f"min_score {cfg.min_score}, {'abstain' if cfg.abstain else 'answer'} when none supports it")
    elif served.train_context:
        err.print(f"[yellow]note:[/] this adapter was trained to answer from retrieved clauses (index "
                  f"{escape(str(served.train_context.get('index')))}); pass --index for grounded answers")
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


def _feedback_context(cfg: ServeConfig, peft_model: Path | None, index) -> dict:
    """What every feedback item records about this server: model name, adapter folder and the SHA-256 of its weights,
    index folder and fingerprint."""
    from coalqa.jsonio import file_sha256

    weights = peft_model / "adapter_model.safetensors" if peft_model is not None else None
    return {"model": cfg.served_model_name, "adapter": str(peft_model.resolve()) if peft_model else None,
            "adapter_fingerprint": file_sha256(weights)[:16] if weights is not None and weights.is_file() else None,
            "index": str(cfg.index) if cfg.index else None,
            "index_fingerprint": getattr(index, "fingerprint", None) if index is not None else None}


def _adapter_info(peft_model: Path | None, system_prompt: str | None) -> SimpleNamespace:
    """Proxy mode: what the local model would have told from the adapter folder, without loading weights: its prompt
    format (``fmt``: the recorded one, or a bare base's without a system prompt; ``--system_prompt`` replaces the
    system prompt, :func:`coalqa.template.inference_format`), ``train_context`` and ``adapter``."""
    from coalqa.template import PromptFormat, inference_format

    if peft_model is None:
        return SimpleNamespace(fmt=inference_format(None, system_prompt), train_context=None, adapter=None)
    from coalqa.ask.inference import read_adapter_folder, training_context

    _, train_cfg = read_adapter_folder(peft_model)
    try:
        trained = PromptFormat(**{k: train_cfg[k] for k in PromptFormat.model_fields if k in train_cfg})
    except ValueError as e:
        raise CoalqaError(f"{peft_model}: invalid prompt format in train_config.yaml: {e}") from e
    return SimpleNamespace(fmt=inference_format(trained, system_prompt), train_context=training_context(train_cfg),
                           adapter=peft_model)
