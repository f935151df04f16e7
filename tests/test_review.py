"""``coalqa review`` without a browser: the review log's durability and versions, staleness, exports, the app's
routes and tokens (in-process ASGI client), a real server killed with SIGKILL, and export → ``coalqa train``.

The set: the six regulation clauses of ``conftest.SMALL_CHUNKS`` with QA pairs written for them, one of which states a
number its clause lacks (12h for the 11h lamp rule) and one holding HTML that must stay text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import SMALL_CHUNKS, write_chunks_file
from serve_process import free_port
from typer.testing import CliRunner

from coalqa.cli import app as cli
from coalqa.errors import CoalqaError
from coalqa.review import ReviewLog, ReviewSet, log_path_for, pair_id
from coalqa.review.actions import bulk, decide, undo
from coalqa.review.export import export_training, training_note
from coalqa.review.log import Conflict

TOKEN = "review-token-5d1e"
XSS = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"

PAIRS = [
    {"input": "矿灯最低应当能连续正常使用多长时间？", "output": "发出的矿灯，最低应当能连续正常使用11h。", "chunk_id": "c-lamp"},
    {"input": "矿灯可以连续使用多久？", "output": "矿灯最低应当能连续正常使用12h。", "chunk_id": "c-lamp"},  # 12h: not in the clause
    {"input": "高瓦斯矿井采掘工作面每班至少检查几次甲烷浓度？", "output": "高瓦斯矿井，每班至少3次。", "chunk_id": "c-gas"},
    {"input": "低瓦斯矿井每班至少检查几次？", "output": "低瓦斯矿井，每班至少2次。", "chunk_id": "c-gas"},
    {"input": "采区避难硐室的额定防护时间是多少？", "output": "额定防护时间不低于96h。", "chunk_id": "c-refuge"},
    {"input": "主要通风机反风设施必须在多长时间内改变风流方向？", "output": "必须能在10min内改变巷道中的风流方向。", "chunk_id": "c-fan"},
    {"input": "反风后主要通风机的供给风量不应小于多少？", "output": "不应小于正常供风量的40%。", "chunk_id": "c-fan"},
    {"input": "放炮喷雾装置应安装在距工作面多远处？", "output": "应安装在距工作面10m～15m处。", "chunk_id": "c-dust"},
    {"input": "放炮后应连续喷雾多长时间？", "output": "放炮后连续喷雾5min以上。", "chunk_id": "c-dust"},
    {"input": "煤矿负责人接到事故报告后应当在多长时间内上报？" + XSS, "output": "应当于1小时内报告。" + XSS, "chunk_id": "c-report"},
    {"input": "事故现场有关人员应当首先向谁报告？", "output": "应当立即报告煤矿负责人。", "chunk_id": "c-report"},
    {"input": "每盏矿灯必须怎样管理？", "output": "每盏矿灯必须编号，经常使用矿灯的人员必须专灯专用。", "chunk_id": "c-lamp"},
]


def _by_id() -> dict[str, dict]:
    return {c["id"]: c for c in SMALL_CHUNKS}


def make_set(tmp_path: Path, pairs: list[dict] | None = None, chunks: list[dict] | None = None) -> tuple[Path, Path]:
    """A QA file (as `coalqa generate` writes: source, locator, chunk_sha of each pair) and its chunks file."""
    from coalqa.review.pairs import read_chunk_table

    chunks_path = write_chunks_file(tmp_path / "chunks.jsonl", chunks)
    table = read_chunk_table(chunks_path)
    rows = [p | {"chunk_sha": table[p["chunk_id"]]["sha"], "source": table[p["chunk_id"]]["source"],
                 "locator": table[p["chunk_id"]]["locator"]} for p in (PAIRS if pairs is None else pairs)]
    qa = tmp_path / "QAdata_all.json"
    qa.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return qa, chunks_path


def open_set(qa: Path, chunks: Path) -> ReviewSet:
    return ReviewSet(qa, chunks, ReviewLog.open(log_path_for(qa)))


def test_pair_ids_are_stable_and_flags_use_the_generate_checks(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    assert [p.id for p in rs.pairs] == [pair_id(p["chunk_id"], p["input"], p["output"]) for p in PAIRS]
    assert [p.id for p in open_set(qa, chunks).pairs] == [p.id for p in rs.pairs]
    flagged = {p.id: p.flags for p in rs.pairs}
    assert flagged[rs.pairs[1].id] == {"number"} and rs.pairs[1].unsupported == ["12h"]
    # the HTML pair states "2" (in its markup) and has more Latin letters than Chinese: both checks catch it
    assert flagged[rs.pairs[9].id] == {"number", "language"}
    assert all(not f for i, f in enumerate(flagged.values()) if i not in (1, 9))
    assert [p.id for p, _ in rs.view(sort="risky")][:2] == [rs.pairs[9].id, rs.pairs[1].id]
    detail = rs.detail(rs.pairs[1])
    (start, end, supported), = detail["answer_numbers"]
    assert detail["answer"][start:end] == "12h" and supported is False
    assert any(ok for _, _, ok in rs.detail(rs.pairs[0])["answer_numbers"])  # 11h is in the clause
    lamp = detail["chunk"]["text"]
    assert any("11h" in lamp[s:e] for s, e in rs.detail(rs.pairs[0])["support"])


def test_latest_decision_wins_undo_pops_and_the_qa_file_is_never_touched(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    before = qa.read_bytes()
    rs = open_set(qa, chunks)
    p = rs.pairs[0]
    decide(rs, p.id, "approve", 0, "张工")
    decide(rs, p.id, "reject", 1, "李工", reason="数值错误")
    assert rs.state(p)[0] == "rejected"
    undo(rs, "李工")
    assert rs.state(p)[0] == "approved"
    again = open_set(qa, chunks)
    assert again.state(again.by_id[p.id])[0] == "approved" and again.log.version(p.id) == 3
    assert qa.read_bytes() == before
    mode = log_path_for(qa).stat().st_mode & 0o777
    from coalqa.jsonio import new_file_mode

    assert mode == new_file_mode() and not mode & 0o002


def test_two_conflicting_saves_one_refusal_no_lost_decision(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    first, second = open_set(qa, chunks), open_set(qa, chunks)  # two servers on one log
    pid = first.pairs[2].id
    decide(first, pid, "approve", 0, "张工")
    with pytest.raises(Conflict) as refused:
        decide(second, pid, "reject", 0, "李工", reason="数值错误")
    assert refused.value.current["reviewer"] == "张工" and refused.value.version == 1
    decide(second, pid, "reject", 1, "李工", reason="数值错误")  # after seeing it: saved on top
    first.log.refresh()  # the first server reads what the second wrote before showing the pair again
    assert first.state(first.by_id[pid])[0] == "rejected" and first.log.version(pid) == 2
    lines = [json.loads(x) for x in log_path_for(qa).read_text(encoding="utf-8").splitlines()]
    assert [(r["decision"], r["reviewer"]) for r in lines if r["type"] == "decision"] == [("approve", "张工"), ("reject", "李工")]


def test_torn_last_line_is_tolerated_reported_and_closed(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    decide(rs, rs.pairs[0].id, "approve", 0, "张工")
    log = log_path_for(qa)
    with log.open("ab") as f:
        f.write(b'{"type":"decision","pair_id":"' + rs.pairs[1].id.encode() + b'","decis')  # a crash in mid-write
    again = open_set(qa, chunks)
    assert again.log.torn_tail is not None and again.state(again.pairs[1])[0] == "pending"
    result = CliRunner().invoke(cli, ["review", "status", str(qa), "--chunks", str(chunks)])
    assert result.exit_code == 0 and "unfinished line" in result.output and "approved" in result.output
    decide(again, again.pairs[2].id, "approve", 0, "张工")
    third = open_set(qa, chunks)
    assert third.log.torn == [(3, len(b'{"type":"decision","pair_id":"') + 16 + len(b'","decis'))]
    assert [third.state(p)[0] for p in third.pairs[:3]] == ["approved", "pending", "approved"]
    with log.open("ab") as f:
        f.write(b"not json\n{}\n")  # damage in the middle is an error, not silently skipped
    with pytest.raises(CoalqaError, match="line 7 is not a JSON object"):
        ReviewLog.open(log)


def test_changed_or_removed_clause_makes_its_pairs_stale(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    for p in rs.pairs[:3]:
        decide(rs, p.id, "approve", 0, "张工")
    changed = [dict(c) for c in SMALL_CHUNKS]
    changed[0]["text"] = changed[0]["text"].replace("11h", "12h")  # the lamp rule is amended
    changed = [c for c in changed if c["id"] != "c-gas"]  # and the gas article removed
    rechunked = write_chunks_file(tmp_path / "rechunked.jsonl", changed)
    later = ReviewSet(qa, rechunked, ReviewLog.open(log_path_for(qa)))
    assert [later.state(p)[0] for p in later.pairs[:4]] == ["stale", "stale", "stale", "pending"]
    detail = later.detail(later.pairs[0])
    assert "11h" in detail["stale"]["old_text"] and "12h" in detail["stale"]["new_text"]
    assert later.detail(later.pairs[2])["stale"]["new_text"] is None
    assert "stale" in detail["flags"]
    result = CliRunner().invoke(cli, ["review", "status", str(qa), "--chunks", str(rechunked)])
    assert result.exit_code == 0, result.output
    assert "pending 9 · approved 0 · edited 0 · rejected 0 · stale 3 · total 12" in result.output
    counts = later.counts()["status"]
    assert counts["stale"] == 3 and counts["approved"] == 0
    decide(later, later.pairs[0].id, "approve", 1, "张工")  # re-reviewed against the new text
    assert later.state(later.pairs[0])[0] == "approved"


def test_export_applies_edits_keeps_provenance_and_leaves_out_the_rest(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    p = rs.pairs
    decide(rs, p[0].id, "approve", 0, "张工")
    decide(rs, p[1].id, "edit", 0, "张工", question=p[1].question, answer="矿灯最低应当能连续正常使用11h。")
    decide(rs, p[2].id, "reject", 0, "李工", reason="问题误读条款")
    decide(rs, p[3].id, "skip", 0, "李工")
    out = tmp_path / "reviewed.json"
    counts = export_training(rs, out)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert {k: counts[k] for k in ("approved", "edited", "set_aside", "left", "unsupported")} == \
        {"approved": 1, "edited": 1, "set_aside": 0, "left": len(PAIRS) - 2, "unsupported": 0}
    assert [r["output"] for r in rows] == [PAIRS[0]["output"], "矿灯最低应当能连续正常使用11h。"]
    assert rows[1]["review"]["original"]["output"] == PAIRS[1]["output"]
    from coalqa.jsonio import file_sha256

    assert {r["review"]["log_sha256"] for r in rows} == {file_sha256(log_path_for(qa))}
    summary = json.loads((tmp_path / "reviewed.summary.json").read_text(encoding="utf-8"))
    assert summary["chunks_file"]["path"] == str(chunks.resolve()) and summary["review"]["reviewers"] == ["张工", "李工"]
    note = training_note(qa, [{"input": r["input"], "output": r["output"], "chunk_id": r["chunk_id"],
                               "chunk_sha": r["chunk_sha"]} for r in json.loads(qa.read_text(encoding="utf-8"))])
    assert note and f"{len(PAIRS) - 3} of {len(PAIRS)} pairs unreviewed" in note and "1 rejected" in note


def test_as_eval_sets_chunks_aside_and_passes_coalqa_eval(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    bulk(rs, [p for p, _ in rs.view()], "approve", "张工", len(PAIRS))
    refs = tmp_path / "my_eval.jsonl"
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "--as_eval",
                                      "--doc", "9-煤矿的井工开采通风技术条件.txt", "--chunk", "c-dust", "-o", str(refs)])
    assert result.exit_code == 0, result.output
    items = [json.loads(x) for x in refs.read_text(encoding="utf-8").splitlines()]
    assert [i["source_locator"] for i in items] == ["5.3.2", "5.3.2", "4.7.2.4", "4.7.2.4"]
    assert items[0]["key_facts"] == ["10min"] and items[2]["key_facts"] == ["10m", "15m"]
    assert "10min内改变巷道中的风流方向" in items[0]["source_span"]
    # the reference answers, scored as predictions, find every key fact
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"id": i["id"], "question": i["question"], "answer": i["reference_answer"]}
                                 for i in items], ensure_ascii=False), encoding="utf-8")
    scored = CliRunner().invoke(cli, ["eval", "--references", str(refs), "--predictions", str(preds),
                                      "-o", str(tmp_path / "report")])
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [i["key_fact_recall"] for i in report["items"]] == [1.0] * 4
    assert [i["facts_found"] for i in report["items"]] == [i["key_facts"] for i in items]
    # training export leaves those chunks out and says so
    out = tmp_path / "reviewed.json"
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "-o", str(out)])
    assert result.exit_code == 0 and "4 pairs of chunks set aside for evaluation" in result.output, result.output
    assert {r["chunk_id"] for r in json.loads(out.read_text(encoding="utf-8"))}.isdisjoint({"c-fan", "c-dust"})


def test_cli_refuses_other_hosts_without_token_and_reviewer(tmp_path: Path, monkeypatch) -> None:
    qa, chunks = make_set(tmp_path)
    monkeypatch.delenv("COALQA_REVIEW_TOKEN", raising=False)
    from coalqa.cli import main

    for extra, needed in (([], "token"), (["--token", TOKEN], "--reviewer")):
        proc = subprocess.run([sys.executable, "-m", "coalqa.cli", "review", str(qa), "--chunks", str(chunks),
                               "--host", "0.0.0.0", "--port", "0", *extra], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 2 and needed in proc.stderr, proc.stderr
    assert main  # the entry point that turns CoalqaError into exit 2


def _client(rs: ReviewSet, token: str | None):
    from fastapi.testclient import TestClient

    from coalqa.review.app import create_app

    return TestClient(create_app(rs, reviewer="张工", token=token, max_body_bytes=4096))


def test_every_route_refuses_a_missing_token(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    client = _client(rs, TOKEN)
    routes = [r for r in client.app.routes if hasattr(r, "methods")]
    assert {r.path for r in routes} >= {"/", "/static/{name}", "/api/state", "/api/items", "/api/pairs",
                                        "/api/decide", "/api/bulk", "/api/undo"}
    pid = rs.pairs[0].id
    for r in routes:
        path = r.path.replace("{name}", "review.js")
        for method in r.methods - {"HEAD"}:
            body = {"pair_id": pid, "decision": "approve", "base_version": 0} if method == "POST" else None
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                resp = client.request(method, path, json=body, headers=headers)
                assert resp.status_code == 401, (method, path, headers, resp.text)
    assert not log_path_for(qa).exists()  # nothing was decided
    ok = client.get("/api/state", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["total"] == len(PAIRS)
    page = client.get(f"/?token={TOKEN}", follow_redirects=False)  # the printed URL sets an HttpOnly cookie
    assert page.status_code == 303 and "httponly" in page.headers["set-cookie"].lower()
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    html = client.get("/")
    assert html.status_code == 200 and "script-src 'self'" in html.headers["content-security-policy"]
    assert "'unsafe-inline'" not in html.headers["content-security-policy"]


def test_http_conflicts_limits_and_bulk_confirmation(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    client = _client(rs, None)
    pid = rs.pairs[4].id
    first = client.post("/api/decide", json={"pair_id": pid, "decision": "approve", "base_version": 0})
    second = client.post("/api/decide", json={"pair_id": pid, "decision": "reject", "reason": "其他", "base_version": 0})
    assert first.status_code == 200 and second.status_code == 409
    assert second.json()["current"]["decision"] == "approve" and second.json()["version"] == 1
    assert client.post("/api/decide", content="x" * 5000, headers={"Content-Type": "application/json"}).status_code == 413
    assert client.post("/api/decide", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/decide", json={"pair_id": pid, "decision": "reject", "base_version": 1}).status_code == 400
    view = {"doc": "2-煤矿建设安全规程.txt"}
    n = sum(1 for p, s in rs.view(**view) if s != "approved")
    stale = client.post("/api/bulk", json={**view, "decision": "approve", "count": n + 1})
    assert stale.status_code == 409 and "view changed" in stale.json()["error"]["message"]
    done = client.post("/api/bulk", json={**view, "decision": "approve", "count": n})
    assert done.status_code == 200 and done.json()["saved"] == n
    assert client.post("/api/undo", json={}).json()["undone"] == n
    assert client.get("/api/state").json()["status"]["approved"] == 1


def _server(qa: Path, chunks: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coalqa.cli", "review", str(qa), "--chunks", str(chunks),
                             "--port", str(port), "--reviewer", "张工", *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(url + "/api/state", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(log.read_text(errors="replace"))


@pytest.mark.slow
def test_kill_9_of_the_server_loses_no_acknowledged_decision(tmp_path: Path) -> None:
    """Decisions stream in from two threads; the server is killed with SIGKILL in the middle; every decision that was
    answered 200 is in the log afterwards (and the log reads cleanly)."""
    qa, chunks = make_set(tmp_path, pairs=[{"input": f"第{i}个问题：矿灯使用多长时间？", "output": f"11h，第{i}次。",
                                             "chunk_id": "c-lamp"} for i in range(400)])
    proc, url = _server(qa, chunks, tmp_path / "server.log")
    ids = [p.id for p in open_set(qa, chunks).pairs]
    acked: list[str] = []
    lock = threading.Lock()

    def work(part: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            for pid in part:
                try:
                    r = c.post("/api/decide", json={"pair_id": pid, "decision": "approve", "base_version": 0})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(pid)

    threads = [threading.Thread(target=work, args=(ids[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    while len(acked) < 40:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for t in threads:
        t.join()
    assert 40 <= len(acked) < len(ids)
    rs = open_set(qa, chunks)
    decided = {p.id for p in rs.pairs if rs.state(p)[0] == "approved"}
    assert set(acked) <= decided
    # a restarted server sees them all and goes on
    proc, url = _server(qa, chunks, tmp_path / "server2.log")
    try:
        assert httpx.get(url + "/api/state").json()["status"]["approved"] == len(decided)
    finally:
        proc.kill()
        proc.wait()


def _train(data: Path, base: Path, runs: Path) -> Path:
    """``coalqa train --data DATA`` (the CLI, unchanged) with a tiny float32 setup; the run folder."""
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--model_name_or_path", str(base),
                                      "--output_dir", str(runs), "--use_4bit", "false", "--bnb_4bit_compute_dtype",
                                      "float32", "--max_steps", "1", "--val_ratio", "0", "--max_length", "96",
                                      "--lora_rank", "8", "--lora_alpha", "16", "--save_steps", "1000"])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    return run_dir


@pytest.mark.slow
def test_export_trains_and_the_run_card_records_the_review(tmp_path: Path, tiny_qwen2_dir: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    for p in rs.pairs[:6]:
        decide(rs, p.id, "approve", 0, "张工")
    decide(rs, rs.pairs[6].id, "edit", 0, "李工", question=rs.pairs[6].question, answer="反风后，供给风量不应小于正常供风量的40%。")
    out = tmp_path / "reviewed.json"
    export_training(rs, out)
    run_dir = _train(out, tiny_qwen2_dir, tmp_path / "runs")
    card = (run_dir / "run_card.md").read_text(encoding="utf-8")
    from coalqa.jsonio import file_sha256

    assert "Review: 7 of 7 pairs reviewed (6 approved, 1 edited) by 张工, 李工" in card, card
    assert file_sha256(log_path_for(qa)) in card
    prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    assert prov["review"]["pairs"] == 7


@pytest.mark.slow
def test_training_the_raw_qa_file_with_a_review_log_says_how_many_are_unreviewed(tmp_path: Path,
                                                                                  tiny_qwen2_dir: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    decide(rs, rs.pairs[0].id, "approve", 0, "张工")
    run_dir = _train(qa, tiny_qwen2_dir, tmp_path / "runs")
    assert f"{len(PAIRS) - 1} of {len(PAIRS)} pairs unreviewed" in (run_dir / "run_card.md").read_text(encoding="utf-8")


def test_ocr_chunks_show_their_confidence_and_low_confidence_is_risky(tmp_path: Path) -> None:
    chunks = [dict(c) for c in SMALL_CHUNKS]
    chunks[1] |= {"ocr": True, "ocr_confidence": 0.95}  # read from a scanned page, every line recognised ≥ 0.95
    chunks[0] |= {"ocr": True, "ocr_confidence": 0.10}  # a line recognised at 0.10: its numbers may be misread
    qa, chunks_path = make_set(tmp_path, chunks=chunks)
    rs = open_set(qa, chunks_path)
    gas = [p for p in rs.pairs if p.chunk_id == "c-gas"]
    lamp = [p for p in rs.pairs if p.chunk_id == "c-lamp"]
    assert gas and all("ocr" in rs.flags(p) and "ocr_low" not in rs.flags(p) for p in gas)
    assert all(rs.detail(p)["chunk"]["ocr_confidence"] == 0.95 for p in gas)
    assert lamp and all("ocr_low" in rs.flags(p) and "ocr" not in rs.flags(p) for p in lamp)
    assert all(rs.detail(p)["chunk"]["ocr_confidence"] == 0.10 for p in lamp)
    assert not any({"ocr", "ocr_low"} & set(rs.flags(p)) for p in rs.pairs if p.chunk_id not in ("c-gas", "c-lamp"))
    risky = [p.chunk_id for p, _ in rs.view(sort="risky")]  # low-confidence OCR ranks with unsupported numbers
    last_lamp = max(i for i, c in enumerate(risky) if c == "c-lamp")
    assert last_lamp < min(i for i, c in enumerate(risky) if c == "c-gas")
    assert all(rs.flags(p) for p, _ in rs.view(sort="risky")[:last_lamp + 1])
    assert [p.chunk_id for p, _ in rs.view(flag="ocr_low")] == ["c-lamp"] * len(lamp)


def test_a_pair_whose_clause_is_missing_can_be_decided_and_is_not_stale(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    rows = json.loads(qa.read_text(encoding="utf-8"))
    rows.append({"input": "井下能否使用明火？", "output": "严禁使用明火。", "chunk_id": "c-gone"})
    qa.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    rs = open_set(qa, chunks)
    orphan = rs.pairs[-1]
    assert rs.flags(orphan) == ["no_clause"] and rs.detail(orphan)["chunk"] is None
    decide(rs, orphan.id, "reject", 0, "张工", reason="与条款无关")
    assert rs.state(orphan)[0] == "rejected"


# A standard written the way 14-煤层气（煤矿瓦斯）排放标准.txt is: headings whose numbers run into their words
# (``1适用范围``, ``3.3瓦斯抽放`` reads as 3.3 W, ``3.12排放`` as 3.12 排), definitions, a quantity in running text.
HEADED = [
    {"id": "s-1", "source": "14-排放标准.txt", "title": "排放标准", "locator": "1", "heading": "1适用范围",
     "text": "1适用范围\n本标准规定了煤矿瓦斯排放限值。\n本标准适用于现有矿井的瓦斯排放控制管理。"},
    {"id": "s-3", "source": "14-排放标准.txt", "title": "排放标准", "locator": "3", "heading": "3术语和定义",
     "text": "3术语和定义\n下列术语与定义适用于本标准。\n3.3瓦斯抽放gasdrainage采用专用设备和管路把煤层瓦斯抽出的措施。\n"
             "3.5高浓度瓦斯指甲烷体积浓度大于或等于30%经抽放系统抽出的瓦斯。\n3.12排放限值指标准状态下的浓度。"},
]


def test_as_eval_key_facts_are_quantities_never_heading_numbers(tmp_path: Path) -> None:
    from coalqa.review.export import key_facts, source_span

    clause = HEADED[1]["text"]
    # heading and section numbers are not facts, though the numbers module reads 3.3瓦 as watts
    assert key_facts("3术语和定义\n3.3瓦斯抽放gasdrainage采用专用设备。\n3.12排放限值指浓度。", clause) == []
    assert key_facts("1适用范围", HEADED[0]["text"]) == []
    assert key_facts("大于或等于30%的瓦斯是高浓度瓦斯。", clause) == ["30%"]
    assert key_facts("浓度大于或等于30％（三十个百分点）", clause) == ["30％"]  # as written in the answer
    assert source_span("甲烷体积浓度大于或等于30%。", clause) == "3.5高浓度瓦斯指甲烷体积浓度大于或等于30%经抽放系统抽出的瓦斯。"
    assert source_span("1适用范围", HEADED[0]["text"]) is None

    pairs = [{"input": "本标准的适用范围是什么？", "output": "1适用范围", "chunk_id": "s-1"},
             {"input": "什么是瓦斯抽放？", "output": "3.3瓦斯抽放gasdrainage采用专用设备和管路把煤层瓦斯抽出的措施。", "chunk_id": "s-3"},
             {"input": "高浓度瓦斯的甲烷浓度是多少？", "output": "甲烷体积浓度大于或等于30%。", "chunk_id": "s-3"}]
    qa, chunks = make_set(tmp_path, pairs, HEADED)
    rs = open_set(qa, chunks)
    bulk(rs, [p for p, _ in rs.view()], "approve", "张工", 3)
    refs = tmp_path / "e.jsonl"
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "--as_eval",
                                      "--doc", "14-排放标准.txt", "-o", str(refs)])
    assert result.exit_code == 0, result.output
    assert "left out: 2 approved pair(s)" in result.output and "1 reference(s)" in result.output, result.output
    items = [json.loads(x) for x in refs.read_text(encoding="utf-8").splitlines()]
    assert [(i["key_facts"], i["source_span"]) for i in items] == [
        (["30%"], "3.5高浓度瓦斯指甲烷体积浓度大于或等于30%经抽放系统抽出的瓦斯。")]
    # both chunks chosen for evaluation stay out of training, also the one whose pair made no reference
    assert set(ReviewLog.open(log_path_for(qa)).set_aside) == {"s-1", "s-3"}


def test_an_edit_stating_numbers_its_clause_lacks_needs_confirmation_and_export_lists_it(tmp_path: Path) -> None:
    from coalqa.review.actions import UnconfirmedNumbers

    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    p0, p2 = rs.pairs[0], rs.pairs[2]
    with pytest.raises(UnconfirmedNumbers) as e:  # 11h → 99h: refused, nothing written
        decide(rs, p0.id, "edit", 0, "张工", question=p0.question, answer="矿灯最低应当能连续正常使用99h。")
    assert e.value.numbers == ["99h"] and not log_path_for(qa).exists()
    with pytest.raises(UnconfirmedNumbers):  # confirming other numbers is no confirmation
        decide(rs, p0.id, "edit", 0, "张工", question=p0.question, answer="矿灯最低应当能连续正常使用99h。",
               confirm_unsupported=["12h"])
    rec = decide(rs, p0.id, "edit", 0, "张工", question=p0.question, answer="矿灯最低应当能连续正常使用99h。",
                 confirm_unsupported=["99h"])
    assert rec["unsupported"] == ["99h"] and rs.state(p0)[0] == "edited"
    rec = decide(rs, p2.id, "edit", 0, "张工", question=p2.question, answer="高瓦斯矿井每班至少检查3次。")
    assert "unsupported" not in rec  # a supported edit needs no confirmation
    decide(rs, rs.pairs[1].id, "approve", 0, "李工")  # the original 12h pair, approved as it is

    # over HTTP: 409 with the numbers, then saved when they are confirmed
    client = _client(rs, None)
    p3 = rs.pairs[3]
    body = {"pair_id": p3.id, "decision": "edit", "base_version": 0, "question": p3.question,
            "answer": "低瓦斯矿井，每班至少5次，每次10min。"}
    r = client.post("/api/decide", json=body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "unsupported_numbers", r.text
    assert r.json()["numbers"] == ["5次", "10min"]
    r = client.post("/api/decide", json=body | {"confirm_unsupported": ["10min", "5次"]})
    assert r.status_code == 200 and r.json()["record"]["unsupported"] == ["5次", "10min"], r.text

    out = tmp_path / "reviewed.json"
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 reviewed pair(s) exported whose answer states numbers their clause does not state" in result.output
    assert "99h" in result.output and "12h" in result.output and "5次、10min" in result.output, result.output
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(map(str, (r["review"].get("unsupported") for r in rows))) == sorted(
        ["['99h']", "['12h']", "['5次', '10min']", "None"])
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "-o", str(out),
                                      "--exclude_unsupported"])
    assert result.exit_code == 0 and "3 with numbers their clause does not state" in result.output, result.output
    assert [r["output"] for r in json.loads(out.read_text(encoding="utf-8"))] == ["高瓦斯矿井每班至少检查3次。"]
    # an eval reference must agree with its clause: the pairs stating numbers it lacks are left out, and named
    refs = tmp_path / "e.jsonl"
    result = CliRunner().invoke(cli, ["review", "export", str(qa), "--chunks", str(chunks), "--as_eval",
                                      "--chunk", p0.chunk_id, "--chunk", p2.chunk_id, "-o", str(refs)])
    assert result.exit_code == 0, result.output
    assert f"pair {p0.id}" in result.output and "99h" in result.output, result.output
    answers = [json.loads(x)["reference_answer"] for x in refs.read_text(encoding="utf-8").splitlines()]
    assert answers and not any("99h" in a or "12h" in a or "10min" in a for a in answers), answers


def test_status_and_export_skip_the_flags_only_the_page_shows(tmp_path: Path) -> None:
    """The near-duplicate (MinHash) flags were ~19 of the ~20 s `review status`/`export` took on 10,500 pairs; they
    are not computed there (datasketch is not even imported), and exports come out the same."""
    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    bulk(rs, [p for p, _ in rs.view()], "approve", "张工", len(PAIRS))
    code = ("import sys; from coalqa.cli import main; sys.argv = ['coalqa', 'review', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'datasketch' not in sys.modules, 'the MinHash flags were computed'\nprint('NO-MINHASH')")
    for args in (["status"], ["export", "-o", str(tmp_path / "r.json")]):
        proc = subprocess.run([sys.executable, "-c", code, *args, str(qa), "--chunks", str(chunks)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0 and "NO-MINHASH" in proc.stdout, proc.stdout + proc.stderr
    from coalqa.review.command import load_set

    fast = load_set(qa, chunks, quiet=True, flags=False)
    assert fast.counts() == rs.counts()
    with pytest.raises(CoalqaError, match="without its flags"):
        fast.flags(fast.pairs[0])
    assert "number" in rs.flags(rs.pairs[1])  # the page's set still has them
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == export_rows(rs)


def export_rows(rs: ReviewSet) -> list[dict]:
    from coalqa.review.export import reviewed_rows

    return reviewed_rows(rs)[0]


def test_a_wrong_host_or_busy_port_is_reported_before_loading(tmp_path: Path) -> None:
    import socket

    qa, chunks = make_set(tmp_path)
    env = {**os.environ, "COALQA_REVIEW_TOKEN": TOKEN}
    base = [sys.executable, "-m", "coalqa.cli", "review", str(qa), "--chunks", str(chunks), "--reviewer", "张工"]
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is nobody's address
    proc = subprocess.run([*base, "--host", "192.0.2.1", "--port", "0"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--host 192.0.2.1 is not an address of this machine" in proc.stderr, proc.stderr
    assert "another program" not in proc.stderr and "pairs," not in proc.stderr  # nothing was loaded first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([*base, "--port", str(port)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2 and "the port is in use by another program" in proc.stderr, proc.stderr
    assert "pairs," not in proc.stderr


def test_a_wildcard_host_prints_addresses_colleagues_can_open() -> None:
    import socket

    from coalqa.review.command import page_urls

    urls = page_urls("0.0.0.0", 8765, "?token=t")
    assert urls and not any("0.0.0.0" in u for u in urls), urls
    assert urls[0] == f"http://{socket.gethostname()}:8765/?token=t"
    assert all(u.startswith("http://") and u.endswith(":8765/?token=t") for u in urls)
    assert page_urls("192.168.1.5", 80) == ["http://192.168.1.5:80/"]
    assert page_urls("::1", 8765) == ["http://[::1]:8765/"]


@pytest.mark.slow
def test_sigterm_with_no_request_in_flight_says_none_was_cut_off(tmp_path: Path) -> None:
    qa, chunks = make_set(tmp_path)
    log = tmp_path / "server.log"
    proc, url = _server(qa, chunks, log)
    assert httpx.get(url + "/").status_code == 200  # a file response: runs in a worker thread, which stays idle
    r = httpx.post(url + "/api/decide", json={"pair_id": open_set(qa, chunks).pairs[0].id, "decision": "approve",
                                              "base_version": 0})
    assert r.status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    out = log.read_text(errors="replace")
    assert "in flight abandoned" not in out and "no request was cut off" in out, out
