"""Answers corrected: ``coalqa serve --feedback_dir`` (a real server: the tiny random base, grounded on the small
index, with an API key) stores "correct / wrong" + a corrected answer from its page (real Chromium) and its API;
``coalqa review --feedback`` shows each item beside its cited clause; a confirmed correction exports as a QA pair and
as an eval reference."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from conftest import write_chunks_file
from serve_process import ServeProcess
from typer.testing import CliRunner

from coalqa.cli import app as cli

KEY = "feedback-key-91c2"
QUESTION = "灯房发给下井人员的矿灯，最少要保证能连续正常使用多长时间？"
CORRECTION = "发出的矿灯，最低应当能连续正常使用11h。"
CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture()
def server(tmp_path, tiny_qwen2_dir, small_index):
    folder = tmp_path / "feedback"
    proc = ServeProcess(["--model_name_or_path", str(tiny_qwen2_dir), "--no-adapter", "--index", str(small_index),
                         "--min_score", "1", "--max_new_tokens", "8", "--feedback_dir", str(folder)],
                        tmp_path / "serve.log", env={"COALQA_API_KEY": KEY})
    try:
        yield proc.wait(), folder
    finally:
        proc.stop()


def test_feedback_from_page_and_api_reaches_review_and_exports(server, tmp_path) -> None:
    srv, folder = server
    auth = {"Authorization": f"Bearer {KEY}"}
    assert srv.health()["feedback"] is True
    reply = httpx.post(srv.url + "/v1/chat/completions", headers=auth, timeout=120,
                       json={"model": "coalqa", "messages": [{"role": "user", "content": QUESTION}]}).json()
    answer, citations = reply["choices"][0]["message"]["content"], reply["citations"]
    assert citations and citations[0]["chunk_id"] == "c-lamp"
    item = {"question": QUESTION, "answer": answer, "verdict": "wrong", "correction": CORRECTION, "citations": citations}
    assert httpx.post(srv.url + "/v1/feedback", json=item, timeout=30).status_code == 401  # same key rules as /v1
    assert httpx.post(srv.url + "/v1/feedback", json=item | {"verdict": "maybe"}, headers=auth).status_code == 400
    assert httpx.post(srv.url + "/v1/feedback", content=b"x" * 2_000_000, headers=auth).status_code == 400
    saved = httpx.post(srv.url + "/v1/feedback", json=item, headers=auth, timeout=30)
    assert saved.status_code == 200, saved.text

    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is missing: run `bash scripts/test-system-packages.sh`")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.fill("#api-key", KEY)
            page.click("#save-key")
            page.fill("#question", "放炮后应连续喷雾多长时间？")
            page.click("#send")
            page.locator(".feedback button", has_text="回答有误").click(timeout=60_000)
            page.fill(".feedback-form textarea", "放炮后连续喷雾5min以上。")
            page.locator(".feedback-form button").click()
            expect(page.locator(".feedback")).to_contain_text("已记录")
            page.screenshot(path=str(tmp_path / "serve_feedback.png"))
        finally:
            browser.close()

    rows = [json.loads(x) for x in (folder / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["client"] for r in rows] == ["api", "page"]
    assert rows[0]["correction"] == CORRECTION and rows[0]["verdict"] == "wrong"
    assert rows[0]["index_fingerprint"] and rows[0]["model"] == "coalqa" and rows[0]["time"].endswith("Z")
    assert rows[1]["citations"][0]["chunk_id"] == "c-dust" and rows[1]["correction"] == "放炮后连续喷雾5min以上。"
    assert KEY not in (folder / "feedback.jsonl").read_text(encoding="utf-8")

    # review: each item beside its cited clause; confirm both corrections, then export
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    from coalqa.review import ReviewLog
    from coalqa.review.actions import decide
    from coalqa.review.feedback import feedback_pairs
    from coalqa.review.pairs import ReviewSet, read_chunk_table

    rs = ReviewSet(None, chunks, ReviewLog.open(folder / "review.jsonl"),
                   feedback=feedback_pairs(folder, read_chunk_table(chunks)))
    lamp = rs.detail(rs.pairs[0])
    assert lamp["origin"] == "feedback" and lamp["answer"] == CORRECTION and lamp["chunk"]["id"] == "c-lamp"
    assert lamp["extra"]["answer"] == answer and lamp["extra"]["verdict"] == "wrong"
    assert all(ok for _, _, ok in lamp["answer_numbers"])  # 11h: the clause states it
    for p in rs.pairs:
        decide(rs, p.id, "approve", 0, "张工")
    runner = CliRunner()
    status = runner.invoke(cli, ["review", "status", "--feedback", str(folder), "--chunks", str(chunks)])
    assert status.exit_code == 0 and "approved 2" in status.output, status.output
    out = tmp_path / "from_feedback.json"
    result = runner.invoke(cli, ["review", "export", "--feedback", str(folder), "--chunks", str(chunks), "-o", str(out)])
    assert result.exit_code == 0, result.output
    pairs = json.loads(out.read_text(encoding="utf-8"))
    assert [(p["output"], p["chunk_id"], p["review"]["origin"]) for p in pairs] == [
        (CORRECTION, "c-lamp", "feedback"), ("放炮后连续喷雾5min以上。", "c-dust", "feedback")]
    refs = tmp_path / "from_feedback_eval.jsonl"
    result = runner.invoke(cli, ["review", "export", "--feedback", str(folder), "--chunks", str(chunks), "--as_eval",
                                 "-o", str(refs)])
    assert result.exit_code == 0, result.output
    items = [json.loads(x) for x in refs.read_text(encoding="utf-8").splitlines()]
    assert [(i["key_facts"], i["source_locator"]) for i in items] == [(["11h"], "第四百七十一条"), (["5min"], "4.7.2.4")]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"id": i["id"], "answer": i["reference_answer"]} for i in items], ensure_ascii=False),
                     encoding="utf-8")
    scored = runner.invoke(cli, ["eval", "--references", str(refs), "--predictions", str(preds), "-o", str(tmp_path / "r")])
    assert scored.exit_code == 0, scored.output
