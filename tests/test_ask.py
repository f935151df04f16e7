"""``coalqa ask`` and its API, on the tiny Qwen2 + rebuilt R1 tokenizer with an adapter saved by ``coalqa train``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import prompts_fed_to_generate, train_adapter
from typer.testing import CliRunner

from coalqa.ask import AskConfig, answer, load_model
from coalqa.ask.batch import read_questions, settings_path
from coalqa.ask.inference import result_record
from coalqa.cli import app, main
from coalqa.errors import CoalqaError
from coalqa.offline import R1_EOS_ID
from coalqa.template import PromptFormat

QA = [
    ("主要通风机多久检查一次？", "每月至少检查1次。"),
    ("井下爆破工作必须由谁担任？", "专职爆破工。"),
    ("矿灯应当保证最少连续正常使用多长时间？", "11h。"),
    ("采掘工作面的进风流中，氧气浓度不低于多少？", "20%。"),
    ("高瓦斯矿井采掘工作面每班至少检查甲烷浓度几次？", "每班至少3次。"),
    ("井下保护接地网上任一保护接地点的接地电阻值不得超过多少？", "2Ω。"),
]
# Varied lengths, so batches are left padded.
QUESTIONS = [q for q, _ in QA] + ["停电？", "井下电气设备检修时，应当怎样做才能防止误送电？请说明闭锁和挂牌要求。"]
GREEDY = AskConfig(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory, tiny_qwen2_dir) -> Path:
    """A real ``coalqa train`` run on the tiny model (fp32 base, a few steps): the adapter folder."""
    rows = [{"input": q, "output": a, "chunk_id": f"c{i}", "source": "s.txt", "locator": "第1条"} for i, (q, a) in enumerate(QA)]
    return train_adapter(tmp_path_factory.mktemp("ask-train"), tiny_qwen2_dir, rows, max_steps=4,
                         per_device_train_batch_size=6, max_length=128)


@pytest.mark.slow
def test_train_records_data_provenance(trained_adapter) -> None:
    from coalqa.jsonio import file_sha256

    prov = json.loads((trained_adapter / "provenance.json").read_text(encoding="utf-8"))
    data = Path(prov["data"]["path"])
    assert data.name == "QAdata_all.json" and prov["data"]["sha256"] == file_sha256(data)
    assert prov["chunks_file"] is None and prov["chunks"] == []  # hand-made QA pairs: no chunks file, no chunk_sha
    card = (trained_adapter / "run_card.md").read_text(encoding="utf-8")
    assert prov["data"]["sha256"] in card and "Chunks: not recorded" in card


@pytest.fixture(scope="module")
def loaded(trained_adapter):
    return load_model(trained_adapter)


def _cli(args: list[str], input: str | None = None):
    return CliRunner().invoke(app, ["ask", *args], input=input)


# ------------------------------------------------------------------------------------------ API


@pytest.mark.slow
def test_load_model_uses_the_adapters_training_settings(loaded, trained_adapter, tiny_qwen2_dir) -> None:
    from peft import PeftModel

    recorded = yaml.safe_load((trained_adapter / "train_config.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded.model, PeftModel)
    assert loaded.base == str(tiny_qwen2_dir) == recorded["model_name_or_path"]
    assert loaded.fmt == PromptFormat(**{k: recorded[k] for k in PromptFormat.model_fields})
    assert loaded.load_in_4bit is False and loaded.adapter == trained_adapter and loaded.dtype == "float32"


@pytest.mark.slow
def test_prompt_ids_equal_training_prompt_ids(loaded) -> None:
    """The ids generate() receives (pads removed) are the prompt part of the training examples."""
    from coalqa.train.data import tokenise

    rows = [{"input": q, "output": a} for q, a in QA]
    examples = tokenise(rows, loaded.tokenizer, loaded.fmt, max_length=128, val_ratio=0, seed=0).train
    train_prompts = {tuple(ex["input_ids"][: ex["completion_mask"].index(1)]) for ex in examples}
    fed = prompts_fed_to_generate(loaded, [q for q, _ in QA], AskConfig(temperature=0, max_new_tokens=2, batch_size=4))
    assert len(train_prompts) == len(QA)
    assert fed == train_prompts


@pytest.mark.slow
@pytest.mark.parametrize("use_adapter", [True, False])
def test_batched_answers_equal_one_by_one_under_greedy(loaded, trained_adapter, use_adapter) -> None:
    """Left padding + attention mask: batches of mixed lengths give the one-by-one greedy answers.

    The briefly trained adapter's output varies little between questions; the random base's output
    (``use_adapter=False``) depends on every input token, so a padding mistake would show there.
    """
    model = loaded if use_adapter else load_model(trained_adapter, use_adapter=False)
    one_by_one = answer(model, QUESTIONS, GREEDY.model_copy(update={"batch_size": 1}), progress=False)
    batched = answer(model, QUESTIONS, GREEDY.model_copy(update={"batch_size": 8}), progress=False)
    assert [r["question"] for r in batched] == QUESTIONS
    for a, b in zip(one_by_one, batched):
        assert (a["answer"], a["reasoning"], a["tokens"], a["finished_reasoning"], a["cut"]) == (
            b["answer"], b["reasoning"], b["tokens"], b["finished_reasoning"], b["cut"])
    assert all(0 < r["tokens"] <= GREEDY.max_new_tokens and r["seconds"] > 0 for r in batched)
    assert all(r["tokens"] == GREEDY.max_new_tokens for r in batched if r["cut"])
    assert set(batched[0]) == {"question", "answer", "reasoning", "tokens", "seconds", "finished_reasoning", "cut"}
    if not use_adapter:
        assert len({r["reasoning"] + r["answer"] for r in batched}) > len(QUESTIONS) // 2


@pytest.mark.slow
def test_result_stops_at_eos_and_handles_r1_think_quirk(loaded) -> None:
    """Output holds ``</think>`` without ``<think>`` (it is in the prompt); padding after EOS is not counted."""
    tok = loaded.tokenizer
    gen = tok("推理。\n</think>\n\n每月1次。", add_special_tokens=False)["input_ids"] + [R1_EOS_ID] * 4
    r = result_record(loaded, "q", gen, [R1_EOS_ID], 0.5)
    assert (r["reasoning"], r["answer"], r["finished_reasoning"], r["cut"]) == ("推理。", "每月1次。", True, False)
    assert r["tokens"] == len(gen) - 3
    cut = result_record(loaded, "q", tok("还在想", add_special_tokens=False)["input_ids"], [R1_EOS_ID], 0.5)
    assert (cut["reasoning"], cut["answer"], cut["finished_reasoning"], cut["cut"]) == ("还在想", "", False, True)
    # the limit after the think block: an answer, but cut (it may end in half a number)
    half = result_record(loaded, "q", tok("推理。\n</think>\n\n每月1", add_special_tokens=False)["input_ids"], [R1_EOS_ID], 0.5)
    assert (half["answer"], half["finished_reasoning"], half["cut"]) == ("每月1", True, True)


@pytest.mark.slow
def test_empty_question_is_refused(loaded) -> None:
    with pytest.raises(CoalqaError, match="question 2 is empty"):
        answer(loaded, ["主要通风机多久检查一次？", "  "], GREEDY, progress=False)


@pytest.mark.slow
def test_4bit_default_comes_from_the_adapter(trained_adapter, tmp_path) -> None:
    import bitsandbytes as bnb

    copy = shutil.copytree(trained_adapter, tmp_path / "adapter-4bit", ignore=shutil.ignore_patterns("checkpoint-*"))
    cfg = yaml.safe_load((copy / "train_config.yaml").read_text(encoding="utf-8"))
    cfg["use_4bit"] = True
    (copy / "train_config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    four = load_model(copy)
    assert four.load_in_4bit and any(isinstance(m, bnb.nn.Linear4bit) for m in four.model.modules())
    (r,) = answer(four, [QA[0][0]], GREEDY, progress=False)
    assert r["tokens"] > 0
    assert load_model(copy, load_in_4bit=False).load_in_4bit is False


@pytest.mark.slow
def test_auto_dtype_on_a_cpu_without_bf16_is_float32_in_ask_and_eval(trained_adapter) -> None:
    """conftest's COALQA_CPU_BF16=0 is the path of a CPU without native bf16: auto must load float32 weights."""
    from coalqa.eval import load_eval_model

    for got in (load_model(trained_adapter), load_eval_model(trained_adapter), load_eval_model(trained_adapter, no_adapter=True)):
        assert {p.dtype for p in got.model.parameters()} == {torch.float32}
        assert got.dtype == "float32" and "COALQA_CPU_BF16=0" in got.dtype_reason
        assert got.describe()["dtype_reason"] == got.dtype_reason
    forced = load_eval_model(trained_adapter, dtype="bfloat16")  # an explicit dtype is passed through eval
    assert forced.dtype == "bfloat16" and next(forced.model.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_no_adapter_serves_the_base_with_the_same_format(trained_adapter, tiny_qwen2_dir) -> None:
    from peft import PeftModel

    base_only = load_model(trained_adapter, use_adapter=False)
    assert not isinstance(base_only.model, PeftModel) and base_only.adapter is None
    assert base_only.base == str(tiny_qwen2_dir)


@pytest.mark.slow
def test_system_prompt_defaults_and_override(trained_adapter, tiny_qwen2_dir, tmp_path) -> None:
    from coalqa.template import SYSTEM_PROMPT, render_prompt

    recorded = yaml.safe_load((trained_adapter / "train_config.yaml").read_text(encoding="utf-8"))["system_prompt"]
    assert recorded == SYSTEM_PROMPT
    # with an adapter (also its base alone, for a fair comparison): the system prompt it was trained with
    assert load_model(trained_adapter).fmt.system_prompt == SYSTEM_PROMPT
    assert load_model(trained_adapter, use_adapter=False).fmt.system_prompt == SYSTEM_PROMPT
    # a bare base: none, as DeepSeek recommends for R1 models; the rendered prompt starts with the user turn
    bare = load_model(None, model_name_or_path=str(tiny_qwen2_dir))
    assert bare.fmt.system_prompt == "" and SYSTEM_PROMPT[:10] not in render_prompt(bare.tokenizer, "问", bare.fmt)
    # --system_prompt replaces either, "" included
    assert load_model(trained_adapter, system_prompt="").fmt.system_prompt == ""
    custom = load_model(None, model_name_or_path=str(tiny_qwen2_dir), system_prompt="只回答规程原文。")
    assert "只回答规程原文。" in render_prompt(custom.tokenizer, "问", custom.fmt)
    # through the CLI: the settings beside batch results record it (and a resume with another one is refused)
    qfile, out = tmp_path / "q.txt", tmp_path / "r.json"
    qfile.write_text(f"{QA[0][0]}\n", encoding="utf-8")
    args = ["--peft_model", str(trained_adapter), "--questions_file", str(qfile), "--output_file", str(out),
            "--temperature", "0", "--max_new_tokens", "4"]
    result = _cli([*args, "--system_prompt", ""])
    assert result.exit_code == 0, result.output
    assert "system prompt none" in result.stderr
    settings = json.loads(settings_path(out).read_text(encoding="utf-8"))
    assert settings["model"]["prompt_format"]["system_prompt"] == ""
    qfile.write_text(f"{QA[0][0]}\n{QA[1][0]}\n", encoding="utf-8")
    other = _cli(args)  # the trained system prompt now: other settings than the saved answers
    assert isinstance(other.exception, CoalqaError) and "system_prompt" in str(other.exception)


# ------------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_single_question_mode(trained_adapter, loaded) -> None:
    q = QA[0][0]
    (expected,) = answer(loaded, [q], GREEDY, progress=False)
    result = _cli(["--peft_model", str(trained_adapter), "--question", q, "--temperature", "0",
                   "--max_new_tokens", "12", "--show_think"])
    assert result.exit_code == 0, result.output
    assert expected["reasoning"] in result.stdout and expected["answer"] in result.stdout
    assert f"generated {expected['tokens']} tokens" in result.stderr


@pytest.mark.slow
def test_interactive_mode_keeps_and_clears_the_conversation(trained_adapter) -> None:
    script = "主要通风机多久检查一次？\n矿灯呢？\n/clear\n主要通风机多久检查一次？\n/exit\n"
    result = _cli(["--peft_model", str(trained_adapter), "--temperature", "0", "--max_new_tokens", "6"], input=script)
    assert result.exit_code == 0, result.output
    import re

    prompts = [int(n) for n in re.findall(r"\[prompt (\d+) tokens", result.stderr)]
    assert len(prompts) == 3
    assert prompts[1] > prompts[0] + 6  # the first turn is part of the second prompt
    assert prompts[2] == prompts[0]  # /clear forgot it


@pytest.mark.slow
def test_ctrl_c_stops_the_answer_not_the_program(tiny_qwen2_dir) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coalqa.cli", "ask", "--model_name_or_path", str(tiny_qwen2_dir), "--no-adapter",
         "--temperature", "0", "--max_new_tokens", "3000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a terminal's Ctrl-C: when the tests themselves run as a background job (`cmd &`), the shell made SIGINT
        # ignored, the child would inherit that and Python would not install its KeyboardInterrupt handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 -- one async-signal-safe call
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not any(text in line for line in lines):
            assert proc.poll() is None and time.monotonic() < end, "".join(lines)
            time.sleep(0.1)

    try:
        proc.stdin.write("主要通风机多久检查一次？\n")
        proc.stdin.flush()
        wait_for("thinking")
        proc.send_signal(signal.SIGINT)
        wait_for("stopped")
        proc.stdin.write("/exit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    import re

    (generated,) = [int(n) for n in re.findall(r"generated (\d+) tokens", "".join(lines))]
    assert generated < 3000


@pytest.mark.slow
def test_sigterm_ends_chat_and_saves_batch_answers(tiny_qwen2_dir, tmp_path) -> None:
    """SIGTERM is handled like Ctrl-C, except that it ends an interactive chat instead of only the answer."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "coalqa.cli", "ask", "--model_name_or_path", str(tiny_qwen2_dir), "--no-adapter",
            "--temperature", "0"]
    chat = subprocess.Popen([*base, "--max_new_tokens", "3000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    qfile, out = tmp_path / "q.txt", tmp_path / "answers.json"
    qfile.write_text("\n".join(f"{q}（第{i}问）" for i in range(40) for q, _ in QA[:1]), encoding="utf-8")
    batch = subprocess.Popen([*base, "--max_new_tokens", "40", "--batch_size", "1", "--questions_file", str(qfile),
                              "--output_file", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        chat.stdin.write("主要通风机多久检查一次？\n")
        chat.stdin.flush()
        deadline = time.monotonic() + 180
        while not (out.is_file() and json.loads(out.read_text(encoding="utf-8"))):
            assert batch.poll() is None and time.monotonic() < deadline, batch.communicate()[1][-2000:]
            time.sleep(0.2)
        for proc in (chat, batch):
            proc.send_signal(signal.SIGTERM)
        chat_err = chat.communicate(timeout=60)[1]
        batch_err = batch.communicate(timeout=60)[1]
    finally:
        for proc in (chat, batch):
            if proc.poll() is None:
                proc.kill()
    assert chat.returncode == 130 and "Traceback" not in chat_err, chat_err[-2000:]
    assert batch.returncode == 130 and "Traceback" not in batch_err, batch_err[-2000:]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert 1 <= len(saved) < 40 and f"interrupted: {len(saved)}/40 answers saved" in batch_err


@pytest.mark.slow
def test_batch_mode_writes_carries_fields_and_resumes(trained_adapter, loaded, tmp_path) -> None:
    qfile = tmp_path / "questions.json"
    rows = [{"id": f"q{i}", "input": q, "output": a, "answer": "ref"} for i, (q, a) in enumerate(QA)]
    qfile.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "results.json"
    args = ["--peft_model", str(trained_adapter), "--questions_file", str(qfile), "--output_file", str(out),
            "--temperature", "0", "--max_new_tokens", "12", "--batch_size", "4"]
    first = _cli(args)
    assert first.exit_code == 0, first.output
    results = json.loads(out.read_text(encoding="utf-8"))
    expected = answer(loaded, [q for q, _ in QA], GREEDY, progress=False)
    assert [r["id"] for r in results] == [f"q{i}" for i in range(len(QA))]
    assert [r["answer"] for r in results] == [e["answer"] for e in expected]
    assert all(r["output"] == a and r["input_answer"] == "ref" for r, (_, a) in zip(results, QA))
    assert {"question", "answer", "reasoning", "tokens", "seconds", "finished_reasoning", "cut"} <= set(results[0])
    # the tiny adapter never closes its think block in 12 tokens: every row is cut there, none after it
    assert [r["cut"] for r in results] == [e["cut"] for e in expected] == [True] * len(QA)
    assert not any(r["finished_reasoning"] for r in results)
    assert f"warning: {len(QA)} answer(s) cut at max_new_tokens=12 inside <think>" in first.stderr
    assert "answer(s) cut at max_new_tokens=12: they may end mid-sentence" not in first.stderr
    settings = json.loads(settings_path(out).read_text(encoding="utf-8"))
    assert settings["generation"] == {"do_sample": False, "max_new_tokens": 12}
    assert settings["model"]["adapter"] == str(trained_adapter.resolve())

    # A killed run left two answers: the rerun keeps them and answers only the rest.
    partial = results[:2]
    partial[0]["answer"] = "KEPT"
    out.write_text(json.dumps(partial, ensure_ascii=False), encoding="utf-8")
    again = _cli(args)
    assert again.exit_code == 0, again.output
    assert "2 already answered" in again.stderr and f"{len(QA) - 2} to go" in again.stderr
    resumed = json.loads(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in resumed] == [r["id"] for r in results]
    def strip(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert resumed[0]["answer"] == "KEPT" and resumed[1] == results[1]
    assert strip(resumed[2:]) == strip(results[2:])

    # Other generation settings would mix two models' answers in one file: refused.
    other = _cli([*args[:-4], "--max_new_tokens", "5", "--batch_size", "4"])
    assert isinstance(other.exception, CoalqaError) and "max_new_tokens" in str(other.exception)


# ---------------------------------------------------------------------------------- questions files


def test_questions_file_formats(tmp_path) -> None:
    (tmp_path / "a.json").write_text('["问一", "问二"]', encoding="utf-8")
    (tmp_path / "b.json").write_text('[{"input": "问一", "output": "答"}, {"question": "问二", "id": 7}]', encoding="utf-8")
    (tmp_path / "c.jsonl").write_text('{"id": "x", "question": "问一"}\n\n"问二"\n', encoding="utf-8")
    (tmp_path / "d.txt").write_text("\ufeff问一\n\n  问二  \n", encoding="utf-8")
    for name in ("a.json", "b.json", "c.jsonl", "d.txt"):
        assert [r["question"] for r in read_questions(tmp_path / name)] == ["问一", "问二"], name
    assert read_questions(tmp_path / "b.json")[0] == {"output": "答", "question": "问一"}
    assert read_questions(tmp_path / "c.jsonl")[0] == {"id": "x", "question": "问一"}


def test_questions_from_csv_tsv_and_xlsx_in_any_encoding(tmp_path) -> None:
    import openpyxl

    rows = [("q1", "矿井主要排水设备中，工作水泵的能力应满足什么要求？"), ("q2", "主要通风机应当多久检查一次？")]
    csv_text = "id,question,备注\n" + "".join(f'{i},"{q}",甲\n' for i, q in rows)
    (tmp_path / "gbk.csv").write_bytes(csv_text.encode("gbk"))  # saved by Excel on a Chinese Windows
    (tmp_path / "bom.tsv").write_bytes(("\ufeff" + csv_text.replace(",", "\t").replace('"', "")).encode("utf-8"))
    book = openpyxl.Workbook()
    book.active.append(["ID", "问题"])
    for i, q in rows:
        book.active.append([int(i[1:]), q])
    book.save(tmp_path / "q.xlsx")
    expected = [{"id": i, "question": q, "备注": "甲"} for i, q in rows]
    assert read_questions(tmp_path / "gbk.csv") == expected  # the header is not a question; ids carried
    assert read_questions(tmp_path / "bom.tsv") == expected
    assert read_questions(tmp_path / "q.xlsx") == [{"id": 1, "question": rows[0][1]}, {"id": 2, "question": rows[1][1]}]
    (tmp_path / "q16.txt").write_bytes("问一\n问二\n".encode("utf-16"))
    assert [r["question"] for r in read_questions(tmp_path / "q16.txt")] == ["问一", "问二"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"question": "问一"}\n{"question": 问二}\n', r"bad\.jsonl: line 2: not valid JSON"),
        ("bad.json", '[{"question": "问一"}, {"q": "问二"}]', r"bad\.json: row 2: object has no 'input' or 'question'"),
        ("bad.json", '["问一", ""]', r"bad\.json: row 2: empty question"),
        ("bad.json", '["问一",', r"bad\.json: not valid JSON \(line 1"),
        ("bad.json", '[3]', r"row 1: expected a question string"),
        ("bad.txt", bytes(range(256)) * 4, r"cannot read questions file .*bad\.txt as text: binary"),
        ("bad.csv", "id,text\n1,问一\n", r"bad\.csv: line 1: the header row \(id, text\) has no question column"),
        ("bad.csv", "question,id\n问一,1\n,2\n", r"bad\.csv: line 3: empty question"),
        ("old.xls", b"\xd0\xcf\x11\xe0", r"legacy Excel \.xls"),
        ("empty.txt", "\n\n", "no questions"),
    ],
)
def test_unreadable_questions_file(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else lambda c: path.write_text(c, encoding="utf-8"))(content)
    with pytest.raises(CoalqaError, match=message):
        read_questions(path)


# ---------------------------------------------------------------------------------------- bad input


def _main_error(monkeypatch, capsys, args: list[str]) -> str:
    """Run the real entry point; assert exit status 2 without a traceback; return stderr."""
    monkeypatch.setattr(sys, "argv", ["coalqa", "ask", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and "error:" in err
    return " ".join(err.split())


def test_bad_adapter_folders(monkeypatch, capsys, tmp_path, tiny_qwen2_dir) -> None:
    assert "adapter folder not found" in _main_error(monkeypatch, capsys, ["--peft_model", str(tmp_path / "nope"), "--question", "问"])
    err = _main_error(monkeypatch, capsys, ["--peft_model", str(tiny_qwen2_dir), "--question", "问"])
    assert "not a PEFT adapter folder" in err and "--no-adapter" in err


@pytest.mark.slow
def test_adapter_for_a_different_base_is_refused(monkeypatch, capsys, tmp_path, trained_adapter, r1_tokenizer) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    other = Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=64, tie_word_embeddings=False))
    other_dir = tmp_path / "other-base"
    other.save_pretrained(other_dir)
    r1_tokenizer.save_pretrained(other_dir)
    err = _main_error(monkeypatch, capsys, ["--peft_model", str(trained_adapter), "--model_name_or_path", str(other_dir),
                                            "--question", "问"])
    recorded = yaml.safe_load((trained_adapter / "train_config.yaml").read_text(encoding="utf-8"))["model_name_or_path"]
    assert "does not fit base" in err and str(other_dir) in err and recorded in err
    assert "in_features: adapter 64, base 32" in err


@pytest.mark.slow
def test_renamed_copy_of_the_right_base_is_accepted(trained_adapter, tiny_qwen2_dir, tmp_path) -> None:
    renamed = shutil.copytree(tiny_qwen2_dir, tmp_path / "my-local-copy")
    with pytest.warns(UserWarning, match="all adapter shapes fit"):
        copy = load_model(trained_adapter, model_name_or_path=str(renamed))
    assert copy.base == str(renamed)


@pytest.mark.slow
def test_bad_questions_and_flags(monkeypatch, capsys, tmp_path, trained_adapter) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "问一"}\n{"question": ""}\n', encoding="utf-8")
    args = ["--peft_model", str(trained_adapter), "--questions_file", str(bad), "--output_file", str(tmp_path / "r.json")]
    assert "q.jsonl: line 2: empty question" in _main_error(monkeypatch, capsys, args)
    assert "--question is empty" in _main_error(monkeypatch, capsys, ["--peft_model", str(trained_adapter), "--question", " "])
    assert "needs --output_file" in _main_error(
        monkeypatch, capsys, ["--peft_model", str(trained_adapter), "--questions_file", str(bad)])
