"""coalqa train on CPU: a tiny random Qwen2ForCausalLM with the real R1-Distill tokenizer (rebuilt offline).

QA pairs come from the public eval set in ../shared (question → its key facts), so lengths and text
are real regulation text. Every test runs the real TRL/PEFT/bitsandbytes code paths.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml

from coalqa.errors import CoalqaError
from coalqa.offline import R1_BOS_ID, R1_EOS_ID
from coalqa.template import PromptFormat, encode_prompt
from coalqa.train import TrainConfig, prepare, run
from coalqa.train.data import read_qa_file, split_by_group

SHORT_SYSTEM = "你是煤矿安全专家。"  # keeps examples short: CPU time is mostly the 151,936-word output layer


def _qa_rows(eval_file: Path, n: int | None = None) -> list[dict]:
    items = [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"input": it["question"], "output": "；".join(it["key_facts"]), "source": it["source_doc"],
             "locator": it["source_locator"]} for it in items]
    return rows[:n] if n else rows


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory, eval_file) -> Path:
    path = tmp_path_factory.mktemp("qa") / "QAdata_all.json"
    path.write_text(json.dumps(_qa_rows(eval_file, 8), ensure_ascii=False), encoding="utf-8")
    return path


def _config(tiny_qwen2_dir: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = {"data": data, "model_name_or_path": str(tiny_qwen2_dir), "output_dir": out, "use_4bit": False,
                "bnb_4bit_compute_dtype": "float32", "system_prompt": SHORT_SYSTEM, "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 1000, "eval_steps": 1000, "val_ratio": 0.25}
    return TrainConfig(**(base | kw))


def _labels_per_example(batch: dict) -> list[tuple[list[int], list[int]]]:
    """Split a collated batch into (input_ids, labels) per example, padded or padding-free."""
    out = []
    if "attention_mask" in batch:
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            n = int(mask.sum())
            assert mask[:n].all() and not mask[n:].any(), "right padding expected"
            assert (labels[n:] == -100).all(), "padding must not be labelled"
            out.append((ids[:n].tolist(), labels[:n].tolist()))
        return out
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    for a, b in itertools.pairwise(starts):
        out.append((batch["input_ids"][0, a:b].tolist(), batch["labels"][0, a:b].tolist()))
    return out


def test_defaults_are_the_original_design() -> None:
    c = TrainConfig()
    assert c.model_name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    # bf16 compute in the original design; "auto" gives it on GPUs with bf16 (tests/test_hardware.py)
    assert (c.use_4bit, c.bnb_4bit_quant_type, c.bnb_4bit_compute_dtype) == (True, "nf4", "auto")
    assert (c.lora_rank, c.lora_alpha, c.lora_dropout) == (64, 16, 0.1)
    assert c.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (c.num_train_epochs, c.per_device_train_batch_size, c.gradient_accumulation_steps) == (6, 4, 4)
    assert (c.learning_rate, c.weight_decay, c.warmup_ratio, c.lr_scheduler_type) == (2e-4, 0.01, 0.1, "cosine")
    assert (c.template, c.think, c.max_length, c.val_ratio, c.report_to) == ("chat", "empty", 1024, 0.05, "none")
    assert c.system_prompt.startswith("你是一个煤矿安全领域的知识达人")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"input": "q", "output": "a"}, {"input": "q2"}]', "row 2: missing 'output'"),
        ('[{"input": "  ", "output": "a"}]', "row 1: 'input' is empty"),
        ('[{"input": "q", "output": ""}]', "row 1: 'output' is empty"),
        ('[{"input": "q", "output": 3}]', "row 1: 'output' must be a string"),
        ('[["q", "a"]]', "row 1: expected an object"),
        ('[{"input": "q", "output": "a"},]', "not valid JSON (line 1"),
        ('{"input": "q", "output": "a"}\n{"input": "q2", "output": }\n', ": line 2: not valid JSON"),
        ("", "is empty"),
    ],
)
def test_bad_qa_files_name_file_and_row(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CoalqaError) as e:
        read_qa_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_gbk_qa_file_rows_read_exactly(tmp_path: Path) -> None:
    rows = [{"input": "矿井主要排水设备中，工作水泵的能力应满足什么要求？",
             "output": "工作水泵的能力，应当能在20h内排出矿井24h的正常涌水量（包括充填水及其他用水）。"},
            {"input": "高瓦斯矿井每班至少检查几次？", "output": "高瓦斯矿井每班至少3次。"}]
    path = tmp_path / "QAdata_gbk.json"  # CoalQA's own published QA file is GBK
    path.write_bytes(json.dumps(rows, ensure_ascii=False, indent=1).encode("gbk"))
    assert read_qa_file(path) == rows


def test_alpaca_sharegpt_and_openai_rows_are_detected(tmp_path: Path, caplog) -> None:
    rows = [
        {"input": "问一？", "output": "答一。", "chunk_id": "c1"},
        {"instruction": "问二？", "input": "第二条", "output": "答二。"},
        {"instruction": "问三？", "input": "", "output": "答三。"},
        {"conversations": [{"from": "human", "value": "问四？"}, {"from": "gpt", "value": "答四。"}]},
        {"messages": [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "问五？"},
                      {"role": "assistant", "content": "答五。"}]},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with caplog.at_level("WARNING"):
        got = read_qa_file(path)
    assert [(r["input"], r["output"]) for r in got] == [
        ("问一？", "答一。"), ("问二？\n第二条", "答二。"), ("问三？", "答三。"), ("问四？", "答四。"), ("问五？", "答五。")]
    assert got[0]["chunk_id"] == "c1" and "1 conversation(s) carry their own system message" in caplog.text


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "问", "answer": "答"}, "line 2: fits no QA format (keys: question, answer); expected coalqa"),
        ({"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"},
                            {"from": "human", "value": "再问"}]}, "line 2: conversations: expected one question"),
        ({"messages": [{"role": "user", "content": "问"}, {"role": "tool", "content": "x"}]},
         "line 2: messages: turn 2 has role 'tool'"),
        ({"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": " "}]},
         "line 2: the assistant message's content is empty"),
    ],
)
def test_a_row_that_fits_no_format_is_named(tmp_path: Path, row: dict, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "问", "output": "答"}\n' + json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(CoalqaError) as e:
        read_qa_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_missing_data_and_unknown_model_are_clear_errors(tmp_path: Path, qa_file: Path) -> None:
    with pytest.raises(CoalqaError, match="QA data file not found: .*nope.json"):
        run(TrainConfig(data=tmp_path / "nope.json"))
    with pytest.raises(CoalqaError, match="model folder not found: ./no-such-model"):
        run(TrainConfig(data=qa_file, model_name_or_path="./no-such-model", output_dir=tmp_path))
    with pytest.raises(CoalqaError, match="not a local folder"):
        run(TrainConfig(data=qa_file, model_name_or_path="no-such-org/no-such-model", output_dir=tmp_path))


def test_jsonl_is_accepted_and_split_keeps_chunks_apart(tmp_path: Path) -> None:
    rows = [{"input": f"问{i}", "output": f"答{i}", "chunk_id": f"c{i % 10}"} for i in range(60)]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert read_qa_file(path) == rows
    train_idx, eval_idx, _ = split_by_group(rows, 0.2, seed=1)
    assert sorted(train_idx + eval_idx) == list(range(60))
    assert {rows[i]["chunk_id"] for i in train_idx}.isdisjoint({rows[i]["chunk_id"] for i in eval_idx})
    assert len({rows[i]["chunk_id"] for i in eval_idx}) == 2
    assert split_by_group(rows, 0.2, seed=1) == split_by_group(rows, 0.2, seed=1)
    one_group = [{"input": "q", "output": "a", "chunk_id": "x"}] * 3
    assert split_by_group(one_group, 0.05, seed=0)[1] == []
    two = [{"input": "q", "output": "a", "source": "s.txt", "locator": loc} for loc in ("第一条", "第二条")]
    assert len(split_by_group(two, 0.05, seed=0)[1]) == 1  # at least one eval example when ≥ 2 groups


@pytest.mark.parametrize("packing", [False, True])
def test_batches_label_answer_and_eos_only(tmp_path: Path, tiny_qwen2_dir: Path, r1_tokenizer, eval_file: Path,
                                           packing: bool) -> None:
    """Labels of real collated batches: -100 on prompt and padding; answer + final EOS labelled, also when cut."""
    rows = _qa_rows(eval_file, 4)
    rows[0]["output"] = rows[0]["output"] + "。" + "根据规程必须严格执行。" * 40  # cut at max_length
    data = tmp_path / "qa.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    cfg = _config(tiny_qwen2_dir, data, tmp_path, per_device_train_batch_size=4, val_ratio=0, max_length=96,
                  packing=packing)
    prepared = prepare(cfg)
    assert prepared.config.packing is packing and prepared.data.truncated == 1
    batch = next(iter(prepared.trainer.get_train_dataloader()))
    assert ("attention_mask" in batch) is not packing and ("position_ids" in batch) is packing
    examples = _labels_per_example(batch)
    assert len(examples) == 4
    fmt = PromptFormat(system_prompt=SHORT_SYSTEM)
    prompts = {tuple(encode_prompt(r1_tokenizer, r["input"], fmt)): r for r in rows}
    for ids, labels in examples:
        prompt = next(p for p in prompts if tuple(ids[: len(p)]) == p)  # prompt ids == what `ask` feeds
        n = len(prompt)
        assert ids.count(R1_BOS_ID) == 1 and ids[0] == R1_BOS_ID
        assert labels[:n] == [-100] * n
        assert labels[n:] == ids[n:]  # every answer token and the final EOS are labelled
        assert ids[-1] == R1_EOS_ID and labels[-1] == R1_EOS_ID
        assert len(ids) <= 96
        if prompts[prompt] is rows[0]:
            assert len(ids) == 96  # the truncated one still ends with a labelled EOS
    if not packing:  # pad == eos: padding is masked by the attention mask, not by dropping EOS labels
        assert (batch["input_ids"][batch["attention_mask"] == 0] == R1_EOS_ID).all()


def _per_example_losses(model, batch: dict) -> list[float]:
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1)
    labels = batch["labels"][:, 1:]
    token_loss = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (labels != -100)
    losses = []
    if "attention_mask" in batch:
        for row, lab in zip(token_loss, labels):
            losses.append((row.sum() / (lab != -100).sum()).item())
        return losses
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    for a, b in itertools.pairwise(starts):  # token t predicts label t+1: the span of example [a, b) is [a, b-1)
        seg, lab = token_loss[0, a : b - 1], labels[0, a : b - 1]
        losses.append((seg.sum() / (lab != -100).sum()).item())
    return losses


def test_packing_gives_the_same_per_example_loss_as_padding(tmp_path: Path, tiny_qwen2_dir: Path, qa_file: Path) -> None:
    padded = prepare(_config(tiny_qwen2_dir, qa_file, tmp_path, val_ratio=0, packing=False))
    packed = prepare(_config(tiny_qwen2_dir, qa_file, tmp_path, val_ratio=0, packing=True))
    assert packed.config.packing, packed.notes
    examples = [padded.trainer.train_dataset[i] for i in range(4)]
    model = padded.trainer.model.eval()
    b_pad = padded.trainer.data_collator(examples)
    b_pack = packed.trainer.data_collator(examples)
    assert b_pack["input_ids"].shape[0] == 1 and int((b_pad["attention_mask"] == 0).sum()) > 0
    loss_pad, loss_pack = _per_example_losses(model, b_pad), _per_example_losses(model, b_pack)
    assert loss_pack == pytest.approx(loss_pad, abs=1e-4)
    # the check can fail: without restarting positions the packed examples see each other
    leaky = dict(b_pack, position_ids=torch.arange(b_pack["input_ids"].shape[1])[None])
    assert _per_example_losses(model, leaky)[1:] != pytest.approx(loss_pad[1:], abs=1e-2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_qwen2_dir: Path, qa_file: Path):
    out = tmp_path_factory.mktemp("runs")
    return run(_config(tiny_qwen2_dir, qa_file, out, max_steps=20, learning_rate=1e-2, warmup_ratio=0.0,
                       eval_steps=10, lr_scheduler_type="constant"))


@pytest.mark.slow
def test_loss_falls_and_run_folder_follows_the_contract(trained, qa_file: Path) -> None:
    d = trained.run_dir
    assert d.parent.name.startswith("runs") and d.name.startswith("deepseek-coal-safety-")
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "train_config.yaml",
                 "train_log.jsonl", "loss_curve.png", "run_card.md"):
        assert (d / name).is_file(), name
    # readable like config.json beside it (safetensors alone would leave the adapter 0o600, whatever the umask)
    assert (d / "adapter_model.safetensors").stat().st_mode & 0o777 == (d / "adapter_config.json").stat().st_mode & 0o777
    log = [json.loads(line) for line in (d / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    train_loss = [e["loss"] for e in log if "loss" in e]
    eval_loss = [e["eval_loss"] for e in log if "eval_loss" in e]
    assert len(train_loss) == 20 and len(eval_loss) >= 3
    assert sum(train_loss[-5:]) / 5 < sum(train_loss[:5]) / 5 - 0.5
    saved = TrainConfig(**yaml.safe_load((d / "train_config.yaml").read_text(encoding="utf-8")))
    assert saved == trained.config and saved.system_prompt == SHORT_SYSTEM and saved.packing is True
    assert saved.gradient_checkpointing is False  # resolved for CPU
    card = (d / "run_card.md").read_text(encoding="utf-8")
    import hashlib

    assert hashlib.sha256(qa_file.read_bytes()).hexdigest() in card
    assert "6 train, 2 eval" in card and "Final train loss" in card
    assert (d / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_saved_adapter_reloads_with_the_same_logits(trained, tiny_qwen2_dir: Path, r1_tokenizer) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([encode_prompt(r1_tokenizer, "矿灯应能连续正常使用多长时间？", PromptFormat(system_prompt=SHORT_SYSTEM))])
    trained_model = trained.trainer.model.eval()
    with torch.no_grad():
        expected = trained_model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32)
        base_logits = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, trained.run_dir).eval()
        got = reloaded(input_ids=ids).logits
    assert (expected - base_logits).abs().max() > 1e-2  # the adapter changed the model
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_qlora_4bit_trains_on_cpu(tmp_path: Path, tiny_qwen2_dir: Path, qa_file: Path) -> None:
    import bitsandbytes as bnb

    result = run(_config(tiny_qwen2_dir, qa_file, tmp_path, use_4bit=True, bnb_4bit_compute_dtype="bfloat16",
                         max_steps=2, val_ratio=0))
    model = result.trainer.model
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert result.trainer.args.bf16 and not result.trainer.args.fp16
    losses = [e["loss"] for e in result.trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)
    saved = yaml.safe_load((result.run_dir / "train_config.yaml").read_text(encoding="utf-8"))
    assert saved["use_4bit"] is True and saved["bnb_4bit_compute_dtype"] == "bfloat16"
    assert (result.run_dir / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("cpu_bf16", "expected"), [("0", torch.float32), ("1", torch.bfloat16)])
def test_auto_compute_dtype_follows_the_cpu(tmp_path: Path, tiny_qwen2_dir: Path, qa_file: Path, monkeypatch,
                                            cpu_bf16: str, expected) -> None:
    """A CPU without native bf16 (COALQA_CPU_BF16=0 takes its path) trains QLoRA in float32, one with it in bf16."""
    import bitsandbytes as bnb

    from coalqa.hardware import cpu_native_bf16

    monkeypatch.setenv("COALQA_CPU_BF16", cpu_bf16)
    cpu_native_bf16.cache_clear()
    try:
        result = prepare(_config(tiny_qwen2_dir, qa_file, tmp_path, use_4bit=True, bnb_4bit_compute_dtype="auto",
                                 max_steps=1, val_ratio=0))
        full = prepare(_config(tiny_qwen2_dir, qa_file, tmp_path, bnb_4bit_compute_dtype="auto", max_steps=1, val_ratio=0))
    finally:
        cpu_native_bf16.cache_clear()
    four_bit = [m for m in result.trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and {m.compute_dtype for m in four_bit} == {expected}
    base_weight = full.trainer.model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj").base_layer.weight
    assert base_weight.dtype == expected and full.trainer.args.bf16 is (expected == torch.bfloat16)
    assert result.trainer.args.bf16 is (expected == torch.bfloat16) and not result.trainer.args.fp16
    assert result.dtype.name == str(expected).removeprefix("torch.") and f"COALQA_CPU_BF16={cpu_bf16}" in result.dtype.reason
    assert result.config.bnb_4bit_compute_dtype == "auto"  # saved as asked: the next machine decides for itself
