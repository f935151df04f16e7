"""``train(config)``: QA pairs → LoRA adapter, with TRL's ``SFTTrainer`` + PEFT + bitsandbytes + accelerate.

Flow: validate the QA file → load the tokenizer → tokenise with the shared prompt format
(:mod:`coalqa.template`) and split by source chunk → load the base (4-bit NF4 by default) → LoRA →
``SFTTrainer`` (labels built by TRL from ``completion_mask``: -100 on prompt tokens and padding; the
answer and its final EOS are labelled) → save the run folder::

    output/deepseek-coal-safety-YYYYmmdd-HHMMSS/
        adapter_config.json, adapter_model.safetensors   the PEFT adapter
        tokenizer files
        train_config.yaml      the fully resolved TrainConfig (prompt format included)
        train_log.jsonl        one JSON object per logged step (train and eval)
        loss_curve.png         train and eval loss
        run_card.md            base model, data and chunks-file hashes, sample counts, final losses, time
        provenance.json        QA file and chunks file (path, SHA-256) and the chunks trained on
        checkpoint-N/          trainer checkpoints (resume with --resume_from_checkpoint)

Runs unchanged under ``torchrun``/``accelerate launch`` (DDP); only rank 0 writes files.
Ctrl-C (SIGINT) or SIGTERM: the current optimizer step finishes, a checkpoint is saved and the run
folder is written; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.config import dump_config
from coalqa.errors import CoalqaError
from coalqa.hardware import DtypeChoice, choose_dtype
from coalqa.jsonio import file_sha256, share_saved_weights
from coalqa.modeling import check_model_location, disable_cpu_4bit_repacking, load_base_model, load_tokenizer
from coalqa.paths import check_outputs
from coalqa.review.export import training_note
from coalqa.template import PromptFormat
from coalqa.train.config import TrainConfig
from coalqa.train.data import TokenisedData, read_qa_file, tokenise
from coalqa.train.provenance import PROVENANCE, data_provenance

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
RUN_PREFIX = "deepseek-coal-safety-"


@dataclass
class TrainResult:
    """What :func:`prepare`/:func:`run` return: the run folder, the trainer (model inside) and what happened."""

    run_dir: Path
    trainer: Any
    data: TokenisedData
    config: TrainConfig  # resolved: gradient_checkpointing and packing decided
    dtype: DtypeChoice | None = None  # the compute dtype used, and why
    checkpoint: Path | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    provenance: dict = field(default_factory=dict)  # see coalqa.train.provenance


def train(config: TrainConfig) -> Path:
    """Fine-tune a LoRA adapter on ``config.data``; returns the run folder (layout in the module docstring).

    Raises:
        CoalqaError: bad QA file, unknown model path, unsupported dtype, or a bad checkpoint path.
    """
    return run(config).run_dir


def run(config: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """:func:`train`, returning the trainer too (for tests and notebooks). ``callbacks``: extra ``TrainerCallback``s."""
    from accelerate import PartialState

    result = prepare(config, callbacks)
    state, trainer, run_dir = PartialState(), result.trainer, result.run_dir
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(result.config, run_dir / "train_config.yaml")
        (run_dir / PROVENANCE).write_text(json.dumps(result.provenance, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _trim_log(run_dir / "train_log.jsonl", result.checkpoint)
    state.wait_for_everyone()

    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnSignal))
    with stopper.installed():
        trainer.train(resume_from_checkpoint=str(result.checkpoint) if result.checkpoint else None)
    result.interrupted = stopper.stopped_at is not None
    if result.interrupted:
        result.notes.append(f"interrupted at step {stopper.stopped_at}; resume with --resume_from_checkpoint {run_dir}")
    elif result.data.eval:
        trainer.evaluate()
    trainer.save_model(str(run_dir))  # adapter + tokenizer, rank 0 only
    if state.is_main_process:
        share_saved_weights(run_dir)  # the adapter and its checkpoints, readable like the files beside them
        history = _read_log(run_dir / "train_log.jsonl")
        plot_losses(history, run_dir / "loss_curve.png")
        _write_run_card(run_dir, result.config, result.data, history, time.time() - result.started,
                        result.interrupted, result.notes + result.data.notes, result.dtype, result.provenance)
    state.wait_for_everyone()
    return result


def prepare(config: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """Everything before training: validate data, tokenise and split, load the base, build the ``SFTTrainer``.

    Nothing is written yet. Raises the errors listed in :func:`train`.
    """
    import torch
    from accelerate import PartialState

    started = time.time()
    # joins the process group under torchrun / accelerate launch (gloo on CPU, NCCL on GPUs)
    state = PartialState(cpu=not torch.cuda.is_available())
    rows = read_qa_file(config.data)
    unreviewed = training_note(config.data, rows)  # a review log beside the data with pairs not approved
    if unreviewed and state.is_main_process:
        log.warning(unreviewed)
    if config.max_samples:
        rows = rows[: config.max_samples]
    check_model_location(config.model_name_or_path)
    run_dir, checkpoint = _run_dir(config, state)
    check_outputs("train", inputs={"--data": config.data, "--model_name_or_path": config.model_name_or_path,
                                   "--index": config.index},
                  output_dirs={"the run folder": run_dir})

    contexts, context_update, context_note = None, {}, None
    if config.index is not None:
        from coalqa.retrieval import load_index
        from coalqa.train.data import raft_contexts

        index = load_index(config.index)
        contexts, oracles = raft_contexts(rows, index, config.context_k, config.oracle_probability, config.seed,
                                          where=str(config.data), clause_chars=config.clause_chars)
        context_update = {"index": Path(config.index).resolve(), "index_fingerprint": index.fingerprint}
        context_note = (f"retrieved context (RAFT): {config.context_k} clauses per prompt from {config.index}; "
                        f"{oracles} of {len(rows)} pairs see their own source clause")
        log.info(context_note)
    tokenizer = load_tokenizer(config.model_name_or_path)
    fmt = PromptFormat.model_validate(config.model_dump(include=set(PromptFormat.model_fields)))
    data = tokenise(rows, tokenizer, fmt, config.max_length, config.val_ratio, config.seed, contexts)

    log.info("rank %d/%d: %s; %d train / %d eval pairs", state.process_index, state.num_processes,
             data.split_note, len(data.train), len(data.eval))
    for note in data.notes:
        log.warning(note)

    on_gpu = torch.cuda.is_available()
    dtype = choose_dtype(config.bnb_4bit_compute_dtype, "cuda" if on_gpu else "cpu")
    if state.is_main_process:
        log.info("compute dtype %s (%s)", dtype.name, dtype.reason)
    gc = config.gradient_checkpointing if config.gradient_checkpointing is not None else on_gpu
    device_map = {"": state.local_process_index} if on_gpu else {"": "cpu"}
    model = load_base_model(config.model_name_or_path, load_in_4bit=config.use_4bit,
                       bnb_4bit_quant_type=config.bnb_4bit_quant_type, compute_dtype=dtype.name,
                       device_map=device_map)
    if config.use_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        disable_cpu_4bit_repacking(model)
    notes: list[str] = []
    packing = config.packing
    if packing:
        packing, reason = packing_supported(model, tokenizer)
        log.info("packing %s: %s", "on" if packing else "turned off", reason)
        if not packing:
            notes.append(f"packing turned off: {reason}")
    resolved = config.model_copy(update={"gradient_checkpointing": gc, "packing": packing, **context_update})
    trainer = _build_trainer(resolved, model, tokenizer, data, run_dir, bf16=dtype.name == "bfloat16",
                             callbacks=callbacks or [])
    notes += [unreviewed] if unreviewed else []
    return TrainResult(run_dir, trainer, data, resolved, dtype, checkpoint, notes=notes, started=started,
                       provenance=data_provenance(config.data, rows))


def _run_dir(config: TrainConfig, state) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from); all ranks get the same folder."""
    from accelerate.utils import broadcast_object_list
    from transformers.trainer_utils import get_last_checkpoint

    ckpt = config.resume_from_checkpoint
    if ckpt is not None:
        ckpt = Path(ckpt)
        if not ckpt.is_dir():
            raise CoalqaError(f"--resume_from_checkpoint: folder not found: {ckpt}")
        if not ckpt.name.startswith("checkpoint-"):
            last = get_last_checkpoint(str(ckpt))
            if last is None:
                raise CoalqaError(f"--resume_from_checkpoint: no checkpoint-N folder in {ckpt}")
            ckpt = Path(last)
        if not (ckpt / "trainer_state.json").is_file():
            raise CoalqaError(f"--resume_from_checkpoint: {ckpt} is not a trainer checkpoint (no trainer_state.json)")
        return ckpt.parent, ckpt
    name = [config.run_name or RUN_PREFIX + datetime.now().strftime("%Y%m%d-%H%M%S")]
    broadcast_object_list(name, from_process=0)
    return Path(config.output_dir) / name[0], None


def packing_supported(model, tokenizer: PreTrainedTokenizerBase) -> tuple[bool, str]:
    """Check on the loaded model that padding-free batches keep QA pairs apart.

    Two short sequences A, B are concatenated with position ids restarting at B. B's logits must not
    change when A's tokens change (no cross-example attention) and must match B run alone (positions
    restart). transformers builds the block-diagonal mask from such position ids for sdpa/eager/flex
    attention (only without a KV cache, hence ``use_cache=False``, as in training) and uses them
    directly in flash-attention; other implementations may not.

    Returns:
        ``(supported, reason)``; reason says what failed.
    """
    import torch

    a1 = tokenizer("第一条 煤矿企业必须遵守国家有关安全生产的法律", add_special_tokens=False)["input_ids"][:8]
    a2 = tokenizer("井下作业人员必须熟悉应急救援预案和避灾路线", add_special_tokens=False)["input_ids"][:8]
    b = tokenizer("主要通风机必须安装在地面", add_special_tokens=False)["input_ids"][:6]
    if len(a1) != len(a2) or len(b) < 2:
        return False, "probe sentences tokenised too short"
    device = model.get_input_embeddings().weight.device
    pos = torch.tensor([list(range(len(a1))) + list(range(len(b)))], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out1 = model(input_ids=torch.tensor([a1 + b], device=device), position_ids=pos, use_cache=False).logits[0, len(a1):].float()
            out2 = model(input_ids=torch.tensor([a2 + b], device=device), position_ids=pos, use_cache=False).logits[0, len(a1):].float()
            alone = model(input_ids=torch.tensor([b], device=device), use_cache=False).logits[0].float()
    except Exception as e:  # noqa: BLE001 -- an attention implementation that rejects position ids without a mask
        return False, f"probe forward failed ({type(e).__name__}: {e})"
    finally:
        model.train(was_training)
    scale = alone.abs().max().item() or 1.0
    leak = (out1 - out2).abs().max().item() / scale
    shift = (out1 - alone).abs().max().item() / scale
    impl = getattr(model.config, "_attn_implementation", "?")
    if leak > 1e-3:
        return False, f"attention '{impl}' lets packed examples attend to each other (relative change {leak:.2g})"
    if shift > 5e-2:
        return False, f"attention '{impl}' ignores restarting position ids (relative difference {shift:.2g})"
    return True, f"attention '{impl}' keeps packed examples apart"


class StopOnSignal:
    """Trainer callback: on Ctrl-C/SIGTERM finish the step, save a checkpoint and stop (all ranks together)."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: saving a checkpoint after this step (press Ctrl-C again to abort)",
                    signal.Signals(signum).name)

    def installed(self):
        """Context manager installing the SIGINT/SIGTERM handlers while training (main thread only)."""
        import contextlib
        import threading

        @contextlib.contextmanager
        def manager():
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

        return manager()

    def on_step_end(self, args, state, control, **kwargs):
        import torch
        import torch.distributed as dist

        flag = self.requested
        if dist.is_available() and dist.is_initialized():  # every rank must stop at the same step
            t = torch.tensor([int(flag)], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        if flag:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def __getattr__(self, name):  # the other TrainerCallback events: no-ops
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


class JsonLog:
    """Trainer callback: append every log entry to ``train_log.jsonl`` as it happens (rank 0)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            entry = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs, "time": time.time()}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def _build_trainer(config: TrainConfig, model, tokenizer: PreTrainedTokenizerBase, data: TokenisedData, run_dir: Path, *, bf16: bool,
                   callbacks: list):
    """The ``SFTTrainer`` for a resolved config (packing and gradient checkpointing decided)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    has_eval = bool(data.eval)
    # every TrainConfig setting that SFTConfig (TrainingArguments) also has, under the same name, passes through as it
    # is; the rest are ours (LoRA, data, prompt format) or set here
    same_name = {f.name for f in fields(SFTConfig)} & set(TrainConfig.model_fields) - SET_FOR_SFT
    args = SFTConfig(
        **{name: getattr(config, name) for name in sorted(same_name)},
        output_dir=str(run_dir),
        warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        gradient_checkpointing=bool(config.gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=bf16,  # never fp16: Qwen2 overflows to NaN losses
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        save_strategy="steps",
        ddp_find_unused_parameters=False,
        # Examples arrive tokenised and already cut to max_length with EOS kept (coalqa.template), so TRL
        # must not truncate again; it builds labels from completion_mask (-100 on prompt tokens).
        max_length=None,
        completion_only_loss=True,
        packing=False,
        padding_free=config.packing,
    )
    peft_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data.train),
        eval_dataset=Dataset.from_list(data.eval) if has_eval else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[StopOnSignal(), JsonLog(run_dir / "train_log.jsonl"), *callbacks],
    )


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _trim_log(path: Path, checkpoint: Path | None) -> None:
    """On resume, drop log entries after the checkpoint's step (they will be logged again)."""
    if checkpoint is None or not path.is_file():
        return
    step = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    kept = [e for e in _read_log(path) if e.get("step", 0) <= step]
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in kept), encoding="utf-8")


def plot_losses(history: list[dict], path: Path) -> None:
    """Write train and eval loss against optimizer step to a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(e["step"], e[key]) for e in history if key in e]
        if points:
            ax.plot(*zip(*points), marker="o" if key == "eval_loss" else None, markersize=3, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per answer token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)




def _chunks_line(provenance: dict) -> str:
    chunks_file = provenance.get("chunks_file")
    n = len(provenance.get("chunks") or [])
    if not chunks_file:
        return f"- Chunks: not recorded (no generate summary beside the data); pairs from {n} chunk(s) with a chunk_sha"
    return (f"- Chunks: `{chunks_file['path']}` (sha256 `{chunks_file['sha256']}`); pairs from {n} chunk(s), "
            f"listed in `{PROVENANCE}` (`coalqa ask` warns when they change)")


def _review_line(provenance: dict) -> str:
    review = provenance.get("review")
    if not review:
        return "- Review: none recorded (pairs not exported by `coalqa review export`)"
    logs = "; ".join(f"`{x['path']}` (sha256 `{x['sha256']}`)" for x in review["logs"])
    return (f"- Review: {review['pairs']} of {review['of']} pairs reviewed ({review['approved']} approved, "
            f"{review['edited']} edited) by {', '.join(review['reviewers'])}; review log {logs}")


# TrainConfig fields that SFTConfig also has but that are set in _build_trainer, not copied: the run folder, the
# resume point (given to trainer.train), our packing/max_length (done by coalqa.template, not TRL), and the run name
# (ours names the folder; TrainingArguments' goes to loggers)
SET_FOR_SFT = {"output_dir", "max_length", "packing", "gradient_checkpointing", "resume_from_checkpoint", "run_name"}
FINISHED_STATUS = "- Status: finished"  # the run card's status line once training ran to its end


def run_finished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished ``coalqa train`` run: the adapter saved and the run card's status
    ``finished`` (an interrupted run says ``interrupted (checkpoint saved)`` and is resumed, not reused)."""
    run_dir = Path(run_dir)
    card = run_dir / "run_card.md"
    return ((run_dir / "adapter_config.json").is_file() and card.is_file()
            and FINISHED_STATUS in card.read_text(encoding="utf-8").splitlines())


def _write_run_card(run_dir: Path, config: TrainConfig, data: TokenisedData, history: list[dict], seconds: float,
                    interrupted: bool, notes: list[str], dtype: DtypeChoice, provenance: dict | None = None) -> None:
    last = lambda key: next((e[key] for e in reversed(history) if key in e), None)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    steps = max((e.get("step", 0) for e in history), default=0)
    lines = [
        f"# Run card: {run_dir.name}",
        "",
        "- Status: interrupted (checkpoint saved)" if interrupted else FINISHED_STATUS,
        (f"- Base model: `{config.model_name_or_path}` ({'4-bit ' + config.bnb_4bit_quant_type if config.use_4bit else 'full precision'}, "
        f"compute {dtype.name} on {dtype.device}: {dtype.reason})"),
        f"- Data: `{config.data}` (sha256 `{file_sha256(config.data)}`)",
        _chunks_line(provenance or {}),
        _review_line(provenance or {}),
        (f"- QA pairs: {data.rows} read; {len(data.train)} train, {len(data.eval)} eval ({data.split_note}); "
        f"{data.truncated} cut to max_length {config.max_length}; {data.skipped_too_long} skipped"),
        f"- Prompt format: template `{config.template}`, think `{config.think}`",
        *([(f"- Retrieved context (RAFT): {config.context_k} clauses per prompt from `{config.index}` (fingerprint "
           f"`{config.index_fingerprint}`); the pair's own source clause included with probability {config.oracle_probability}")]
          if config.index else []),
        f"- LoRA: r={config.lora_rank}, alpha={config.lora_alpha}, dropout={config.lora_dropout} on {', '.join(config.lora_target_modules)}",
        (f"- Optimisation: {steps} steps, lr {config.learning_rate} ({config.lr_scheduler_type}, warmup {config.warmup_ratio}), "
        f"batch {config.per_device_train_batch_size} × accumulation {config.gradient_accumulation_steps}, "
        f"packing {'on' if config.packing else 'off'}"),
        f"- Final train loss: {fmt(last('loss'))}; final eval loss: {fmt(last('eval_loss'))}",
        f"- Wall time of this session: {seconds / 60:.1f} min",
        "",
        ("Losses are mean cross-entropy over answer tokens (prompt tokens are not scored). Files: adapter "
        "(`adapter_model.safetensors`), `train_config.yaml`, `train_log.jsonl`, `loss_curve.png`."),
    ]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    (run_dir / "run_card.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
