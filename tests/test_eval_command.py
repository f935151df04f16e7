"""``coalqa eval`` on fixture predictions made from the real eval set: report, compare, errors, judge."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coalqa.cli import app
from coalqa.errors import CoalqaError
from coalqa.eval import evaluate, load_references, load_report
from coalqa.eval.config import EvalConfig

runner = CliRunner()


def _refs(eval_file: Path) -> list[dict]:
    return [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _fixture_predictions(eval_file: Path) -> list[dict]:
    """dev-001 verbatim, dev-002 empty (the token limit cut its reasoning), dev-003 one of two facts (full-width),
    dev-004 facts only in the reasoning, dev-006 cut by the token limit; the rest answer with the question itself.
    dev-005 carries no id (matched by question)."""
    preds = []
    for ref in _refs(eval_file):
        pred = {"id": ref["id"], "question": ref["question"], "answer": ref["question"], "reasoning": ""}
        if ref["id"] == "dev-001":
            pred["answer"] = ref["reference_answer"]
        elif ref["id"] == "dev-002":
            pred["answer"], pred["reasoning"], pred["cut"] = "", "还在想", True
        elif ref["id"] == "dev-003":
            pred["answer"] = "掘进工作面回风巷瓦斯浓度超过１．０％时必须停止工作。"
        elif ref["id"] == "dev-004":
            pred["answer"], pred["reasoning"] = "按规程执行。", ref["reference_answer"]
        elif ref["id"] == "dev-005":
            del pred["id"]
        elif ref["id"] == "dev-006":
            pred["cut"] = True
        preds.append(pred)
    return preds


def _write(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_eval_on_predictions_writes_json_and_markdown(tmp_path, eval_file):
    preds = _write(tmp_path / "results.json", _fixture_predictions(eval_file))
    result = runner.invoke(app, ["eval", "--references", str(eval_file), "--predictions", str(preds), "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    report = load_report(tmp_path / "rep.json")
    items = {i["id"]: i for i in report["items"]}
    assert len(items) == 30 and report["tokenization"] == "char" and report["label"] == "results"
    assert items["dev-001"]["rouge_l"] == pytest.approx(1.0) and items["dev-001"]["bleu4"] == pytest.approx(1.0)
    assert items["dev-001"]["key_fact_recall"] == 1.0
    assert items["dev-002"]["rouge_l"] == 0.0 and items["dev-002"]["key_fact_recall"] == 0.0
    assert items["dev-003"]["facts_found"] == ["1.0%"] and items["dev-003"]["facts_missed"] == ["1.5%"]
    assert items["dev-004"]["key_fact_recall"] == 0.0 and items["dev-004"]["reasoning"]
    assert items["dev-005"]["answer"]  # matched by question text
    assert report["overall"]["empty_answers"] == 1
    assert report["overall"]["cut_answers"] == 1 and items["dev-006"]["cut"] and "cut" not in items["dev-001"]
    recalls = [i["key_fact_recall"] for i in report["items"]]
    assert report["overall"]["key_fact_recall"] == pytest.approx(sum(recalls) / 30)
    md = (tmp_path / "rep.md").read_text(encoding="utf-8")
    assert "| dev-003 |" in md and "one token per character" in md
    assert "| empty answers | cut at the token limit |" in md and "| 1 | 1 |\n" in md  # all: 1 empty, 1 cut
    cut_rows = [line for line in md.splitlines() if "| (cut) " in line]  # the answer cell says it was cut
    assert len(cut_rows) == 1 and cut_rows[0].startswith("| dev-006 |")
    assert "11小时 = 11h" in md and "| h | h、hr、hrs、小时" in md  # how key facts matched, with the unit table
    assert report["key_fact_note"].startswith("a key fact is found")


def test_compare_writes_side_by_side_table_and_chart(tmp_path, eval_file):
    worse = _write(tmp_path / "base.json", _fixture_predictions(eval_file))
    perfect = [{"id": r["id"], "question": r["question"], "answer": r["reference_answer"]} for r in _refs(eval_file)]
    better = _write(tmp_path / "tuned.json", perfect)
    for name, preds in (("base", worse), ("tuned", better)):
        result = runner.invoke(app, ["eval", "-r", str(eval_file), "--predictions", str(preds), "-o", str(tmp_path / f"{name}-report")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["eval", "--compare", str(tmp_path / "base-report.json"), str(tmp_path / "tuned-report.json"), "-o", str(tmp_path / "cmp")]
    )
    assert result.exit_code == 0, result.output
    md = (tmp_path / "cmp.md").read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| all | 30 | key-fact recall"))
    base_kf, tuned_kf, change = (float(x) for x in re.findall(r"[-+]?\d\.\d{3}", row))
    assert tuned_kf == pytest.approx(1.0) and change == pytest.approx(tuned_kf - base_kf) and change > 0
    png = (tmp_path / "cmp.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_unmatched_predictions_name_the_missing_ids(tmp_path, eval_file):
    preds = [p for p in _fixture_predictions(eval_file) if p.get("id") not in ("dev-007", "dev-030")]
    path = _write(tmp_path / "partial.json", preds)
    result = runner.invoke(app, ["eval", "-r", str(eval_file), "--predictions", str(path), "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, CoalqaError)
    assert "dev-007" in str(result.exception) and "dev-030" in str(result.exception)
    assert not (tmp_path / "x.json").exists()


def test_bad_inputs_are_clear_errors(tmp_path, eval_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "q?", "reference_answer": "r", "key_facts": "11h"}\n', encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"bad.jsonl: line 1: key_facts must be a list"):
        load_references(bad)
    no_answer = _write(tmp_path / "preds.json", [{"id": "dev-001", "text": "x"}])
    result = runner.invoke(app, ["eval", "-r", str(eval_file), "--predictions", str(no_answer)])
    assert isinstance(result.exception, CoalqaError) and "row 1" in str(result.exception)
    result = runner.invoke(app, ["eval", "--predictions", str(no_answer)])
    assert isinstance(result.exception, CoalqaError) and "--references" in str(result.exception)


def test_qa_file_references_without_key_facts(tmp_path):
    qa = _write(tmp_path / "QAdata_test.json", [
        {"input": "矿灯最少能用多久？", "output": "最低应当能连续正常使用11h。", "chunk_id": "c1", "source": "a.txt", "locator": "第一条"},
        {"input": "回风巷瓦斯超限怎么办？", "output": "必须停止工作，撤出人员。", "chunk_id": "c2", "source": "a.txt", "locator": "第二条"},
    ])
    refs = load_references(qa)
    assert [r["id"] for r in refs] == ["qa-0001", "qa-0002"] and refs[0]["locator"] == "第一条"
    preds = [{"question": "矿灯最少能用多久？", "answer": "最低应当能连续正常使用11h。"}, {"question": "回风巷瓦斯超限怎么办？", "answer": ""}]
    report = evaluate(refs, preds, EvalConfig(), label="held-out")
    assert report["overall"]["key_fact_recall"] is None and report["overall"]["items_with_key_facts"] == 0
    assert report["overall"]["rouge_l"] == pytest.approx(0.5)


def test_llm_judge_through_the_provider_layer(tmp_path, eval_file, monkeypatch):
    from llm_server import LLMServer

    def grade(prompt: str) -> str:
        candidate = prompt.split("候选答案：", 1)[1]
        return '{"score": 5, "reason": "一致"}' if "11h" in candidate else '```json\n{"score": 1, "reason": "错误"}\n```'

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
    refs = load_references(eval_file)[:3]
    preds = [{"id": r["id"], "answer": r["reference_answer"] if r["id"] == "dev-002" else "不知道"} for r in refs]
    with LLMServer(reply=grade) as srv:
        srv.faults.append({"content": "no score here"})
        cfg = EvalConfig(judge=True, judge_provider="openai", judge_model="judge", judge_base_url=srv.url, judge_concurrency=1)
        report = evaluate(refs, preds, cfg, label="judged")
    scores = {i["id"]: i["judge_score"] for i in report["items"]}
    assert scores == {"dev-001": None, "dev-002": 5, "dev-003": 1}
    assert report["overall"]["judged"] == 2 and report["overall"]["judge"] == pytest.approx(0.5)
    assert "sk-test-judge" not in json.dumps(report)


def test_eval_generates_answers_through_the_ask_api(tmp_path, eval_file, tiny_qwen2_dir):
    out = tmp_path / "base"
    result = runner.invoke(app, ["eval", "-r", str(eval_file), "--no-adapter", "--model_name_or_path", str(tiny_qwen2_dir),
                                 "--limit", "2", "--max_new_tokens", "4", "-o", str(out)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    report = load_report(f"{out}.json")
    preds = json.loads(Path(f"{out}.predictions.json").read_text(encoding="utf-8"))
    assert [p["id"] for p in preds] == ["dev-001", "dev-002"] and all(p["tokens"] <= 4 for p in preds)
    assert report["label"] == "base" and report["overall"]["n"] == 2
    assert report["model"]["base"] == str(tiny_qwen2_dir) and report["generation"]["temperature"] == 0.0
    assert [i["answer"] for i in report["items"]] == [p["answer"] for p in preds]


def test_console_summary_stays_readable_at_80_columns() -> None:
    """A grounded report with two groups: no header or metric name cut to '…' in an 80-column terminal or log."""
    from rich.console import Console

    from coalqa.eval.command import summary_table
    from coalqa.eval.report import METRICS

    scope = {k: 0.5 for k in METRICS} | {"n": 10, "facts_found": 3, "facts_total": 6, "empty_answers": 0}
    report = {"label": "fine-tuned + grounded", "tokenization": "char", "overall": scope | {"n": 30},
              "groups": {"trained": scope | {"n": 20}, "not trained": scope}}
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(summary_table(report))
    text = console.export_text()
    assert "…" not in text
    assert all(h in text for h in ("all (n=30)", "trained (n=20)", "not trained (n=10)"))
    assert "citation accuracy" in text and text.count("0.500") == 3 * len(METRICS)
