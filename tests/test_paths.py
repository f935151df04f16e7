"""Outputs never overwrite inputs: coalqa.paths.check_outputs, and every README command through the real CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from coalqa.cli import main
from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256
from coalqa.paths import check_outputs

REGULATION = "第一条 为加强煤矿防治水工作，制定本规定。\n第二条 矿井应当每10天检查一次排水设备。\n"


def test_an_output_that_is_an_input_or_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(REGULATION, encoding="utf-8")
    preds = tmp_path / "report.json"
    preds.write_text("[]", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"coalqa eval: the report .*report\.json would overwrite the input .*--predictions"):
        check_outputs("eval", {"--predictions": preds}, {"the report": tmp_path / "report.json"})
    with pytest.raises(CoalqaError, match=r"inside .*docs, which DOCS reads"):
        check_outputs("corpus", {"DOCS": [docs]}, {"--output": docs / "sub" / "chunks.jsonl"})
    os.link(preds, tmp_path / "hard.json")  # a hard link is the same file
    with pytest.raises(CoalqaError, match="would overwrite"):
        check_outputs("eval", {"--predictions": preds}, {"the report": tmp_path / "hard.json"})
    (tmp_path / "link").symlink_to(docs)  # so is a path through a symlinked folder
    with pytest.raises(CoalqaError, match="would overwrite"):
        check_outputs("corpus", {"DOCS": docs / "a.txt"}, {"--output": tmp_path / "link" / "a.txt"})
    with pytest.raises(CoalqaError, match="the output folder .*holds the input"):
        check_outputs("demo", {"--references": preds}, output_dirs={"--work_dir": tmp_path})
    with pytest.raises(CoalqaError, match="the checkpoint and the dataset are the same file"):
        check_outputs("generate", {}, {"the dataset": tmp_path / "x.json", "the checkpoint": tmp_path / "x.json"})
    # what is allowed: outputs beside the inputs, missing inputs (Hub ids), None
    check_outputs("corpus", {"DOCS": [docs], "--config": None, "--model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"},
                  {"--output": tmp_path / "chunks.jsonl"}, {"runs": tmp_path / "runs"})


# ------------------------------------------------------------------- every README command, real CLI


def _run(monkeypatch, capsys, args: list[str]) -> str:
    """The real entry point; asserts exit status 2 and returns stderr on one line."""
    monkeypatch.setattr(sys, "argv", ["coalqa", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2, err
    assert "Traceback" not in err and "nothing was done" in err, err
    return err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "01-防治水.txt").write_text(REGULATION, encoding="utf-8")
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text(json.dumps({"id": "c1", "source": "a.txt", "title": "规定", "locator": "第二条",
                                  "text": "矿井应当每10天检查一次排水设备。", "chars": 17}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    qa = tmp_path / "runs" / "r1" / "QAdata_all.json"
    qa.parent.mkdir(parents=True)
    qa.write_text(json.dumps([{"input": "排水设备多久检查一次？", "output": "每10天检查一次。"}], ensure_ascii=False),
                  encoding="utf-8")
    questions = tmp_path / "q.json"
    questions.write_text('["排水设备多久检查一次？"]', encoding="utf-8")
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps([{"input": "排水设备多久检查一次？", "output": "每10天。"}], ensure_ascii=False),
                    encoding="utf-8")
    report = tmp_path / "report.json"  # the answers of `coalqa ask`, named like eval's default report
    report.write_text(json.dumps([{"question": "排水设备多久检查一次？", "answer": "每10天。"}], ensure_ascii=False),
                      encoding="utf-8")
    settings = tmp_path / "r.settings.json"
    settings.write_text("{}", encoding="utf-8")
    md = tmp_path / "cmp.md"
    md.write_text("# notes\n", encoding="utf-8")
    report_json = tmp_path / "new.report.json"
    report_json.write_text("{}", encoding="utf-8")
    return {"report_json": report_json, "docs": docs, "doc": docs / "01-防治水.txt", "chunks": chunks, "qa": qa, "questions": questions,
            "refs": refs, "report": report, "settings": settings, "md": md}


@pytest.mark.parametrize(
    ("case", "args", "victim"),
    [
        ("corpus, output inside DOCS", ["corpus", "{docs}", "-o", "{docs}/chunks.jsonl"], "doc"),
        ("corpus, output = a document", ["corpus", "{docs}", "-o", "{doc}"], "doc"),
        ("corpus, output = --previous", ["corpus", "{docs}", "-o", "{chunks}", "--previous", "{chunks}"], "chunks"),
        ("corpus, report = --previous", ["corpus", "{docs}", "-o", "{chunks.parent}/new.jsonl",
                                         "--previous", "{chunks.parent}/new.report.json"], "report_json"),
        ("generate, output = --previous_qa", ["generate", "{chunks}", "-o", "{qa}", "--provider", "clause",
                                              "--previous_qa", "{qa}"], "qa"),
        ("generate, output = chunks", ["generate", "{chunks}", "-o", "{chunks}", "--provider", "clause"], "chunks"),
        ("generate, checkpoint = chunks", ["generate", "{chunks}", "--provider", "clause", "--checkpoint", "{chunks}"], "chunks"),
        ("train, run folder holds the data", ["train", "--data", "{qa}", "--output_dir", "{qa.parent.parent}",
                                              "--run_name", "r1"], "qa"),
        ("ask, output = questions", ["ask", "--peft_model", "{docs}/adapter", "--questions_file", "{questions}",
                                     "--output_file", "{questions}"], "questions"),
        ("ask, settings file = questions", ["ask", "--peft_model", "{docs}/adapter", "--questions_file", "{settings}",
                                            "--output_file", "{settings.parent}/r.json"], "settings"),
        ("eval, default report = predictions", ["eval", "-r", "refs.json", "--predictions", "report.json"], "report"),
        ("eval, report = references", ["eval", "-r", "{refs}", "--peft_model", "{docs}/adapter", "-o", "{refs}"], "refs"),
        ("eval --compare, table = a report", ["eval", "--compare", "{md}", "{report}", "-o", "{md}"], "md"),
        ("export, output inside the adapter", ["export", "--peft_model", "{docs}", "-o", "{docs}/export"], "doc"),
        ("demo, work_dir = DOCS", ["demo", "--docs", "{docs}", "--references", "{refs}", "--work_dir", "{docs}"], "doc"),
        ("demo, work_dir holds references", ["demo", "--docs", "{docs}", "--references", "{refs}",
                                             "--work_dir", "{refs.parent}"], "refs"),
    ],
)
def test_every_command_refuses_to_overwrite_its_inputs(monkeypatch, capsys, files, case, args, victim) -> None:
    monkeypatch.chdir(files["docs"].parent)  # default outputs (eval's `report`) land beside the inputs
    before = {name: file_sha256(p) for name, p in files.items() if p.is_file()}
    listing = sorted(p.name for p in files["docs"].rglob("*"))
    err = _run(monkeypatch, capsys, [a.format(**files) for a in args])
    assert files[victim].name in err or str(files[victim].parent) in err, err
    assert {name: file_sha256(p) for name, p in files.items() if p.is_file()} == before, case
    assert sorted(p.name for p in files["docs"].rglob("*")) == listing  # nothing new written among the inputs


def test_corpus_never_reads_json_data_as_a_document(tmp_path: Path) -> None:
    from coalqa.corpus import load_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "01-防治水.txt").write_text(REGULATION, encoding="utf-8")
    (docs / "chunks.jsonl").write_text('{"id": "c1", "text": "第一条"}\n{"id": "c2", "text": "第二条"}\n', encoding="utf-8")
    (docs / "QAdata_all.json").write_text('[{"input": "问", "output": "答"}]', encoding="utf-8")
    documents, skipped = load_documents([docs])
    assert [d.source for d in documents] == ["01-防治水.txt"]
    assert sorted((p.name, "JSON data" in why) for p, why in skipped) == [("QAdata_all.json", True), ("chunks.jsonl", True)]


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path) -> None:
    """A temporary file is 0o600; the file it becomes must be what open() would have made (umask), or keep its mode."""
    from coalqa.jsonio import new_file_mode, write_text_atomic

    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.json", "{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o640 == new_file_mode()
        (tmp_path / "kept.json").write_text("[]", encoding="utf-8")
        (tmp_path / "kept.json").chmod(0o604)
        write_text_atomic(tmp_path / "kept.json", "{}")
        assert (tmp_path / "kept.json").stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(old)
