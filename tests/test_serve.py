"""``coalqa serve`` end to end: real server processes on loopback ports, the official ``openai`` client, a proxy in
front of a second real server, and the page in real headless Chromium.

Servers (tiny Qwen2 + the rebuilt R1-Distill tokenizer, float32):

* ``tuned`` — a real adapter from ``coalqa train`` that learnt to answer 专职爆破工，12h。 to every question; API key;
  small limits;
* ``grounded`` — the same adapter with ``--index`` (a bm25s/jieba index over a few real clauses) and numbers left
  free (``--no-numbers_from_clauses``); API key;
* ``base`` — a random base alone (``--no-adapter``) whose EOS logit is forced far below every other one
  (:func:`_eos_never_wins`), so every generation runs to its ``max_tokens`` (long generations for the disconnect and
  queue tests); ``max_queue`` 3;
* ``proxy`` — ``--backend_url`` to ``base``.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from conftest import train_adapter
from serve_process import ServeProcess

KEY = "test-key-7f3a9c"
QUESTION = "井下爆破工作必须由谁担任？"
TRAINED = "专职爆破工，12h"  # taught with a final 。, which 20 steps on the tiny model do not always reach
LAMP_Q = "灯房发给下井人员的矿灯，最少要保证能连续正常使用多长时间？"  # retrieves the 矿灯 clause (11h): 12h is unsupported
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # real server processes


@pytest.fixture(scope="module")
def answering_adapter(tmp_path_factory, tiny_qwen2_dir) -> Path:
    """A real ``coalqa train`` run that teaches the tiny model one answer (it then answers every question with it)."""
    return train_adapter(tmp_path_factory.mktemp("serve-train"), tiny_qwen2_dir, [{"input": QUESTION, "output": TRAINED + "。"}],
                         max_steps=20, per_device_train_batch_size=1, learning_rate=1e-2, max_length=64)


def _eos_never_wins(model_dir: Path, out_dir: Path) -> Path:
    """Save a copy of the tiny Qwen2 in ``model_dir`` whose EOS logit is about -10^4/rms(hidden) at every position.

    Residual dimension 0 is made a constant 1: nothing writes to it (embeddings, every o_proj and down_proj row 0 are
    zero) except layer 0's attention, whose value channel 0 is its bias alone (1), so the attention output there is
    exactly 1 whatever the weights (softmax weights sum to 1), copied into dimension 0 by o_proj. The final norm keeps
    it positive, and the EOS row of lm_head reads only that dimension, times -10^4; every other logit is bounded by
    ‖row‖·√hidden ≈ 2. Greedy or sampled, the model never ends an answer: generations run to max_tokens.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 0
        for n, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight[0, :] = 0
            layer.mlp.down_proj.weight[0, :] = 0
            if n == 0:
                layer.self_attn.v_proj.weight[0, :] = 0
                layer.self_attn.v_proj.bias[0] = 1.0
                layer.self_attn.o_proj.weight[0, 0] = 1.0
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight[eos, :] = 0
        model.lm_head.weight[eos, 0] = -1e4
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def endless_base(tmp_path_factory, tiny_qwen2_dir) -> Path:
    """The tiny random Qwen2 that never writes EOS (:func:`_eos_never_wins`)."""
    return _eos_never_wins(tiny_qwen2_dir, tmp_path_factory.mktemp("endless-base"))


def test_the_endless_base_never_writes_eos(endless_base) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(endless_base, dtype=torch.float32)
    eos = model.generation_config.eos_token_id
    ids = torch.randint(0, model.config.vocab_size, (4, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert (logits[..., eos] < -1000).all() and (logits.max(-1).values > -100).all()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, answering_adapter, endless_base, small_index):
    """Start the four servers together (they load in parallel), stop them by pid after the module."""
    logs = tmp_path_factory.mktemp("serve-logs")
    tuned = ServeProcess(["--peft_model", str(answering_adapter), "--max_tokens_limit", "512", "--max_new_tokens", "64",
                          "--max_messages", "6", "--max_message_chars", "500", "--max_body_bytes", "20000"],
                         logs / "tuned.log", env={"COALQA_API_KEY": KEY})
    base = ServeProcess(["--model_name_or_path", str(endless_base), "--no-adapter", "--max_queue", "3",
                         "--batch_size", "2", "--max_new_tokens", "64"], logs / "base.log")
    # numbers left free (the default holds them to the clauses, tests/test_constrain.py): the trained 12h comes out and
    # the number check and the page's marking of it are what is tested here
    grounded = ServeProcess(["--peft_model", str(answering_adapter), "--index", str(small_index), "--min_score", "1",
                             "--max_new_tokens", "64", "--no-numbers_from_clauses"], logs / "grounded.log",
                            env={"COALQA_API_KEY": KEY})
    started = [tuned, base, grounded]
    try:
        base.wait()
        proxy = ServeProcess(["--backend_url", base.url + "/v1", "--backend_model", "coalqa",
                              "--served_model_name", "coal-proxy"], logs / "proxy.log")
        gproxy = ServeProcess(["--backend_url", base.url + "/v1", "--backend_model", "coalqa", "--index", str(small_index),
                               "--min_score", "1"], logs / "gproxy.log")
        started += [proxy, gproxy]
        tuned.wait()
        proxy.wait()
        grounded.wait()
        gproxy.wait()
        yield {"tuned": tuned, "base": base, "proxy": proxy, "grounded": grounded, "gproxy": gproxy}
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="module")
def loaded(answering_adapter):
    """The same adapter loaded in the test process with coalqa.ask, to compare with what the server answers."""
    from coalqa.ask import load_model

    return load_model(answering_adapter)


def client(server: ServeProcess, key: str | None = KEY, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or "none", max_retries=0, timeout=120, **kw)


def ask(server: ServeProcess, question: str = QUESTION, model: str = "coalqa", key: str | None = KEY, **kw):
    return client(server, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], **kw)


# ------------------------------------------------------------------------------------------ tuned


def test_models_health_and_auth(servers) -> None:
    tuned = servers["tuned"]
    assert [m.id for m in client(tuned).models.list()] == ["coalqa"]
    health = tuned.health()  # no key needed
    assert health["status"] == "ok" and health["auth"] is True and health["mode"] == "local"
    for wrong in (None, "wrong-key"):
        with pytest.raises(openai.AuthenticationError) as e:
            client(tuned, key=wrong).models.list()
        assert e.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            ask(tuned, key=wrong, temperature=0)
    assert ask(tuned, temperature=0).choices[0].message.content.startswith(TRAINED)
    assert KEY not in tuned.log.read_text(errors="replace")


def test_non_streamed_answer_is_coalqa_asks_answer(servers, loaded) -> None:
    from coalqa.ask import AskConfig, answer
    from coalqa.template import encode_prompt

    questions = [QUESTION, "主要通风机多久检查一次？"]
    expected = answer(loaded, questions, AskConfig(temperature=0, max_new_tokens=64), progress=False)
    for q, want in zip(questions, expected):
        r = ask(servers["tuned"], q, temperature=0)
        choice = r.choices[0]
        assert choice.message.content == want["answer"] and want["answer"].startswith(TRAINED)
        assert choice.message.model_extra["reasoning_content"] == want["reasoning"]
        assert choice.finish_reason == "stop" and r.model == "coalqa" and r.object == "chat.completion"
        assert r.usage.prompt_tokens == len(encode_prompt(loaded.tokenizer, q, loaded.fmt))
        assert r.usage.completion_tokens == want["tokens"]
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_pieces_join_to_the_non_streamed_reply(servers) -> None:
    tuned = servers["tuned"]
    for extra in ({}, {"max_tokens": 4}):
        whole = ask(tuned, temperature=0, **extra)
        chunks = list(ask(tuned, temperature=0, stream=True, stream_options={"include_usage": True}, **extra))
        assert chunks[0].choices[0].delta.role == "assistant"
        body = [c for c in chunks if c.choices]
        content = "".join(c.choices[0].delta.content or "" for c in body)
        reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in body)
        assert content == whole.choices[0].message.content and "\ufffd" not in content
        assert reasoning == whole.choices[0].message.model_extra["reasoning_content"]
        assert [c.choices[0].finish_reason for c in body][-1] == whole.choices[0].finish_reason
        assert all(c.choices[0].finish_reason is None for c in body[:-1])
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 4
    without_usage = list(ask(tuned, temperature=0, stream=True))
    assert all(c.choices for c in without_usage) and all(c.usage is None for c in without_usage)


def test_stop_strings_history_and_system_prompt(servers, loaded) -> None:
    from coalqa.template import encode_prompt

    tuned = servers["tuned"]
    r = ask(tuned, temperature=0, stop=["爆破"])
    assert r.choices[0].message.content == "专职" and r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(tuned, temperature=0, stop="爆破", stream=True)
                       if c.choices)
    assert streamed == "专职"
    multi = client(tuned).chat.completions.create(model="coalqa", temperature=0, messages=[
        {"role": "system", "content": "你是煤矿安全员。"}, {"role": "user", "content": "矿灯？"},
        {"role": "assistant", "content": "11h。"}, {"role": "user", "content": QUESTION}])
    fmt = loaded.fmt.model_copy(update={"system_prompt": "你是煤矿安全员。"})
    assert multi.usage.prompt_tokens == len(encode_prompt(loaded.tokenizer, QUESTION, fmt, [("矿灯？", "11h。")]))


def test_bad_requests(servers) -> None:
    tuned = servers["tuned"]
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(tuned.url + "/v1/chat/completions", content=b'{"model": "coalqa", "messages": [', headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    big = {"model": "coalqa", "messages": [{"role": "user", "content": "长" * 7000}]}  # > 20000 bytes
    r = httpx.post(tuned.url + "/v1/chat/completions", json=big, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "request_too_large"
    with pytest.raises(openai.NotFoundError, match="gpt-4o"):
        ask(tuned, model="gpt-4o")
    with pytest.raises(openai.BadRequestError, match="limit of 512"):
        ask(tuned, max_tokens=513)
    with pytest.raises(openai.BadRequestError, match="at most 500"):
        ask(tuned, "长" * 501)
    with pytest.raises(openai.BadRequestError, match="at most 6"):
        client(tuned).chat.completions.create(model="coalqa", messages=[{"role": "user", "content": "问"}] * 7)
    assert tuned.health()["status"] == "ok"


def test_fifty_concurrent_requests_are_batched_and_all_answered(servers) -> None:
    tuned = servers["tuned"]
    before = tuned.health()
    questions = [f"{QUESTION}（第{i}问）" for i in range(50)]

    def one(q: str):
        return ask(tuned, q, temperature=0, max_tokens=16)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(one, questions))
    assert len(replies) == 50 and all(r.choices[0].message.content.startswith(TRAINED) for r in replies)
    after = tuned.health()
    assert after["completed"] - before["completed"] == 50 and after["failed"] == before["failed"]
    assert after["largest_batch"] > 1  # answered in batches, not one after another
    assert after["batches"] - before["batches"] < 50
    assert after["waiting"] == 0 and after["running"] == 0
    assert ask(tuned, temperature=0).choices[0].message.content.startswith(TRAINED)  # still healthy


# ------------------------------------------------------------------------------------------ base: long generations


def _wait_idle(server: ServeProcess, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = server.health()
        if health["running"] == 0 and health["waiting"] == 0:
            return health
        time.sleep(0.1)
    raise AssertionError(f"server still busy after {timeout} s: {server.health()}")


def _disconnect_after_three_chunks(server: ServeProcess, model: str) -> None:
    stream = client(server, key=None).chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], stream=True, max_tokens=3000, temperature=0)
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()


def test_client_disconnect_mid_stream_stops_generation(servers) -> None:
    base = servers["base"]
    before = _wait_idle(base)
    t0 = time.monotonic()
    _disconnect_after_three_chunks(base, "coalqa")
    after = _wait_idle(base)
    tokens = after["tokens_generated"] - before["tokens_generated"]
    assert after["cancelled"] - before["cancelled"] == 1
    assert 3 <= tokens < 300, f"{tokens} tokens generated after the client left (3000 without the stop)"
    assert time.monotonic() - t0 < 20
    r = client(base, key=None).chat.completions.create(model="coalqa", messages=[{"role": "user", "content": "问"}],
                                                        max_tokens=5, temperature=0)
    assert r.usage.completion_tokens == 5  # the slot is free


def test_queue_limit_answers_503_with_retry_after(servers) -> None:
    base = servers["base"]
    _wait_idle(base)
    results: list = []

    def one(i: int) -> None:
        try:
            r = client(base, key=None).chat.completions.create(
                model="coalqa", messages=[{"role": "user", "content": f"问题{i}"}], max_tokens=200, temperature=0)
            results.append(r.usage.completion_tokens)
        except openai.APIStatusError as e:
            results.append((e.status_code, e.response.headers.get("retry-after"), e.body["code"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rejected = [r for r in results if isinstance(r, tuple)]
    assert len(results) == 7 and len(rejected) >= 4 and results.count(200) >= 1
    assert all(status == 503 and retry.isdigit() and int(retry) >= 1 and code == "queue_full"
               for status, retry, code in rejected)
    assert _wait_idle(base)["status"] == "ok"


# ------------------------------------------------------------------------------------------ proxy


def test_proxy_relays_reasoning_answer_and_usage_from_a_real_backend(servers) -> None:
    base, proxy = servers["base"], servers["proxy"]
    direct = ask(base, key=None, temperature=0, max_tokens=12)
    via = ask(proxy, model="coal-proxy", key=None, temperature=0, max_tokens=12)
    assert via.model == "coal-proxy" and [m.id for m in client(proxy, key=None).models.list()] == ["coal-proxy"]
    assert via.choices[0].message.model_extra["reasoning_content"] == direct.choices[0].message.model_extra["reasoning_content"] != ""
    assert via.choices[0].message.content == direct.choices[0].message.content == ""  # the base never closes </think>
    assert via.choices[0].finish_reason == "length" and via.usage.model_dump() == direct.usage.model_dump()
    chunks = list(ask(proxy, model="coal-proxy", key=None, temperature=0, max_tokens=12, stream=True,
                      stream_options={"include_usage": True}))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert reasoning == direct.choices[0].message.model_extra["reasoning_content"]
    assert chunks[-1].usage.completion_tokens == 12
    with pytest.raises(openai.NotFoundError):
        ask(proxy, model="coalqa", key=None)  # the proxy's own name, not the backend's


def test_proxy_passes_disconnect_on_to_the_backend(servers) -> None:
    base, proxy = servers["base"], servers["proxy"]
    before = _wait_idle(base)
    _disconnect_after_three_chunks(proxy, "coal-proxy")
    after = _wait_idle(base)
    assert after["cancelled"] - before["cancelled"] == 1
    assert after["tokens_generated"] - before["tokens_generated"] < 300
    assert _wait_idle(proxy)["cancelled"] >= 1


# ------------------------------------------------------------------------------------------ page


def test_page_in_headless_chromium(servers, tmp_path) -> None:
    """Type a question, watch the answer stream in with its citation and the unsupported number marked, open the cited
    clause; a request over the limit shows a clear error. Saves a screenshot."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium and fonts-wqy-zenhei (`.ci/run` does this)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'")
    grounded = servers["grounded"]
    shot = Path(__file__).resolve().parents[1] / "runs" / "test-artifacts" / "serve_page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(grounded.url + "/")
            page.wait_for_selector("#key-bar", state="visible")  # 401 without a key: the page asks for one
            assert "401" in page.inner_text("#error")
            page.fill("#api-key", KEY)
            page.click("#save-key")
            # (no wait_for_function: it evaluates a string, which the page's Content-Security-Policy forbids)
            page.locator("#model", has_text="模型：coalqa").wait_for()
            assert page.is_hidden("#error")
            page.fill("#temperature", "0")  # greedy: the trained answer
            assert page.inner_text("#temperature-value") == "0"
            page.evaluate("""() => {  // record every state of the answer while it streams in
                window.seen = [];
                new MutationObserver(() => {
                    const a = document.querySelector('.msg.assistant .answer');
                    if (a && a.textContent && window.seen.at(-1) !== a.textContent) window.seen.push(a.textContent);
                }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
            }""")
            page.fill("#question", LAMP_Q)
            page.press("#question", "Enter")
            page.wait_for_selector(".msg.assistant .answer.done", state="attached", timeout=60_000)
            answer = page.inner_text(".msg.assistant .answer")
            assert answer.startswith(TRAINED)
            seen = page.evaluate("window.seen")
            assert len(seen) >= 2 and seen[-1] == answer and all(answer.startswith(s) for s in seen), seen
            assert page.inner_text(".msg.assistant mark.unsupported") == "12h"  # the clause says 11h
            assert "12h" in page.inner_text(".msg.assistant .warning")
            link = page.locator(".msg.assistant a.citation").first
            assert link.inner_text() == "[1] 《煤矿建设安全规程》第四百七十一条"
            assert "连续正常使用11h" in page.inner_text(".msg.assistant .evidence")
            assert "生成" in page.inner_text(".msg.assistant .usage")  # usage arrived with the stream
            page.screenshot(path=str(shot), full_page=True)
            link.click()
            page.wait_for_selector("#clause[open]")
            page.locator("#clause-text", has_text="矿灯应当集中统一管理").wait_for()
            assert page.inner_text("#clause-title") == "《煤矿建设安全规程》第四百七十一条"
            page.screenshot(path=str(shot.with_name("serve_page_clause.png")))
            page.click("#clause-close")
            page.fill("#question", "长" * 8001)  # over the server's message limit: a clear error, no answer
            page.click("#send")
            page.wait_for_selector("#error", state="visible")
            assert "请求有误（HTTP 400）" in page.inner_text("#error") and "at most 8000" in page.inner_text("#error")
            assert errors == []
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


# ------------------------------------------------------------------------------------------ grounded


def test_grounded_reply_is_answer_groundeds_record(servers, loaded, small_index) -> None:
    """The same function as `coalqa ask --index`: answer, citations, evidence and unsupported numbers all equal."""
    from coalqa.ask import AskConfig
    from coalqa.grounding import ABSTAIN_ANSWER, answer_grounded
    from coalqa.retrieval import load_index

    grounded = servers["grounded"]
    off_topic = "红烧肉怎么做才好吃？"
    want, abstained = answer_grounded(loaded, load_index(small_index), [LAMP_Q, off_topic],
                                      AskConfig(temperature=0, max_new_tokens=64, min_score=1.0, numbers_from_clauses=False),
                                      progress=False)
    r = ask(grounded, LAMP_Q, temperature=0)
    extra = r.model_extra
    assert r.choices[0].message.content == want["answer"] and want["answer"].startswith(TRAINED)
    for key in ("grounded", "abstained", "citations", "evidence", "unsupported_numbers"):
        assert extra[key] == want[key], key
    assert extra["unsupported_numbers"] == ["12h"] and extra["citations"][0]["chunk_id"] == "c-lamp"
    chunks = list(ask(grounded, LAMP_Q, temperature=0, stream=True))
    assert chunks[0].model_extra["citations"] == want["citations"]  # shown before the answer comes
    assert chunks[-1].model_extra["unsupported_numbers"] == ["12h"] and chunks[-1].choices[0].finish_reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want["answer"]
    no = ask(grounded, off_topic, temperature=0)
    assert no.choices[0].message.content == abstained["answer"] == ABSTAIN_ANSWER
    assert no.model_extra["abstained"] is True and no.usage.completion_tokens == 0
    auth = {"Authorization": f"Bearer {KEY}"}
    clause = httpx.get(grounded.url + "/v1/clauses/c-lamp", headers=auth).json()
    assert clause["title"] == "煤矿建设安全规程" and "11h" in clause["text"]
    assert httpx.get(grounded.url + "/v1/clauses/nope", headers=auth).status_code == 404
    assert httpx.get(grounded.url + "/v1/clauses/c-lamp").status_code == 401


def test_proxy_grounds_with_the_same_steps(servers, small_index, r1_tokenizer) -> None:
    """A proxy with --index puts the supporting clauses into the message it sends (the backend counts their tokens)."""
    from coalqa.ask import AskConfig
    from coalqa.grounding import retrieve_support
    from coalqa.retrieval import load_index
    from coalqa.template import encode_prompt, inference_format

    r = ask(servers["gproxy"], LAMP_Q, key=None, temperature=0, max_tokens=2)
    assert r.model_extra["grounded"] is True and r.model_extra["citations"][0]["chunk_id"] == "c-lamp"
    fmt = inference_format(None)  # a bare base behind the proxy: no system prompt
    grounding = retrieve_support(load_index(small_index), LAMP_Q, AskConfig(min_score=1.0), 3, fmt.clause_chars)
    assert r.usage.prompt_tokens == len(encode_prompt(r1_tokenizer, LAMP_Q, fmt, context=grounding.context))
    no = ask(servers["gproxy"], "红烧肉怎么做才好吃？", key=None)
    assert no.model_extra["abstained"] is True and no.usage.completion_tokens == 0
