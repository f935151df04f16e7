"""Loading a base model and its tokenizer, in full precision or 4-bit (QLoRA), on GPU or CPU.

Used by training, inference, evaluation and serving alike, so every stage loads the base the same
way. 4-bit loading follows the QLoRA recipe (Dettmers et al., 2023): NF4 weights, double
quantisation, bf16 compute where the hardware runs it natively (:mod:`coalqa.hardware`), through
bitsandbytes (which also runs on CPU since 0.46).
"""

from __future__ import annotations

from pathlib import Path

from coalqa.errors import CoalqaError
from coalqa.hardware import choose_dtype


def resolve_dtype(name: str, device: str | None = None):
    """Map ``"bfloat16" | "float32" | "auto"`` to a torch dtype for ``device`` (default: the GPU if any, else CPU).

    ``auto`` follows :func:`coalqa.hardware.choose_dtype`: bf16 on GPUs that support it and on CPUs with native
    bf16 (AVX512_BF16/AMX), else fp32. fp16 is refused: Qwen2 models overflow to NaN losses in fp16.

    Raises:
        CoalqaError: an unknown or fp16 dtype name, or bf16 on a GPU without it.
    """
    return choose_dtype(name, device).torch_dtype


def _load_error(name_or_path: str, what: str, err: Exception) -> CoalqaError:
    local = Path(name_or_path).expanduser()
    if local.exists():
        return CoalqaError(f"cannot load the {what} from folder {local}: {err}")
    return CoalqaError(
        f"cannot load the {what} {name_or_path!r}: it is not a local folder and could not be fetched from the "
        f"Hugging Face Hub ({type(err).__name__}). Download it once (e.g. `hf download {name_or_path} "
        f"--local-dir ./{Path(name_or_path).name}`) and pass the folder."
    )


def check_model_location(name_or_path: str | Path) -> None:
    """Fail fast on a local-looking path that does not exist (``./x``, ``/x``, ``~/x``, ``a/b/c``).

    A plain ``org/name`` is left to ``from_pretrained`` (Hub id or cache).

    Raises:
        CoalqaError: the path looks local and does not exist.
    """
    text = str(name_or_path)
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if looks_local and not Path(text).expanduser().exists():
        raise CoalqaError(f"model folder not found: {text}")


def load_tokenizer(name_or_path: str | Path):
    """Load the tokenizer of ``name_or_path`` (Hub id or folder); pad = eos when it has no pad token.

    Raises:
        CoalqaError: the tokenizer cannot be found or read.
    """
    from transformers import AutoTokenizer

    check_model_location(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as e:
        raise _load_error(str(name_or_path), "tokenizer", e) from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    name_or_path: str | Path,
    *,
    load_in_4bit: bool = False,
    bnb_4bit_quant_type: str = "nf4",
    compute_dtype: str = "auto",
    device_map: str | dict | None = None,
):
    """Load a base causal LM (no adapter) for training or inference; base + adapter: :func:`coalqa.ask.load_model`.

    Args:
        load_in_4bit: quantise linear layers to 4-bit with bitsandbytes (QLoRA); works on CUDA and CPU.
        compute_dtype: dtype of non-quantised weights and of 4-bit compute (``bfloat16``/``float32``/``auto``;
            ``auto`` decided by :func:`coalqa.hardware.choose_dtype` for the device in ``device_map``).
        device_map: passed to ``from_pretrained``; default: the single GPU if any, else CPU.

    Returns:
        ``transformers.PreTrainedModel`` in eval mode.

    Raises:
        CoalqaError: the model cannot be found, or 4-bit was asked for without bitsandbytes.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if device_map is None:
        device_map = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    on_cpu = isinstance(device_map, dict) and all(str(d) == "cpu" for d in device_map.values())
    dtype = resolve_dtype(compute_dtype, "cpu" if on_cpu else None)
    kwargs: dict = {"dtype": dtype, "device_map": device_map}
    if load_in_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise CoalqaError("4-bit loading needs bitsandbytes (`pip install bitsandbytes`), or pass use_4bit false") from e
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    check_model_location(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError) as e:
        raise _load_error(str(name_or_path), "model", e) from e
    if load_in_4bit:
        disable_cpu_4bit_repacking(model)
    return model.eval()


def disable_cpu_4bit_repacking(model) -> int:
    """Turn off bitsandbytes' AVX512-BF16 weight repacking on CPU; returns the number of layers changed.

    On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights after a forward pass in eval mode,
    and the next training step then fails with "a view of a leaf Variable that requires grad is being
    used in an in-place operation" (measured on this project's machines, bitsandbytes 0.50.2).
    Harmless on GPU and on CPUs without the instruction set.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
