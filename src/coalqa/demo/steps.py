"""The steps of ``coalqa demo``, each cached under ``work_dir`` in a file named by a hash of the step's inputs and
settings (:func:`cache_key`), reused on a rerun; :mod:`coalqa.demo.run` calls them in order."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from coalqa.demo.config import DemoConfig, max_new_tokens
from coalqa.errors import CoalqaError
from coalqa.eval.panels import NOT_TRAINED, TRAINED
from coalqa.eval.references import overlaps_span, training_subset
from coalqa.jsonio import file_sha256, write_json_atomic

if TYPE_CHECKING:
    from coalqa.retrieval.index import Index
    from coalqa.template import PromptFormat


@dataclasses.dataclass
class Step:
    """What one step produced, for the summary."""

    name: str
    seconds: float
    reused: bool
    output: str


def cache_key(*parts: Any) -> str:
    """The first 12 hex digits of the SHA-256 of ``parts``, each as sorted-key JSON (``str`` for other types), NUL-separated:
    the name of a step's cached output; a change in any part names a new file."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def reuse_or_run(done: Path, run: Callable[[], object]) -> bool:
    """The demo's cache: ``True`` (reused) when ``done`` exists — the file a step writes last, named by a hash of the
    step's inputs and settings (:func:`cache_key`) — else ``run()`` (which writes it) and ``False``."""
    if done.exists():
        return True
    run()
    return False



def base_model(cfg: DemoConfig, console: Console) -> tuple[str, str, bool]:
    """``(model folder or Hub id, description, reused)`` of the base model to fine-tune: ``--model_name_or_path``, else
    the offline stand-in (:func:`coalqa.offline.standin_model`)."""
    if cfg.model_name_or_path:
        return cfg.model_name_or_path, cfg.model_name_or_path, True
    from coalqa.offline import standin_model

    return standin_model(cfg.work_dir, fast=cfg.fast, standin=cfg.standin, say=console.print)


def pick_documents(cfg: DemoConfig, references: list[dict[str, Any]]) -> list[Path]:
    """The regulation files to use: all under ``docs``, or the ``max_docs`` smallest holding eval items."""
    from coalqa.eval.references import documents_holding

    return documents_holding(cfg.docs, references, cfg.max_docs, cfg.references)


def step_corpus(cfg: DemoConfig, docs: list[Path], console: Console) -> tuple[Path, list[dict[str, Any]], bool]:
    """Chunk ``docs`` into ``work_dir/chunks-<key>.jsonl`` (key: document texts + chunk size)."""
    from coalqa.corpus import load_documents, split_into_chunks, write_chunks
    from coalqa.generate import load_chunks

    documents, skipped = load_documents(docs)
    for path, reason in skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    if not documents:
        raise CoalqaError(f"nothing could be read from {', '.join(map(str, docs))}")
    key = cache_key("corpus-v2", cfg.chunk_chars, [(d.source, d.text) for d in documents])
    path = cfg.work_dir / f"chunks-{key}.jsonl"
    reused = reuse_or_run(path, lambda: write_chunks([c for d in documents for c in split_into_chunks(d, cfg.chunk_chars)], path))
    chunks = load_chunks(path)
    console.print(f"{len(documents)} documents → {len(chunks)} chunks of ≤ {cfg.chunk_chars} characters: {path}", highlight=False)
    return path, chunks, reused


def generation_provider(cfg: DemoConfig) -> tuple[str, str | None]:
    """``(provider, model)`` of QA generation: ``--provider``, else the first whose API key is set
    (:data:`coalqa.llm.KEY_ENV`), else the offline clause generator."""
    from coalqa.llm import KEY_ENV

    if cfg.provider != "auto":
        return cfg.provider, cfg.generate_model
    for provider in ("zhipuai", "openai"):
        if os.environ.get(KEY_ENV[provider], "").strip():
            return provider, cfg.generate_model or ("gpt-4o-mini" if provider == "openai" else None)
    return "clause", None


def step_generate(
    cfg: DemoConfig, chunks: list[dict[str, Any]], references: list[dict[str, Any]], sources: dict[str, int],
    chunks_key: str, console: Console,
) -> tuple[Path, set[str], bool, str]:
    """QA pairs for the training subset → ``work_dir/qa-<key>.json``; returns (path, trained item ids, reused, provider)."""
    from coalqa.generate import GenerateConfig, run_generate
    from coalqa.generate.run import CLAUSE_VERSION

    trained, picked, spans = training_subset(chunks, references, sources, cfg.holdout_every, cfg.neighbours)
    if not picked:  # documents without the eval set's sources: train on the first chunks instead
        console.print(f"[yellow]none of the eval items' source spans is in {cfg.docs}[/]: training on the first 20 chunks")
        picked = list(range(min(20, len(chunks))))
    subset = [chunks[j] for j in picked]
    provider, model = generation_provider(cfg)
    kinds = sorted(cfg.clause_kinds) if provider == "clause" else None
    key = cache_key("generate-v3", chunks_key, [c["id"] for c in subset], sorted(spans.items()), provider, model, cfg.max_answer_chars,
               kinds, CLAUSE_VERSION)
    path = cfg.work_dir / f"qa-{key}.json"
    kept_path = cfg.work_dir / f"qa-{key}.train.json"

    def generate() -> None:
        gen = GenerateConfig(provider=provider, max_answer_chars=cfg.max_answer_chars, **({"model": model} if model else {}),
                             **({"clause_kinds": kinds} if kinds else {}))
        console.print(f"generating QA pairs for {len(subset)} chunks with the {provider} generator", highlight=False)
        run_generate(subset, path, gen, console=console)
        rows = json.loads(path.read_text(encoding="utf-8"))
        by_id = {c["id"]: c for c in subset}
        if provider == "clause":  # answers are the chunk's own text: keep those holding the eval spans
            rows = [r for r in rows if r["chunk_id"] not in spans or overlaps_span(r["output"], by_id[r["chunk_id"]]["text"], spans[r["chunk_id"]])]
        if not rows:
            raise CoalqaError(f"the {provider} generator produced no QA pairs for the training subset (see {path})")
        write_json_atomic(kept_path, rows)  # its existence marks the step done, so never half-written

    reused = reuse_or_run(kept_path, generate)
    rows = json.loads(kept_path.read_text(encoding="utf-8"))
    console.print(f"{len(rows)} QA pairs from {len(subset)} chunks ({provider}): {kept_path}", highlight=False)
    return kept_path, {r["id"] for r in trained}, reused, provider



def step_train(cfg: DemoConfig, train_cfg, dtype: str, console: Console) -> tuple[Path, bool]:
    """Fine-tune into ``work_dir/train/demo-<key>`` (key: QA file content + every training setting + the compute
    dtype ``auto`` resolved to). An interrupted run (Ctrl-C, SIGTERM) keeps its checkpoint, stops the demo, and is
    resumed by the next ``coalqa demo``."""
    from coalqa.train.trainer import run, run_finished

    key = cache_key("train-v1", file_sha256(train_cfg.data), train_cfg.model_dump(mode="json", exclude={"data", "output_dir", "run_name"}),
               dtype)
    run_dir = cfg.work_dir / "train" / f"demo-{key}"
    if run_finished(run_dir):
        return run_dir, True
    update: dict[str, Any] = {"output_dir": run_dir.parent, "run_name": run_dir.name}
    if run_dir.is_dir():
        if any(run_dir.glob("checkpoint-*/trainer_state.json")):
            update["resume_from_checkpoint"] = run_dir
            console.print(f"resuming the interrupted training in {run_dir}", highlight=False)
        else:
            shutil.rmtree(run_dir)
    length = f"{train_cfg.max_steps} steps" if train_cfg.max_steps > 0 else f"{train_cfg.num_train_epochs:g} epochs"
    console.print(f"fine-tuning LoRA r={train_cfg.lora_rank} for {length} (lr {train_cfg.learning_rate:g}, {dtype}) on "
                  f"{train_cfg.data}", highlight=False)
    result = run(train_cfg.model_copy(update=update))
    if result.interrupted:
        console.print(f"[yellow]training interrupted[/]: checkpoint saved in {run_dir}; run `coalqa demo` again to resume",
                      highlight=False)
        raise KeyboardInterrupt
    return result.run_dir, False


def step_answer(
    cfg: DemoConfig, name: str, references: list[dict[str, Any]], trained_ids: set[str] | None, base: str,
    adapter: Path | None, fmt: PromptFormat, key: str, console: Console, load_in_4bit: bool = False,
    index: Index | None = None,
) -> tuple[dict[str, Any], bool]:
    """Answer and score every item with the base (``adapter=None``) or the fine-tuned model through ``coalqa eval``'s
    entry point (:func:`coalqa.eval.run.run_eval`); with ``index`` grounded (``context_k`` clauses in the prompt,
    citations, evidence, number check), labelled ``<name> + grounded``.

    Items are grouped ``trained`` / ``not trained`` by ``trained_ids``; ``None`` leaves them ungrouped.
    """
    from coalqa.eval import EvalConfig, load_report
    from coalqa.eval.run import run_eval, start_eval_model

    stem = cfg.work_dir / f"eval-{name}{'-grounded' if index is not None else ''}-{key}"
    if Path(f"{stem}.json").is_file():
        return load_report(f"{stem}.json"), True
    grounding = {"index": index.path, "context_k": cfg.context_k, "min_score": cfg.min_score} if index is not None else {}
    ecfg = EvalConfig(max_new_tokens=max_new_tokens(cfg), batch_size=cfg.batch_size, temperature=0.0, **grounding,
                      **({"model_name_or_path": base, "load_in_4bit": load_in_4bit} if adapter is None else {}))
    model = start_eval_model(adapter, ecfg, no_adapter=adapter is None, console=console, index=index)
    if adapter is None:
        model = model.with_format(fmt)  # prompted exactly as the fine-tuned model will be
    if index is not None:
        model = model.with_format(model.fmt.model_copy(update={"clause_chars": cfg.clause_chars}))
    label = f"{name} + grounded" if index is not None else name
    console.print(f"answering {len(references)} questions with the {label} model (greedy, ≤ {ecfg.max_new_tokens} tokens"
                  + (f", {cfg.context_k} retrieved clause(s) per prompt)" if index is not None else ")"), highlight=False)
    refs = references if trained_ids is None else [
        r | {"group": TRAINED if r["id"] in trained_ids else NOT_TRAINED} for r in references
    ]
    meta = {"references": str(cfg.references), **({"grounding": ecfg.grounding_settings()} if index is not None else {})}
    report, _ = run_eval(refs, model, ecfg, stem, label=label, predictions_file=f"{stem}.predictions.json", meta=meta)
    return report, False


def step_index(chunks_path: Path, index_dir: Path) -> bool:
    """Index the chunks of ``chunks_path`` for retrieval into ``index_dir``; ``True`` (reused) when it holds an index
    of today's format (:data:`coalqa.retrieval.index.INDEX_FORMAT`) and title prior, else it is (re)built and
    ``False``."""
    from coalqa.retrieval import build_index
    from coalqa.retrieval.index import DEFAULT_TITLE_WEIGHT, INDEX_FORMAT

    manifest = json.loads((index_dir / "index.json").read_text(encoding="utf-8")) if (index_dir / "index.json").is_file() else {}
    # an index of an older format, or from before the title prior, is rebuilt with today's methods
    reused = manifest.get("coalqa_index") == INDEX_FORMAT and manifest.get("title_weight") == DEFAULT_TITLE_WEIGHT
    if not reused:
        build_index([chunks_path], index_dir)
    return reused
