"""The generate run: concurrency, checkpoint, resume after kill -9, summary, secrets, CLI, real corpus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_server import LLMServer, echo_pairs
from typer.testing import CliRunner

from coalqa.cli import app
from coalqa.generate import GenerateConfig, run_generate
from coalqa.generate.checkpoint import read_checkpoint

KEY = "sk-test-RUN-SECRET-7f3a9c"


def make_chunks(n: int) -> list[dict]:
    return [{"id": f"doc-{i:03d}", "source": "10-煤矿防治水规定.txt", "title": "煤矿防治水规定", "locator": f"第{i + 1}条",
             "heading": "第一章 总则", "text": f"第{i + 1}条 煤矿企业应当落实第{i + 1}项防治水措施，编号{i:03d}，并建立台账。",
             "chars": 30} for i in range(n)]


def write_chunks(path: Path, chunks: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chunks), encoding="utf-8")
    return path


def cfg(url: str, **kw) -> GenerateConfig:
    return GenerateConfig(provider="openai", model="test-model", base_url=url, retry_wait=0.01, timeout=2, **kw)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_llm_run_writes_dataset_with_provenance_and_summary(tmp_path, key_env) -> None:
    chunks = make_chunks(6)
    replies = {c["text"]: echo_pairs(f"######\n{c['text']}\n######") for c in chunks}
    replies[chunks[1]["text"]] = "<think>嗯</think>```json\n" + replies[chunks[1]["text"]][:-1] + ', {"input": "半截'
    replies[chunks[2]["text"]] = json.dumps([{"input": "防治水措施包括什么？", "output": "抱歉，我无法回答。"},
                                             {"input": "防治水措施包括什么?", "output": "包括台账等。"}], ensure_ascii=False)

    def reply(prompt: str) -> str:
        return next(r for t, r in replies.items() if t in prompt)

    with LLMServer(reply) as srv:
        srv.faults.extend([{"status": 429, "headers": {"Retry-After": "0"}}, {"drop": True}])
        summary = run_generate(chunks, tmp_path / "QAdata_all.json", cfg(srv.url, concurrency=3))
    data = json.loads((tmp_path / "QAdata_all.json").read_text(encoding="utf-8"))
    assert summary["chunks"] == {"total": 6, "done": 6, "failed": 0, "not_attempted": 0, "reused_from_checkpoint": 0,
                                 "reused_from_previous_qa": 0, "generated_this_run": 6, "stale_records_ignored": 0}
    assert {"input", "output", "chunk_id", "chunk_sha", "source", "locator"} == set(data[0])
    assert [d["chunk_id"] for d in data] == sorted(d["chunk_id"] for d in data)  # chunk order, whatever finished first
    assert data[0]["locator"] == "第1条" and data[0]["source"] == "10-煤矿防治水规定.txt"
    p = summary["pairs"]
    assert p["rejected_by_reason"] == {"refusal": 1, "truncated": 1} and p["kept"] == 3 * 5 + 1
    assert summary["model"] == "test-model" and summary["prompt"]["version"].startswith("qa_v1@")
    assert summary["tokens"]["all_runs"]["total_tokens"] > 0
    rejects = [json.loads(x) for x in (tmp_path / "QAdata_all.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["chunk_id"] for r in rejects} == {"doc-001", "doc-002"}


def test_failed_chunk_is_recorded_and_retried_on_rerun(tmp_path, key_env) -> None:
    chunks = make_chunks(4)
    with LLMServer() as srv:
        srv.faults.extend([{"status": 500}] * 3)  # first chunk: every attempt fails (max_retries=2)
        s1 = run_generate(chunks, tmp_path / "out.json", cfg(srv.url, concurrency=1, max_retries=2))
        assert s1["chunks"]["failed"] == 1 and "500" in s1["failed_chunks"][0]["error"]
        n = len(srv.requests)
        s2 = run_generate(chunks, tmp_path / "out.json", cfg(srv.url, concurrency=1, max_retries=2))
        assert len(srv.requests) == n + 1  # only the failed chunk was asked again
    assert s2["chunks"]["failed"] == 0 and s2["chunks"]["reused_from_checkpoint"] == 3
    assert s2["pairs"]["kept"] == 12


ARREARS = {"status": 429, "code": "1113", "message": "您的账户已欠费，请充值后重试。"}


def test_permanent_429_stops_after_one_request_per_chunk_in_flight(tmp_path, key_env) -> None:
    from coalqa.llm import FatalLLMError

    chunks = make_chunks(20)
    out = tmp_path / "QAdata_all.json"
    with LLMServer(latency=0.1, error=ARREARS) as srv:
        with pytest.raises(FatalLLMError, match=r"HTTP 429 \(error code 1113\).*Retrying cannot fix this.*"
                                                r"0 of 20 chunks are done and kept in .*QAdata_all\.checkpoint\.jsonl"):
            run_generate(chunks, out, cfg(srv.url, concurrency=4, max_retries=6))
        assert 1 <= len(srv.requests) <= 4  # at most one per chunk in flight, none retried, none after the first
        summary = json.loads((tmp_path / "QAdata_all.summary.json").read_text(encoding="utf-8"))
        assert summary["chunks"]["not_attempted"] == 20 and json.loads(out.read_text(encoding="utf-8")) == []
        # finished chunks are kept: 3 answered, then the balance runs out; the rerun asks only for the rest
        srv.error = None
        srv.faults.extend([{}, {}, {}, ARREARS])
        with pytest.raises(FatalLLMError, match="3 of 20 chunks are done"):
            run_generate(chunks, out, cfg(srv.url, concurrency=1))
        asked = len(srv.requests)
        again = run_generate(chunks, out, cfg(srv.url, concurrency=4))
        assert len(srv.requests) - asked == 17 and again["chunks"]["done"] == 20


def test_adaptive_concurrency_completes_under_a_rate_limit(tmp_path, key_env) -> None:
    chunks = make_chunks(30)
    with LLMServer(latency=0.05, rate_limit=10) as srv:  # 8 in flight would ask 160 requests/s
        summary = run_generate(chunks, tmp_path / "QAdata_all.json", cfg(srv.url, concurrency=8))
        assert srv.limited > 0  # the limit was really hit …
    assert summary["chunks"]["done"] == 30 and summary["chunks"]["failed"] == 0  # … and no chunk failed
    assert srv.accepted == 30


def test_unfaithful_pairs_are_rejected_with_their_reason(tmp_path, key_env) -> None:
    chunk = {"id": "c1", "source": "s.txt", "title": "煤矿安全规程", "locator": "第一百条",
             "text": "矿井应当每10天至少进行1次全面测风，风量不得低于设计的20%。"}
    reply = json.dumps([
        {"input": "全面测风多久进行一次？", "output": "矿井应当每10天至少进行1次全面测风。"},
        {"input": "风量有什么要求？", "output": "风量不得低于设计的18%，每15天复查。"},
        {"input": "How often is the air measured?", "output": "At least once every ten days."},
    ], ensure_ascii=False)
    with LLMServer(lambda prompt: reply) as srv:
        summary = run_generate([chunk], tmp_path / "QAdata_all.json", cfg(srv.url))
    data = json.loads((tmp_path / "QAdata_all.json").read_text(encoding="utf-8"))
    assert [d["output"] for d in data] == ["矿井应当每10天至少进行1次全面测风。"]
    assert summary["pairs"]["rejected_by_reason"] == {"language": 1, "number_not_in_chunk": 1}
    rejects = [json.loads(x) for x in (tmp_path / "QAdata_all.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["reason"], r["detail"].split(": {")[0]) for r in rejects] == [
        ("number_not_in_chunk", "18%, 15天"), ("language", "answer en, chunk zh")]
    assert "每15天复查" in rejects[0]["detail"]  # the pair itself follows


def test_changed_settings_refuse_to_mix_and_torn_line_is_tolerated(tmp_path, key_env) -> None:
    from coalqa.errors import CoalqaError

    chunks = make_chunks(3)
    with LLMServer() as srv:
        run_generate(chunks, tmp_path / "out.json", cfg(srv.url))
        ckpt = tmp_path / "out.checkpoint.jsonl"
        with ckpt.open("ab") as f:
            f.write(b'{"chunk_id": "doc-000", "status": "do')  # a write torn by kill -9
        again = run_generate(chunks, tmp_path / "out.json", cfg(srv.url))
        assert again["chunks"]["reused_from_checkpoint"] == 3 and len(srv.requests) == 3
        assert read_checkpoint(ckpt)[1]["doc-000"]["status"] == "done"
        with pytest.raises(CoalqaError, match="other settings.*prompt_version|model"):
            run_generate(chunks, tmp_path / "out.json", cfg(srv.url).model_copy(update={"model": "other"}))


def _generate_cmd(chunks: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "coalqa.cli", "generate", str(chunks), "-o", str(out), "--provider", "openai",
            "--model", "test-model", "--base-url", url, "--retry_wait", "0.01", "--max-question-chars", "120", *extra]


@pytest.mark.slow
def test_kill_minus_9_then_rerun_gives_the_uninterrupted_dataset(tmp_path, key_env) -> None:
    chunks = make_chunks(30)
    path = write_chunks(tmp_path / "chunks.jsonl", chunks)
    env = os.environ | {"OPENAI_API_KEY": KEY}
    with LLMServer(latency=0.1) as srv:
        killed = tmp_path / "killed" / "QAdata_all.json"
        proc = subprocess.Popen(_generate_cmd(path, killed, srv.url, "--concurrency", "2"), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ckpt = killed.parent / "QAdata_all.checkpoint.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not ckpt.exists() or ckpt.read_bytes().count(b"\n") < 9):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        out1, err1 = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL and not killed.exists()
        done_before = len(read_checkpoint(ckpt)[1])
        assert 8 <= done_before < 30
        asked = len(srv.requests)
        rerun = subprocess.run(_generate_cmd(path, killed, srv.url, "--concurrency", "4"), env=env,
                               capture_output=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert len(srv.requests) - asked == 30 - done_before  # finished chunks were not asked again
        whole = tmp_path / "whole" / "QAdata_all.json"
        run_generate(chunks, whole, cfg(srv.url, concurrency=8))
    assert killed.read_bytes() == whole.read_bytes()
    summary = json.loads((killed.parent / "QAdata_all.summary.json").read_text(encoding="utf-8"))
    assert summary["chunks"]["reused_from_checkpoint"] == done_before and summary["pairs"]["kept"] == 90
    outputs = [out1, err1, rerun.stdout, rerun.stderr] + [f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()]
    assert all(KEY.encode() not in blob for blob in outputs)


@pytest.mark.slow
def test_secret_never_written_even_when_echoed_by_server(tmp_path) -> None:
    path = write_chunks(tmp_path / "chunks.jsonl", make_chunks(3))
    out = tmp_path / "o" / "QAdata_all.json"
    with LLMServer() as srv:
        srv.faults.extend([{"status": 400, "echo_auth": True}])
        res = subprocess.run(_generate_cmd(path, out, srv.url, "--concurrency", "1"),
                             env=os.environ | {"OPENAI_API_KEY": KEY}, capture_output=True, timeout=120, check=False)
        assert any(KEY in r["headers"].get("authorization", "") for r in srv.requests)  # the key was really used
    assert res.returncode == 1  # one chunk failed (400 is not retried); dataset still written
    summary = json.loads((out.parent / "QAdata_all.summary.json").read_text(encoding="utf-8"))
    assert summary["chunks"]["failed"] == 1 and "***" in summary["failed_chunks"][0]["error"]
    blobs = [res.stdout, res.stderr] + [f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()]
    assert all(KEY.encode() not in blob for blob in blobs)


def test_cli_clause_missing_key_and_bad_flags(tmp_path, monkeypatch) -> None:
    path = write_chunks(tmp_path / "chunks.jsonl", make_chunks(5))
    out = tmp_path / "QAdata_all.json"
    res = CliRunner().invoke(app, ["generate", str(path), "-o", str(out), "--provider", "clause", "--limit", "4",
                                   "--clause_kinds", "article"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data) == 8 and data[0]["input"] == "《煤矿防治水规定》第1条是如何规定的？"
    assert data[0]["output"] == make_chunks(1)[0]["text"]
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    res = CliRunner().invoke(app, ["generate", str(path), "-o", str(tmp_path / "z.json")])
    assert res.exit_code != 0 and "ZHIPUAI_API_KEY is not set" in str(res.exception)
    res = CliRunner().invoke(app, ["generate", str(path), "--pairs", "20-10"])
    assert res.exit_code != 0


def test_clause_on_the_real_corpus_is_verbatim(tmp_path, corpus_dir) -> None:
    """Every chunk of the whole real corpus gets verbatim pairs (its speed: ``python bench/generate_clause.py``)."""
    corpus = pytest.importorskip("coalqa.corpus")
    from dataclasses import asdict

    docs, _ = corpus.load_documents([corpus_dir])
    chunks = [asdict(c) for d in docs for c in corpus.split_into_chunks(d, max_chars=1500)]
    summary = run_generate(chunks, tmp_path / "QAdata_all.json", GenerateConfig(provider="clause"))
    data = json.loads((tmp_path / "QAdata_all.json").read_text(encoding="utf-8"))
    assert summary["chunks"]["done"] == len(chunks) and len(data) >= 2 * len(chunks)
    # verbatim answers pass the faithfulness check: one reject, a fragment of a garbled table row cut inside a
    # number ("00实际计算时…", the tail of 9.00), is the only one (measured: 1 of 10,676 candidates)
    assert summary["pairs"]["rejected_by_reason"].get("number_not_in_chunk", 0) <= 1
    assert "language" not in summary["pairs"]["rejected_by_reason"]
    texts = {c["id"]: c["text"] for c in chunks}
    # verbatim: article answers are parts of the clause text; fact answers are one sentence of it
    # (a list item behind the sentence that introduced the list, joined by "：")
    assert all(piece in texts[d["chunk_id"]] for d in data for piece in d["output"].rstrip("。").split("："))
    facts = [d for d in data if d["input"].startswith("根据《") and ("多少" in d["input"] or "几" in d["input"])]
    assert len(facts) > len(chunks)  # the regulations are full of numbers
    assert summary["settings"]["clause_kinds"] == ["article", "fact"] and "model" not in summary["settings"]  # no glm-4 claim
    lamp = next(d for d in facts if "矿灯，最低应当能连续正常使用" in d["input"])
    assert lamp["input"].startswith("根据《煤矿建设安全规程》第四百") and lamp["input"].endswith("，发出的矿灯，最低应当能连续正常使用多少h？")
    assert lamp["output"] == "发出的矿灯，最低应当能连续正常使用11h。" and lamp["source"] == "2-煤矿建设安全规程.txt"


@pytest.mark.slow
def test_sigterm_saves_finished_chunks_and_exits_at_once(tmp_path, key_env) -> None:
    """A stop request must not wait minutes for requests in flight: finished chunks are kept, a rerun resumes."""
    chunks = make_chunks(12)
    path = write_chunks(tmp_path / "chunks.jsonl", chunks)
    out = tmp_path / "QAdata_all.json"
    ckpt = tmp_path / "QAdata_all.checkpoint.jsonl"
    env = os.environ | {"OPENAI_API_KEY": KEY}
    with LLMServer() as srv:
        srv.faults.extend([{}] * 3 + [{"hang": 120.0}] * 20)  # 3 quick answers, then every request takes 2 minutes
        proc = subprocess.Popen(_generate_cmd(path, out, srv.url, "--concurrency", "2", "--timeout", "300"), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not ckpt.exists() or len(read_checkpoint(ckpt)[1]) < 3):
            time.sleep(0.05)
        while time.monotonic() < deadline and sum("hang" in r["fault"] for r in list(srv.requests)) < 2:
            time.sleep(0.05)  # until the next 2 requests (--concurrency 2) are in flight, hanging
        assert sum("hang" in r["fault"] for r in list(srv.requests)) == 2, "the hanging requests never arrived"
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - asked
        assert proc.returncode == 130, err[-2000:]
        assert stopped_after < 15, f"took {stopped_after:.1f} s to stop"
        assert "interrupted" in err and "Traceback" not in err
        assert len(read_checkpoint(ckpt)[1]) == 3
        srv.faults.clear()
        rerun = subprocess.run(_generate_cmd(path, out, srv.url, "--concurrency", "4"), env=env, capture_output=True,
                               text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((tmp_path / "QAdata_all.summary.json").read_text(encoding="utf-8"))["chunks"]["reused_from_checkpoint"] == 3
