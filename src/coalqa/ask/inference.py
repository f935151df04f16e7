"""Answering questions with a base model + LoRA adapter: the Python API behind ``coalqa ask``.

::

    from coalqa.ask import AskConfig, load_model, answer
    loaded = load_model("output/deepseek-coal-safety-20260101-120000")
    results = answer(loaded, ["主要通风机应当多久检查一次？"], AskConfig(temperature=0))

Prompts come from :func:`coalqa.template.encode_prompt` with the prompt format recorded in the adapter's
``train_config.yaml`` — the very ids training used — and the decoded output is split with
:func:`coalqa.template.split_reasoning`. Batches are left padded from those id lists (pad id, attention
mask 0 on pads), so greedy batched answers equal one-by-one answers.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.ask.config import AskConfig
from coalqa.ask.constrain import clause_numbers
from coalqa.config import read_settings
from coalqa.errors import CoalqaError
from coalqa.hardware import choose_dtype
from coalqa.modeling import load_base_model, load_tokenizer
from coalqa.template import (
    SAVED_FORMAT_FILE,
    PromptFormat,
    encode_prompt,
    inference_format,
    prompt_opens_think,
    read_saved_format,
    split_reasoning,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ADAPTER_CONFIG = "adapter_config.json"
TRAIN_CONFIG = "train_config.yaml"


@dataclass
class LoadedModel:
    """A model ready to answer: ``model`` (``PeftModel`` or plain base, eval mode), its ``tokenizer``,
    the prompt format ``fmt`` it was trained with, the ``base`` it sits on, the ``adapter`` folder
    (``None`` when serving the base alone), and how it was loaded (``load_in_4bit``, ``dtype``)."""

    model: Any
    tokenizer: Any
    fmt: PromptFormat
    base: str
    adapter: Path | None
    load_in_4bit: bool = False
    dtype: str = "float32"
    dtype_reason: str = ""
    notes: list[str] = field(default_factory=list)
    # how the adapter was trained with retrieved context (``coalqa train --index``): index, context_k,
    # index_fingerprint from its train_config.yaml; None for an adapter trained on questions alone
    train_context: dict | None = None

    def describe(self) -> dict:
        """What was loaded, as plain JSON-able values (saved beside batch results)."""
        return {
            "adapter": str(self.adapter) if self.adapter else None,
            "base": self.base,
            "load_in_4bit": self.load_in_4bit,
            "dtype": self.dtype,
            "dtype_reason": self.dtype_reason,
            "prompt_format": self.fmt.model_dump(),
        }


def read_adapter_folder(peft_model: str | Path) -> tuple[dict, dict]:
    """Read ``(adapter_config.json, train_config.yaml)`` of an adapter folder written by ``coalqa train``.

    ``train_config.yaml`` may be missing (an adapter made elsewhere): ``{}`` is returned for it and the
    prompt format falls back to the defaults.

    Raises:
        CoalqaError: the folder is missing, is not a PEFT adapter, or a config file is unreadable.
    """
    import json

    folder = Path(peft_model).expanduser()
    if not folder.is_dir():
        raise CoalqaError(f"adapter folder not found: {folder} (pass the output folder of `coalqa train` as --peft_model)")
    cfg_file = folder / ADAPTER_CONFIG
    if not cfg_file.is_file():
        hint = (
            " It holds a full model (config.json): serve it with --model_name_or_path and --no-adapter."
            if (folder / "config.json").is_file()
            else " Pass the output folder of `coalqa train`."
        )
        raise CoalqaError(f"{folder} is not a PEFT adapter folder: no {ADAPTER_CONFIG}.{hint}")
    try:
        adapter_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CoalqaError(f"{cfg_file}: not readable JSON: {e}") from e
    if not isinstance(adapter_cfg, dict) or "peft_type" not in adapter_cfg:
        raise CoalqaError(f"{cfg_file}: not a PEFT adapter config (no peft_type)")
    if not any((folder / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
        raise CoalqaError(f"{folder}: adapter weights missing (adapter_model.safetensors)")
    train_file = folder / TRAIN_CONFIG
    return adapter_cfg, read_settings(train_file) if train_file.is_file() else {}


def _same_model_name(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _adapter_shapes(adapter_dir: Path) -> dict[str, list[int]]:
    """Tensor name → shape of the saved adapter, read from the safetensors header (no weights loaded)."""
    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable


def check_adapter_fits(model, adapter_dir: Path, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Compare every LoRA tensor of the adapter with the base module it attaches to.

    Returns a list of mismatches (empty when the adapter fits): missing modules, ``in``/``out``
    feature counts that differ (e.g. hidden size 1536 vs 64), or a tokenizer larger than the
    base's embedding table. Works on full-precision and bitsandbytes 4-bit layers alike.
    """
    problems: list[str] = []
    for key, shape in _adapter_shapes(adapter_dir).items():
        name = key.removeprefix("base_model.model.")
        for part, dim, attr in ((".lora_A.weight", 1, "in_features"), (".lora_B.weight", 0, "out_features")):
            if not name.endswith(part):
                continue
            module_name = name[: -len(part)]
            try:
                module = model.get_submodule(module_name)
            except AttributeError:
                problems.append(f"the base has no module {module_name}")
                break
            want = getattr(module, attr, None)
            if want is not None and shape[dim] != want:
                problems.append(f"{module_name}.{attr}: adapter {shape[dim]}, base {want}")
        if len(problems) >= 3:
            break
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        problems.append(f"tokenizer has {len(tokenizer)} tokens, the base's embedding table {rows} rows")
    return problems


def training_context(train_cfg: dict) -> dict | None:
    """How an adapter was trained with retrieved clauses (``coalqa train --index``), from its ``train_config.yaml``:
    ``index``, ``context_k``, ``index_fingerprint``, ``oracle_probability``; ``None`` for one trained on questions alone."""
    if not train_cfg.get("index"):
        return None
    return {k: train_cfg.get(k) for k in ("index", "context_k", "index_fingerprint", "oracle_probability")}


def load_model(
    peft_model: str | Path | None = None,
    *,
    model_name_or_path: str | None = None,
    load_in_4bit: bool | None = None,
    dtype: str = "auto",
    use_adapter: bool = True,
    device_map: str | dict | None = None,
    system_prompt: str | None = None,
) -> LoadedModel:
    """Load the base model, its tokenizer and (optionally) the LoRA adapter, ready for :func:`answer`.

    Args:
        peft_model: adapter folder written by ``coalqa train`` (``adapter_config.json``,
            ``adapter_model.safetensors``, tokenizer files, ``train_config.yaml``). ``None``: serve the
            base ``model_name_or_path`` alone with the default :class:`PromptFormat` without a system prompt,
            or, for a merged model written by ``coalqa export``, with the prompt format recorded in it (its
            training system prompt included).
        model_name_or_path: base model; default: ``model_name_or_path`` of the adapter's
            ``train_config.yaml``, else ``base_model_name_or_path`` of ``adapter_config.json``. A
            different name is accepted when every adapter tensor fits the base (a renamed local copy).
        load_in_4bit: default: ``use_4bit`` of the adapter's training (an adapter trained on a 4-bit base
            is served on a 4-bit base), ``False`` without an adapter.
        dtype: ``auto`` (:func:`coalqa.hardware.choose_dtype`: bf16 on GPUs that support it and on CPUs with
            native bf16, else fp32; for 4-bit loading it is the compute dtype), ``bfloat16`` or ``float32``.
        use_adapter: ``False`` reads format/base/4-bit from the adapter folder but serves the base only
            (``coalqa ask --no-adapter``: compare before/after fine-tuning under identical prompts).
        system_prompt: replaces the system prompt (``""``: none). Default: the adapter's (also with
            ``use_adapter=False``); without an adapter folder, none (:func:`coalqa.template.inference_format`).

    Raises:
        CoalqaError: adapter folder missing or not an adapter, no base model given or recorded, base
            not found, or an adapter made for a different base (names both and the first mismatches).
    """
    notes: list[str] = []
    adapter_dir = Path(peft_model).expanduser() if peft_model is not None else None
    train_cfg, recorded, base = _recorded_settings(adapter_dir, model_name_or_path, notes)
    if load_in_4bit is None:
        load_in_4bit = bool(train_cfg.get("use_4bit", False))
    on_cpu = device_map is None and not _cuda() or (isinstance(device_map, dict)
                                                      and all(str(d) == "cpu" for d in device_map.values()))
    choice = choose_dtype(dtype, "cpu" if on_cpu else "cuda")

    tokenizer_dir = adapter_dir if adapter_dir and (adapter_dir / "tokenizer_config.json").is_file() else base
    try:
        tokenizer = load_tokenizer(tokenizer_dir)
        model = load_base_model(base, load_in_4bit=load_in_4bit, compute_dtype=choice.name, device_map=device_map)
    except CoalqaError as e:
        if base == recorded and adapter_dir is not None and not model_name_or_path:
            raise CoalqaError(f"{e} (base recorded in {adapter_dir}; pass --model_name_or_path to use another copy)") from e
        raise
    fmt = _prompt_format(train_cfg, tokenizer, adapter_dir, system_prompt)
    if adapter_dir is not None:
        model = _attach_adapter(model, tokenizer, adapter_dir, base, recorded, use_adapter, notes)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        fmt=fmt,
        base=str(base),
        adapter=adapter_dir if use_adapter else None,
        load_in_4bit=load_in_4bit,
        dtype=choice.name,
        dtype_reason=choice.reason,
        notes=notes,
        train_context=training_context(train_cfg),
    )


def _recorded_settings(adapter_dir: Path | None, model_name_or_path: str | None,
                       notes: list[str]) -> tuple[dict, str | None, str]:
    """``(training settings, recorded base, base to load)`` from the adapter folder (or a merged model's saved prompt
    format); notes what was assumed.

    Raises:
        CoalqaError: an unreadable adapter folder or saved format, or no base model given nor recorded.
    """
    adapter_cfg: dict = {}
    train_cfg: dict = {}
    if adapter_dir is not None:
        adapter_cfg, train_cfg = read_adapter_folder(adapter_dir)
        if not train_cfg:
            notes.append(f"{adapter_dir} has no {TRAIN_CONFIG}: using the default prompt format")
    recorded = train_cfg.get("model_name_or_path") or adapter_cfg.get("base_model_name_or_path")
    base = model_name_or_path or recorded
    if adapter_dir is None and base:  # a merged model written by `coalqa export` records its prompt format
        try:
            train_cfg = read_saved_format(base)
        except ValueError as e:
            raise CoalqaError(str(e)) from e
        if train_cfg:
            notes.append(f"prompt format as recorded in {base}/{SAVED_FORMAT_FILE} (a merged model)")
    if not base:
        raise CoalqaError(
            "no base model: pass --model_name_or_path"
            + (f" ({adapter_dir} records none)" if adapter_dir else " or --peft_model DIR")
        )
    return train_cfg, recorded, base


def _prompt_format(train_cfg: dict, tokenizer: PreTrainedTokenizerBase, adapter_dir: Path | None,
                   system_prompt: str | None) -> PromptFormat:
    """The prompt format as trained (``plain`` for a tokenizer without a chat template), ``system_prompt`` applied."""
    fmt_fields = {k: train_cfg[k] for k in PromptFormat.model_fields if k in train_cfg}
    if "template" not in fmt_fields and not getattr(tokenizer, "chat_template", None):
        fmt_fields["template"] = "plain"
    try:
        fmt = PromptFormat.model_validate(fmt_fields)
    except ValueError as e:
        raise CoalqaError(f"{adapter_dir}/{TRAIN_CONFIG}: invalid prompt format: {e}") from e
    if adapter_dir is None and not train_cfg:  # a bare base: no system prompt unless one is given
        return inference_format(None, system_prompt).model_copy(update={"template": fmt.template})
    return inference_format(fmt, system_prompt)


def _attach_adapter(model, tokenizer: PreTrainedTokenizerBase, adapter_dir: Path, base: str, recorded: str | None,
                    use_adapter: bool, notes: list[str]):
    """Check that every adapter tensor fits ``model`` (a renamed copy of the base is noted), then apply the adapter
    unless ``use_adapter`` is off; returns the model.

    Raises:
        CoalqaError: an adapter made for another base (both named, first mismatches), or PEFT cannot apply it.
    """
    problems = check_adapter_fits(model, adapter_dir, tokenizer)
    if problems:
        raise CoalqaError(
            f"adapter {adapter_dir} was trained on base {recorded!r} and does not fit base {base!r}: "
            + "; ".join(problems)
            + (f". Pass --model_name_or_path {recorded}" if recorded and recorded != base else "")
        )
    if recorded and not _same_model_name(base, recorded):
        notes.append(f"adapter was trained on {recorded!r}; serving it on {base!r} (all adapter shapes fit)")
    if not use_adapter:
        return model
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # PEFT calls a transformers API that is deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    except (RuntimeError, ValueError, KeyError) as e:
        raise CoalqaError(f"cannot apply adapter {adapter_dir} to base {base!r}: {e}") from e


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def eos_ids(loaded: LoadedModel) -> list[int]:
    ids = {loaded.tokenizer.eos_token_id}
    model_eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids.update(model_eos if isinstance(model_eos, list) else [model_eos])
    ids.discard(None)
    if not ids:
        raise CoalqaError(f"tokenizer of {loaded.base} has no EOS token: generation would never stop")
    return sorted(ids)


def make_generation_config(loaded: LoadedModel, cfg: AskConfig):
    """A fresh ``GenerationConfig`` from ``cfg`` only (nothing inherited from the base's own file)."""
    from transformers import GenerationConfig

    pad = loaded.tokenizer.pad_token_id
    eos = eos_ids(loaded)
    gc = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.sampling,
        eos_token_id=eos,
        pad_token_id=eos[0] if pad is None else pad,
    )
    if cfg.sampling:
        gc.temperature, gc.top_p, gc.top_k = cfg.temperature, cfg.top_p, 0
    else:  # neutral values: generate() would fill unset ones from the model's generation_config.json (a merged
        # model's temperature 0.6, top_p 0.95) and then warn that greedy decoding ignores them
        gc.temperature, gc.top_p = 1.0, 1.0
    return gc


def check_questions(questions: Sequence[str]) -> None:
    for i, q in enumerate(questions, 1):
        if not isinstance(q, str) or not q.strip():
            raise CoalqaError(f"question {i} is empty" if isinstance(q, str) else f"question {i} is not text: {q!r}")


def result_record(loaded: LoadedModel, question: str, generated: list[int], eos: list[int], seconds: float) -> dict:
    """Decode one row of generated ids (cut after the first EOS) into the result record.

    ``cut`` is True when the row holds no EOS: generation stopped at ``max_new_tokens`` (or was stopped), so the answer
    may end mid-sentence or mid-number."""
    end = next((i + 1 for i, t in enumerate(generated) if t in eos), None)  # just past the first EOS
    n = len(generated) if end is None else end
    text = loaded.tokenizer.decode(generated[:n], skip_special_tokens=True)
    reasoning, text_answer, finished = split_reasoning(text, prompt_opens_think(loaded.tokenizer, loaded.fmt))
    return {
        "question": question,
        "answer": text_answer,
        "reasoning": reasoning,
        "tokens": n,
        "seconds": round(seconds, 3),
        "finished_reasoning": finished,
        "cut": end is None,
    }


def _left_padded(prompts: list[list[int]], pad_id: int, device):
    import torch

    width = max(map(len, prompts))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids):] = 1
    return input_ids.to(device), attention_mask.to(device)


def numbers_processor(loaded: LoadedModel, numbers: Sequence[frozenset[str] | None] | None, prompt_width: int):
    """A ``LogitsProcessorList`` holding :class:`coalqa.ask.constrain.NumbersFromClauses` for rows whose ``numbers``
    are given (free while reasoning when the prompt opens ``<think>``), or ``None`` when no row is constrained."""
    if numbers is None or all(n is None for n in numbers):
        return None
    from transformers import LogitsProcessorList

    from coalqa.ask.constrain import NumbersFromClauses

    return LogitsProcessorList([NumbersFromClauses(loaded.tokenizer, numbers, prompt_width,
                                                   prompt_opens_think(loaded.tokenizer, loaded.fmt))])


def generate_batch(loaded: LoadedModel, prompts: list[list[int]], gen_config, stopping_criteria=None,
                   numbers: Sequence[frozenset[str] | None] | None = None) -> list[list[int]]:
    """Generate after every prompt (token id lists) in one left-padded batch.

    Args:
        gen_config: a ``GenerationConfig`` (:func:`make_generation_config` of an :class:`AskConfig`).
        stopping_criteria: optional ``transformers.StoppingCriteriaList``; a criterion may return one flag per
            row, ending that row alone (``coalqa serve`` stops a request whose client went away this way).
        numbers: per row, the only numbers it may write (:func:`coalqa.ask.constrain.clause_numbers`; ``None``:
            free); ``None``: no row constrained.

    Returns:
        the new ids of every row, in input order (a row that ended early is padded with the pad id after its EOS).
    """
    import torch

    input_ids, attention_mask = _left_padded(prompts, gen_config.pad_token_id, loaded.model.device)
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_config,
                                    stopping_criteria=stopping_criteria,
                                    logits_processor=numbers_processor(loaded, numbers, input_ids.shape[1]))
    return out[:, input_ids.shape[1]:].tolist()


def answer(
    loaded: LoadedModel,
    questions: list[str],
    config: AskConfig | None = None,
    *,
    progress: bool = True,
    on_batch: Callable[[list[int], list[dict]], None] | None = None,
    contexts: Sequence[Sequence[dict] | None] | None = None,
) -> list[dict]:
    """Answer ``questions`` in batches of ``config.batch_size``; results in input order.

    ``contexts`` (one per question, ``None`` for none): retrieved clauses put into each prompt
    (:func:`coalqa.template.user_message`); :func:`coalqa.grounding.answer_grounded` passes them.

    Each result: ``question``, ``answer`` (text after ``</think>``), ``reasoning`` (inside the think
    block; ``""`` when none), ``tokens`` (generated tokens up to and including EOS, not the padding
    after it), ``seconds`` (wall time of its batch divided by the batch size, so results sum to the
    total), ``finished_reasoning`` (False when the token limit cut the think block: answer ``""``),
    ``cut`` (True when the token limit ended the generation before EOS: the answer may stop mid-number).

    Questions are grouped longest-prompt first to limit padding; with greedy decoding
    (``temperature=0``) in float32 the answers equal one-by-one answers (tested on CPU). In bfloat16
    (the default on GPUs) a padded batch can round differently and flip a near-tied greedy token; use
    ``dtype="float32"`` where exact equality matters. With sampling, the seed is set once per call,
    so a result depends on the batch it landed in.

    Args:
        on_batch: called after every batch with the input indices and their results (used to save
            partial work).

    Raises:
        CoalqaError: an empty question.
    """
    cfg = config or AskConfig()
    check_questions(questions)
    if not questions:
        return []
    if cfg.sampling and cfg.seed is not None:
        from transformers import set_seed

        set_seed(cfg.seed)
    tok = loaded.tokenizer
    contexts = list(contexts) if contexts is not None else [None] * len(questions)
    prompts = [encode_prompt(tok, q, loaded.fmt, context=c) for q, c in zip(questions, contexts, strict=True)]
    numbers = [clause_numbers(loaded.fmt, c) if cfg.numbers_from_clauses else None for c in contexts]
    gen_config = make_generation_config(loaded, cfg)
    eos = eos_ids(loaded)
    order = sorted(range(len(questions)), key=lambda i: -len(prompts[i]))
    results: list[dict | None] = [None] * len(questions)
    from tqdm.auto import tqdm

    with tqdm(total=len(questions), unit="q", desc="answering", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            t0 = time.perf_counter()
            generated = generate_batch(loaded, [prompts[i] for i in batch], gen_config,
                                       numbers=[numbers[i] for i in batch])
            seconds = (time.perf_counter() - t0) / len(batch)
            done = [result_record(loaded, questions[i], generated[row], eos, seconds) for row, i in enumerate(batch)]
            for i, r in zip(batch, done):
                results[i] = r
            if on_batch is not None:
                on_batch(batch, done)
            bar.update(len(batch))
    return results  # type: ignore[return-value]


class Stream:
    """One answer generated in a background thread; iterate to get text pieces as they come.

    ``stop()`` (e.g. on Ctrl-C) ends generation after the current token; ``result()`` waits for the
    thread and returns the same record as :func:`answer` plus ``interrupted``.
    """

    def __init__(self, loaded: LoadedModel, question: str, config: AskConfig | None = None,
                 history: Sequence[tuple[str, str]] = (), context: Sequence[dict] | None = None) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        check_questions([question])
        cfg = config or AskConfig()
        self._loaded, self._question = loaded, question
        self._stop = threading.Event()
        stop_event = self._stop

        class _StopFlag(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool, device=input_ids.device)

        self.prompt_ids = encode_prompt(loaded.tokenizer, question, loaded.fmt, history, context)
        self._streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._gen_config = make_generation_config(loaded, cfg)
        self._criteria = StoppingCriteriaList([_StopFlag()])
        self._numbers = [clause_numbers(loaded.fmt, context) if cfg.numbers_from_clauses else None]
        self._output: list[int] = []
        self._error: BaseException | None = None
        self._t0 = time.perf_counter()
        self._seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import torch

        try:
            ids, mask = _left_padded([self.prompt_ids], self._gen_config.pad_token_id, self._loaded.model.device)
            with torch.inference_mode():
                out = self._loaded.model.generate(
                    input_ids=ids, attention_mask=mask, generation_config=self._gen_config,
                    streamer=self._streamer, stopping_criteria=self._criteria,
                    logits_processor=numbers_processor(self._loaded, self._numbers, ids.shape[1]),
                )
            self._output = out[0, ids.shape[1]:].tolist()
        except BaseException as e:  # noqa: BLE001 -- re-raised in result(); the streamer must end or the reader blocks forever
            self._error = e
            self._streamer.end()
        finally:
            self._seconds = time.perf_counter() - self._t0

    def __iter__(self) -> Iterator[str]:
        return iter(self._streamer)

    def stop(self) -> None:
        """Ask the generation to stop after the current token."""
        self._stop.set()

    def result(self) -> dict:
        """Wait for the generation to end; the result record (``interrupted`` True after :meth:`stop`)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        r = result_record(self._loaded, self._question, self._output, eos_ids(self._loaded), self._seconds)
        r["interrupted"] = self._stop.is_set()
        return r


def stream_answer(loaded: LoadedModel, question: str, config: AskConfig | None = None,
                  history: Sequence[tuple[str, str]] = (), context: Sequence[dict] | None = None) -> Stream:
    """Start answering ``question`` after the conversation ``history`` (``(question, answer)`` pairs), with the
    retrieved clauses ``context`` if given; returns a :class:`Stream` of text pieces. The prompt is
    :func:`encode_prompt` with that history and context."""
    return Stream(loaded, question, config, history, context)
