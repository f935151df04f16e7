"""Regulation updates (issue 14): edit one clause of a copy of a real regulation, rebuild the chunks, and check
that exactly that chunk is reported changed, only its QA pairs are regenerated, and an adapter trained on the
old chunks is flagged as stale."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coalqa.corpus.command import corpus
from coalqa.generate.command import load_chunks
from coalqa.generate.config import GenerateConfig
from coalqa.generate.run import run_generate
from coalqa.train.provenance import PROVENANCE, data_provenance, stale_chunks

SOURCE = "10-煤矿防治水规定.txt"
OLD, NEW = "应当能在20h内排出矿井24h的正常涌水量", "应当能在18h内排出矿井24h的正常涌水量"


def run_corpus(*args: str):
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("corpus")(corpus)
    return CliRunner().invoke(app, ["corpus", *args])


def read_checkpoint_records(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if "chunk_id" in r]


@pytest.fixture(scope="module")
def update(corpus_dir: Path, tmp_path_factory) -> dict:
    """v1 chunks + clause QA pairs of a copy of a real regulation; then one clause edited, chunks and pairs rebuilt."""
    work = tmp_path_factory.mktemp("update")
    docs = work / "docs"
    docs.mkdir()
    shutil.copy(corpus_dir / SOURCE, docs / SOURCE)
    chunks = work / "chunks.jsonl"
    assert run_corpus(str(docs), "-o", str(chunks)).exit_code == 0
    v1 = work / "chunks.v1.jsonl"
    shutil.copy(chunks, v1)
    qa = work / "QAdata_all.json"
    cfg = GenerateConfig(provider="clause")
    first = run_generate(load_chunks(chunks), qa, cfg, chunks_path=chunks)
    qa_v1 = json.loads(qa.read_text(encoding="utf-8"))
    provenance = data_provenance(qa, qa_v1)  # what `coalqa train` records for an adapter trained on qa_v1
    checkpoint = work / "QAdata_all.checkpoint.jsonl"
    records_v1 = len(read_checkpoint_records(checkpoint))

    text = (docs / SOURCE).read_text(encoding="utf-8")
    assert text.count(OLD) == 1
    (docs / SOURCE).write_text(text.replace(OLD, NEW), encoding="utf-8")
    result = run_corpus(str(docs), "-o", str(chunks), "--previous", str(v1))
    assert result.exit_code == 0, result.output
    second = run_generate(load_chunks(chunks), qa, cfg, chunks_path=chunks)
    return {
        "work": work, "chunks": chunks, "v1": v1, "qa": qa, "cfg": cfg, "first": first, "second": second,
        "qa_v1": qa_v1, "qa_v2": json.loads(qa.read_text(encoding="utf-8")), "provenance": provenance,
        "new_records": read_checkpoint_records(checkpoint)[records_v1:], "output": result.output,
        "report": json.loads((work / "chunks.report.json").read_text(encoding="utf-8")),
    }


def test_corpus_previous_reports_exactly_the_edited_chunk(update) -> None:
    diff = update["report"]["update"]
    assert diff["added"] == [] and diff["removed"] == []
    assert [(c["source"], c["locator"]) for c in diff["changed"]] == [(SOURCE, "第五十七条–第六十五条")]
    assert diff["unchanged"] == len(load_chunks(update["chunks"])) - 1
    assert "1 changed" in " ".join(update["output"].split()) and f"changed: {SOURCE} 第五十七条–第六十五条" in update["output"]


def test_generate_regenerates_only_the_changed_chunk(update) -> None:
    chunks = load_chunks(update["chunks"])
    (changed,) = [c for c in chunks if NEW in c["text"]]
    first, second = update["first"], update["second"]
    assert first["chunks"]["generated_this_run"] == len(chunks)
    assert second["chunks"]["generated_this_run"] == 1
    assert second["chunks"]["reused_from_checkpoint"] == len(chunks) - 1
    assert second["chunks"]["stale_records_ignored"] == 1
    assert [r["chunk_sha"] for r in update["new_records"]] == [changed["sha"]]  # the only chunk generated again

    old_pairs = [p for p in update["qa_v1"] if p["chunk_sha"] != update["new_records"][0]["chunk_sha"]]
    other = [p for p in update["qa_v1"] if p["locator"] != changed["locator"]]
    assert other and [p for p in update["qa_v2"] if p["locator"] != changed["locator"]] == other  # untouched
    mine = [p for p in update["qa_v2"] if p["chunk_sha"] == changed["sha"]]
    assert any(NEW in p["output"] for p in mine) and not any(OLD in p["output"] for p in update["qa_v2"])
    assert any(OLD in p["output"] for p in update["qa_v1"]) and len(old_pairs) == len(update["qa_v1"])
    assert all(p["chunk_sha"] in {c["sha"] for c in chunks} for p in update["qa_v2"])


def test_previous_qa_reuses_pairs_without_the_checkpoint(update, tmp_path: Path) -> None:
    out = tmp_path / "QA_new.json"
    # the dataset of the first run: a copy, with the summary beside it (same generator settings)
    prev = tmp_path / "QA_v1.json"
    prev.write_text(json.dumps(update["qa_v1"], ensure_ascii=False), encoding="utf-8")
    shutil.copy(update["work"] / "QAdata_all.summary.json", tmp_path / "QA_v1.summary.json")
    cfg = update["cfg"].model_copy(update={"previous_qa": prev})
    summary = run_generate(load_chunks(update["chunks"]), out, cfg, chunks_path=update["chunks"])
    n = summary["chunks"]["total"]
    assert summary["chunks"]["reused_from_previous_qa"] == n - 1 and summary["chunks"]["generated_this_run"] == 1
    assert json.loads(out.read_text(encoding="utf-8")) == update["qa_v2"]

    other = json.loads((tmp_path / "QA_v1.summary.json").read_text(encoding="utf-8")) | {"model": "glm-4", "provider": "zhipuai"}
    (tmp_path / "QA_v1.summary.json").write_text(json.dumps(other), encoding="utf-8")
    from coalqa.errors import CoalqaError

    with pytest.raises(CoalqaError, match="--previous_qa .* was made with provider/model/prompt"):
        run_generate(load_chunks(update["chunks"]), tmp_path / "QA_other.json", cfg, chunks_path=update["chunks"])


def test_adapter_trained_on_old_chunks_is_flagged(update, tmp_path: Path, monkeypatch, capsys) -> None:
    prov = update["provenance"]
    assert prov["chunks_file"]["path"] == str(update["chunks"].resolve())
    assert prov["chunks_file"]["sha256"] == update["first"]["chunks_file"]["sha256"]
    assert len(prov["chunks"]) == len({p["chunk_sha"] for p in update["qa_v1"]})
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / PROVENANCE).write_text(json.dumps(prov, ensure_ascii=False), encoding="utf-8")
    warning = stale_chunks(adapter)
    assert warning and "1 of" in warning and f"{SOURCE} 第五十七条–第六十五条" in warning

    # `coalqa ask` prints it before loading (this folder holds no weights, so loading then fails)
    from coalqa.cli import main

    monkeypatch.setattr(sys, "argv", ["coalqa", "ask", "--peft_model", str(adapter), "--question", "问"])
    with pytest.raises(SystemExit):
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert "trained on 1 of" in err and "not a PEFT adapter folder" in err

    (adapter / PROVENANCE).write_text(json.dumps(prov | {"chunks_file": {"path": str(update["v1"]), "sha256": "x"}}),
                                      encoding="utf-8")
    assert stale_chunks(adapter) is None  # the file it names still holds every trained chunk
    (adapter / PROVENANCE).unlink()
    assert stale_chunks(adapter) is None  # nothing to check
