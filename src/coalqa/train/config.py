"""Settings of ``coalqa train`` (QA pairs → LoRA adapter), declared once with their help text.

Defaults are the original CoalQA design's: base ``deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B``, 4-bit NF4
with bf16 compute (QLoRA; ``auto`` keeps bf16 where the hardware runs it natively and takes fp32 elsewhere, see
:mod:`coalqa.hardware`), LoRA r=64 / alpha=16 / dropout=0.1 on all attention and MLP projections,
6 epochs, batch 4 × gradient accumulation 4, lr 2e-4, weight decay 0.01, warmup ratio 0.1, cosine
schedule. ``TrainConfig`` subclasses :class:`coalqa.template.PromptFormat`, so the prompt format
(``template``, ``think``, ``system_prompt``) is saved with every adapter and reused by ``coalqa ask``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from coalqa.template import PromptFormat

DEFAULT_BASE_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(PromptFormat):
    """Every knob of the train stage; defaults < ``--config`` YAML < command-line flags.

    ``None`` on ``gradient_checkpointing`` means "decide from the hardware" (on with a GPU, off on CPU);
    the config saved beside the adapter (``train_config.yaml``) holds the resolved value.
    """

    data: Path = Field(Path("QAdata_all.json"), description="QA pairs: JSON list (or JSON lines) of {input, output[, chunk_id, source, locator]}")
    model_name_or_path: str = Field(DEFAULT_BASE_MODEL, description="base model: Hugging Face Hub id or local folder")
    output_dir: Path = Field(Path("output"), description="runs go to OUTPUT_DIR/deepseek-coal-safety-YYYYmmdd-HHMMSS/")
    run_name: str | None = Field(None, description="run folder name (default: deepseek-coal-safety-<timestamp>)")

    # Quantisation (QLoRA) and precision
    use_4bit: bool = Field(True, description="load the base in 4-bit (bitsandbytes, QLoRA); works on GPU and CPU")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit quantisation type")
    bnb_4bit_compute_dtype: Literal["bfloat16", "float32", "auto"] = Field(
        "auto", description="dtype of 4-bit compute and of the non-quantised weights (also without 4-bit); auto: bfloat16 "
        "on GPUs that support it and on CPUs with native bf16 (AVX512_BF16/AMX), else float32; never float16 (NaN losses on Qwen2)"
    )

    # LoRA
    lora_rank: int = Field(64, ge=1, description="LoRA rank r")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA input")
    lora_target_modules: list[str] = Field(LORA_TARGETS, description="module names that get LoRA adapters")

    # Optimisation
    num_train_epochs: float = Field(6, gt=0, description="passes over the training split")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use num_train_epochs)")
    per_device_train_batch_size: int = Field(4, ge=1, description="QA pairs per device per micro-batch")
    per_device_eval_batch_size: int = Field(4, ge=1, description="QA pairs per device per evaluation batch")
    gradient_accumulation_steps: int = Field(4, ge=1, description="micro-batches per optimizer step")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of optimizer steps with linear warm-up (0 ≤ r < 1)")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler name (cosine, linear, constant, ...)")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    optim: str = Field("adamw_torch", description="transformers optimizer name (e.g. paged_adamw_8bit on GPU)")
    gradient_checkpointing: bool | None = Field(None, description="recompute activations to save memory (default: on with a GPU, off on CPU)")
    seed: int = Field(42, description="seed for LoRA init, data order and the validation split")

    # Data
    max_length: int = Field(
        1024, ge=16,
        description="tokens per example (prompt + answer + EOS); longer answers are cut and EOS re-appended. "
        "1024 fits the generate stage's longest answers (1024 characters ≈ 700-1000 tokens with the prompt) "
        "and keeps activations inside an 8 GB GPU",
    )
    packing: bool = Field(
        True,
        description="padding-free batches: each micro-batch's QA pairs are concatenated without padding, with "
        "position ids restarting per pair so no pair attends to another (turned off, with a logged reason, "
        "where the model's attention cannot keep pairs apart)",
    )
    val_ratio: float = Field(0.05, ge=0, lt=1, description="share of source chunks held out for eval loss (split by chunk_id)")
    max_samples: int | None = Field(None, ge=1, description="use only the first N QA pairs (quick runs)")

    # Retrieved context (RAFT: Zhang et al., "RAFT: Adapting Language Model to Domain Specific RAG", 2024)
    index: Path | None = Field(
        None, description="train with retrieved clauses in each prompt (RAFT), from this index (`coalqa index` of the "
        "chunks the QA pairs were generated from); `coalqa ask --index` then prompts the same way",
    )
    context_k: int = Field(3, ge=1, description="clauses per training prompt (with --index)")
    oracle_probability: float = Field(
        0.8, ge=0, le=1,
        description="share of QA pairs whose own source chunk is among the clauses (at a random place); the rest get "
        "retrieved distractors only, so the model also learns to answer when retrieval missed (RAFT's P; 0.8 there)",
    )
    index_fingerprint: str | None = Field(None, description="set by coalqa train: fingerprint of --index's chunks (ask refuses an index with other chunks)")

    # Logging, evaluation, checkpoints
    logging_steps: int = Field(10, ge=1, description="log train loss every N optimizer steps")
    eval_steps: int = Field(50, ge=1, description="eval loss every N optimizer steps")
    save_steps: int = Field(100, ge=1, description="checkpoint every N optimizer steps (Ctrl-C also checkpoints)")
    save_total_limit: int | None = Field(3, ge=1, description="keep at most N checkpoints")
    resume_from_checkpoint: Path | None = Field(
        None, description="continue a run: a checkpoint-N folder, or a run folder (its latest checkpoint)"
    )
    report_to: str = Field("none", description="experiment tracker (none, tensorboard, wandb, ...)")
