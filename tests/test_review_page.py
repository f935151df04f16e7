"""The review page in real headless Chromium against a real ``coalqa review`` server (with a token): keyboard review of
ten pairs (one edited, one rejected with a reason), a confirmed bulk approval of a filtered view, one undo, a reload
that shows every decision; the unsupported-number highlight; HTML in a pair shown as text. Saves screenshots."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from serve_process import free_port
from test_review import PAIRS, TOKEN, make_set

from coalqa.review import log_path_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@contextmanager
def start(qa: Path, chunks: Path, log: Path):
    """A real ``coalqa review`` process with a token; yields its URL; stopped by its pid afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coalqa.cli", "review", str(qa), "--chunks", str(chunks), "--port",
                             str(port), "--reviewer", "张工"], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "COALQA_REVIEW_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            try:
                if httpx.get(url + "/api/state", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def chromium_page(console_errors: bool = False):
    """A 1400×900 page of headless Debian Chromium (Playwright's own browser download is blocked); yields
    ``(page, errors)``: uncaught page errors, and the console's error messages with ``console_errors``."""
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is missing: run `bash scripts/test-system-packages.sh` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            if console_errors:
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


@pytest.fixture()
def server(tmp_path):
    qa, chunks = make_set(tmp_path)
    with start(qa, chunks, tmp_path / "review.log") as url:
        yield url, qa


def test_keyboard_review_bulk_undo_reload_in_headless_chromium(server, tmp_path) -> None:
    from playwright.sync_api import expect

    url, qa = server
    with chromium_page(console_errors=True) as (page, errors):
        # no token yet: refused. Opened in a page of its own (a fresh context, no listeners): Chromium logs that
        # refusal as a failed load, and the message may arrive after goto returns, so it is never collected here
        refused = page.context.browser.new_page()
        response = refused.goto(url + "/")
        assert response.status == 401 and "token" in refused.content()
        refused.close()
        page.goto(f"{url}/?token={TOKEN}")  # the printed URL: sets the cookie, redirects to /
        page.wait_for_selector("body[data-ready='1']")
        assert page.url == url + "/"

        def at(n: int) -> None:
            expect(page.locator("#position")).to_contain_text(f"第 {n} /")

        def saved(n: int) -> None:  # "saved" shows only after the server answered, i.e. after fsync
            expect(page.locator("#saved")).to_have_text(re.compile(rf"^已保存：.*（第 {n - 1} 条）$"))
            at(n)

        at(1)
        page.keyboard.press("a")
        saved(2)
        # pair 2 states 12h where its clause says 11h: red in the answer, and the 11h of the clause highlighted
        bad = page.locator("#answer mark.num.bad")
        assert bad.count() == 1 and bad.inner_text() == "12h"
        assert "11h" in page.locator("#clause-text mark.num").all_inner_texts()
        assert page.locator("#flags .flag.number").count() == 1
        page.screenshot(path=str(tmp_path / "review_page.png"))
        page.keyboard.press("e")
        page.fill("#edit-answer", "矿灯最低应当能连续正常使用11h。")
        page.keyboard.press("Control+Enter")
        saved(3)
        page.keyboard.press("r")
        page.keyboard.press("3")  # 问题误读条款
        page.locator("#reject-text").fill("问的是低瓦斯矿井")
        page.keyboard.press("Enter")
        saved(4)
        for n in range(4, 10):
            page.keyboard.press("a")
            saved(n + 1)
        # pair 10 holds <script> and <img onerror>: shown as text, never run
        assert "<script>window.__xss=1</script>" in page.locator("#question").inner_text()
        assert "<img src=x onerror=" in page.locator("#answer").inner_text()
        assert page.locator("#split script, #split img").count() == 0
        assert page.evaluate("window.__xss") is None
        page.keyboard.press("a")
        saved(11)
        page.keyboard.press("k")
        at(10)
        assert page.locator("#status").inner_text() == "已通过"

        page.select_option("#f-status", "pending")  # a filtered view: the two pairs left
        expect(page.locator("#position")).to_contain_text("/ 2 条")
        page.click("#bulk-approve")
        assert "2 条" in page.locator("#confirm-text").inner_text()
        page.click("#confirm-ok")
        expect(page.locator("#saved")).to_contain_text("批量通过 2 条")
        page.locator("body").press("u")  # undo once: takes back the bulk approval
        expect(page.locator("#saved")).to_contain_text("已撤销 2")

        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        counts = page.locator("#counts").inner_text()
        for text in ("待审 2", "已通过 8", "已修改 1", "已驳回 1"):
            assert text in counts, counts
        page.select_option("#f-status", "edited")
        expect(page.locator("#position")).to_contain_text("/ 1 条")
        assert page.locator("#answer").inner_text() == "矿灯最低应当能连续正常使用11h。"
        assert page.locator("#answer mark.num.bad").count() == 0
        assert PAIRS[1]["output"] in page.locator("#original").inner_text()
        page.select_option("#f-status", "rejected")
        expect(page.locator("#meta")).to_contain_text("问题误读条款：问的是低瓦斯矿井")
        page.screenshot(path=str(tmp_path / "review_page_rejected.png"))
    assert not errors, errors
    lines = [json.loads(x) for x in log_path_for(qa).read_text(encoding="utf-8").splitlines()]
    decisions = [(r["decision"], r.get("reason")) for r in lines if r["type"] == "decision"]
    assert decisions[:10] == [("approve", None), ("edit", None), ("reject", "问题误读条款：问的是低瓦斯矿井")] + \
        [("approve", None)] * 7
    assert [d for d, _ in decisions[10:]] == ["approve", "approve", "undo", "undo"]
    assert all(r["reviewer"] == "张工" for r in lines if r["type"] == "decision")
    print(f"screenshots: {tmp_path / 'review_page.png'}")


def test_stale_pair_shows_old_and_new_clause_side_by_side(tmp_path) -> None:
    from conftest import SMALL_CHUNKS, write_chunks_file
    from playwright.sync_api import expect
    from test_review import open_set

    from coalqa.review.actions import decide

    qa, chunks = make_set(tmp_path)
    rs = open_set(qa, chunks)
    decide(rs, rs.pairs[0].id, "approve", 0, "张工")
    amended = [dict(c) for c in SMALL_CHUNKS]
    amended[0]["text"] = amended[0]["text"].replace("11h", "12h")  # the lamp rule changed since the review
    rechunked = write_chunks_file(tmp_path / "rechunked.jsonl", amended)
    with start(qa, rechunked, tmp_path / "review.log") as url, chromium_page() as (page, _):
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#f-status", "stale")
        expect(page.locator("#position")).to_contain_text("第 1 / 1 条")
        expect(page.locator("#status")).to_have_text("条款已变更")
        assert "使用11h" in page.locator("#stale-old").inner_text()
        assert "使用12h" in page.locator("#stale-new").inner_text()
        assert page.locator("#stale-old .changed").inner_text() == "1"
        assert page.locator("#stale-new .changed").inner_text() == "2"
        page.keyboard.press("Escape")
        page.locator("body").press("a")  # re-approved against the new text
        expect(page.locator("#saved")).to_contain_text("已保存")
        expect(page.locator("#counts")).to_contain_text("条款已变更 0")


def test_an_edit_with_a_number_the_clause_lacks_asks_before_saving(server, tmp_path) -> None:
    """11h → 99h in the editor: Ctrl+Enter saves nothing and asks, naming 99h; Esc goes back to the editor; the
    confirmation then saves it as 修改后通过 with the number recorded."""
    from playwright.sync_api import expect

    url, qa = server
    with chromium_page() as (page, errors):
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator("#position")).to_contain_text("第 1 /")
        page.keyboard.press("e")
        page.fill("#edit-answer", "发出的矿灯，最低应当能连续正常使用99h。")
        page.keyboard.press("Control+Enter")
        dialog = page.locator("#numbers-confirm")
        expect(dialog).to_be_visible()
        assert dialog.locator("mark.num.bad").all_inner_texts() == ["99h"]
        expect(page.locator("#saved")).to_contain_text("未保存")
        page.screenshot(path=str(tmp_path / "review_numbers_confirm.png"))
        assert not log_path_for(qa).exists()  # nothing saved before the confirmation
        page.keyboard.press("Escape")  # back to the editor, still unsaved
        expect(dialog).to_be_hidden()
        assert page.evaluate("document.activeElement.id") == "edit-answer"
        page.keyboard.press("Control+Enter")
        expect(dialog).to_be_visible()
        page.click("#numbers-confirm-ok")
        expect(page.locator("#saved")).to_have_text(re.compile(r"^已保存：修改后通过（第 1 条）$"))
        page.keyboard.press("k")
        expect(page.locator("#meta")).to_contain_text("确认了条款中没有的数值：99h")
    assert not errors, errors
    recs = [json.loads(x) for x in log_path_for(qa).read_text(encoding="utf-8").splitlines()]
    decisions = [r for r in recs if r["type"] == "decision"]
    assert [(r["decision"], r.get("unsupported")) for r in decisions] == [("edit", ["99h"])]
    print(f"screenshot: {tmp_path / 'review_numbers_confirm.png'}")


def test_search_enter_applies_the_filter_and_gives_the_keys_back_to_the_review(server, tmp_path) -> None:
    """`/`, a search, Enter: the view is filtered and the next keys are shortcuts again, not typed into the search."""
    from playwright.sync_api import expect

    url, qa = server
    with chromium_page() as (page, _):
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator("#position")).to_contain_text("/ 12 条")
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "f-q"
        page.keyboard.type("矿灯")
        page.keyboard.press("Enter")
        expect(page.locator("#position")).to_contain_text("第 1 / 3 条")
        assert page.evaluate("document.activeElement.id") == "pair-pane"
        page.keyboard.press("j")  # a shortcut again
        expect(page.locator("#position")).to_contain_text("第 2 / 3 条")
        page.keyboard.press("a")
        expect(page.locator("#saved")).to_contain_text("已保存：通过（第 2 条）")
        assert page.locator("#f-q").input_value() == "矿灯"  # nothing typed into the search
    recs = [json.loads(x) for x in log_path_for(qa).read_text(encoding="utf-8").splitlines()]
    assert [r["decision"] for r in recs if r["type"] == "decision"] == ["approve"]


def test_ocr_badge_shows_the_confidence_and_marks_a_low_one(tmp_path) -> None:
    from conftest import SMALL_CHUNKS
    from playwright.sync_api import expect

    chunks = [dict(c) for c in SMALL_CHUNKS]
    chunks[0] |= {"ocr": True, "ocr_confidence": 0.10}  # c-lamp: pairs 1, 2 and 12
    chunks[1] |= {"ocr": True, "ocr_confidence": 0.95}  # c-gas: pairs 3 and 4
    qa, chunks_path = make_set(tmp_path, chunks=chunks)
    with start(qa, chunks_path, tmp_path / "review.log") as url, chromium_page() as (page, _):
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator("#position")).to_contain_text("第 1 /")
        expect(page.locator("#ocr")).to_have_text("OCR 识别 · 最低置信度 0.10")
        assert "low" in page.locator("#ocr").get_attribute("class")
        expect(page.locator("#flags .flag.ocr_low")).to_have_text("OCR 低置信度 0.10")
        page.screenshot(path=str(tmp_path / "review_ocr_low.png"))
        for _ in range(2):
            page.keyboard.press("j")
        expect(page.locator("#position")).to_contain_text("第 3 /")
        expect(page.locator("#ocr")).to_have_text("OCR 识别 · 最低置信度 0.95")
        assert "low" not in page.locator("#ocr").get_attribute("class")
        expect(page.locator("#flags .flag.ocr")).to_have_text("OCR 条款 0.95")
        page.keyboard.press("j")
        page.keyboard.press("j")
        expect(page.locator("#ocr")).to_be_hidden()  # pair 5: a clause read from text
    print(f"screenshot: {tmp_path / 'review_ocr_low.png'}")
