"""Settings of ``coalqa demo`` (:class:`DemoConfig`) and its presets, YAML files shipped inside the package
(``coalqa/demo/presets/``, read like any ``--config`` file by :mod:`coalqa.config`): the stand-in's training settings
and ``--fast``. The former stand-in SmolLM2-135M-Instruct has its recipe in ``configs/demo-smollm2-135m.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coalqa.config import load_config, split_settings
from coalqa.offline import DEFAULT_STANDIN
from coalqa.retrieval.config import DEFAULT_MIN_SCORE

REAL_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
REAL_PRESET = "configs/deepseek-r1-distill-qwen-1.5b.yaml"
REAL_RUN = f"coalqa demo --model_name_or_path {REAL_MODEL} --config {REAL_PRESET}"

# package data (pyproject's [tool.setuptools.package-data]), so an installed coalqa finds them too
PRESETS = Path(__file__).resolve().parent / "presets"
STANDIN_PRESET, FAST_PRESET = (PRESETS / f"{n}.yaml" for n in ("standin", "fast"))
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
        None, description=f"base model; default: the offline stand-in {DEFAULT_STANDIN} (real run: {REAL_MODEL})"
    )
    standin: str = Field(
        DEFAULT_STANDIN, description="offline stand-in when no model is given: a Qwen2 stand-in of "
        "coalqa.offline.STANDINS (hash-pinned PyPI wheels), or smollm2-135m-instruct (configs/demo-smollm2-135m.yaml)",
    )
    fast: bool = Field(False, description="smoke-test mode: tiny random Qwen2, 3 documents, 2 steps, 3 questions (seconds, no quality)")
    provider: Literal["auto", "clause", "zhipuai", "openai"] = Field(
        "auto", description="QA generator: auto = zhipuai/openai when its API key is set, else the offline clause generator"
    )
    generate_model: str | None = Field(None, description="LLM for QA generation (default: glm-4 for zhipuai, gpt-4o-mini for openai)")
    chunk_chars: int = Field(300, ge=100, description="largest chunk in characters (small chunks keep the training subset focused)")
    clause_kinds: list[Literal["article", "fact"]] = Field(
        ["article"], min_length=1,
        description="pairs the offline clause generator makes: article (whole clause parts, answered in the clause's own "
        "words: with the clause in the prompt the stand-in learns to answer every number the clause states) and/or "
        "fact (one sentence stating a number, asked as a cloze and by its topic: made the Qwen stand-in restate the "
        "question and give one number; SmolLM2's recipe uses them)",
    )
    max_answer_chars: int = Field(150, ge=20, description="longest generated answer; the clause generator splits longer text into parts")
    holdout_every: int = Field(3, ge=2, description="every N-th eval item's source chunk is kept out of training (the 'not trained' group)")
    neighbours: int = Field(0, ge=0, description="also train on this many chunks either side of each eval item's source chunk")
    max_docs: int | None = Field(None, ge=1, description="use only the N smallest documents that hold eval items (default: all)")
    max_questions: int | None = Field(None, ge=1, description="evaluate only the first N eval items from those documents (default: all)")
    max_steps: int | None = Field(None, ge=1, description="training steps (default: the stand-in preset's 1 epoch, the preset's epochs with --config)")
    learning_rate: float | None = Field(None, gt=0, description="peak learning rate (default: 5e-4 for the stand-in, else the preset's)")
    max_length: int | None = Field(None, ge=16, description="tokens per training example (default: 512 for the stand-in, else the preset's)")
    max_new_tokens: int | None = Field(None, ge=1, description="tokens per generated answer (default: 128 for the stand-in, 1024 otherwise)")
    batch_size: int = Field(10, ge=1, description="questions answered together")
    show: int = Field(3, ge=0, description="questions whose answers are printed before and after fine-tuning")
    grounded: bool = Field(True, description="also answer grounded (retrieved clauses in the prompt, with citations), base and fine-tuned")
    train_context_k: int = Field(
        1, ge=0, description="train with this many retrieved clauses in each prompt (RAFT: the pair's own clause with "
        "probability 0.8, else distractors), so the adapter learns to answer from clauses; 0: train on questions alone",
    )
    context_k: int = Field(
        2, ge=1, description="clauses per grounded prompt when answering (2 with clause_chars 200 hold 0.91 of the dev "
        "set's key facts on the demo's index, 1 holds 0.87; measured with the 2026-12-06 index)",
    )
    clause_chars: int = Field(
        200, ge=0, description="grounded prompts (training and answering): each clause cut to its sentences best matching "
        "the question, up to this many characters (short prompts: a small model copies more reliably, and 2 cores train "
        "and answer faster)",
    )
    min_score: float = Field(
        DEFAULT_MIN_SCORE, ge=0, description="BM25 score of the question's own words a clause needs to support a "
        "question (or its expansion-weighted score reaches grounding's min_expanded_score); grounding's default: on the "
        "demo's 300-character chunks every dev question's source still passes and 45 of 48 off-topic questions abstain "
        "(bench/gate.py), where the former 3.0 let 25 of them through",
    )
    seen_questions: int = Field(
        10, ge=0, description="also ask this many of the training questions themselves, before and after "
        "(a recitation check: did the adapter learn what it was taught?); 0 = skip",
    )



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


def with_fast_preset(cfg: DemoConfig) -> DemoConfig:
    """``--fast``: the settings of the ``fast`` preset (``presets/fast.yaml``) replace those still at their defaults."""
    fast = load_config(DemoConfig, FAST_PRESET, {})
    return cfg.model_copy(update={k: getattr(fast, k) for k in fast.model_fields_set
                                  if getattr(cfg, k) in (None, DemoConfig.model_fields[k].default)})


def train_config(cfg: DemoConfig, preset: dict[str, Any], base: str, data: Path, index_dir: Path | None = None):
    """The training settings: ``preset`` (a --config file's), else the stand-in's (``presets/standin.yaml``), then
    the demo's own flags (and, with ``index_dir``, the retrieved clauses of RAFT training)."""
    from coalqa.train import TrainConfig

    settings = dict(preset)
    if index_dir is not None:
        settings |= {"index": index_dir, "context_k": cfg.train_context_k, "clause_chars": cfg.clause_chars}
    settings |= {k: getattr(cfg, k) for k in ("max_steps", "learning_rate", "max_length") if getattr(cfg, k) is not None}
    return load_config(TrainConfig, None if preset else STANDIN_PRESET, settings | {"model_name_or_path": base, "data": data})


def max_new_tokens(cfg: DemoConfig) -> int:
    """Tokens per generated answer: ``--max_new_tokens``, else 128 for the stand-in (a clause part of up to
    ``max_answer_chars`` 150 characters), 1024 for a given model (room for its reasoning)."""
    return cfg.max_new_tokens or (128 if cfg.model_name_or_path is None else 1024)
