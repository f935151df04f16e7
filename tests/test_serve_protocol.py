"""``coalqa serve`` without a model: streaming text pieces (real R1-Distill tokenizer), request checks, and the app's
auth, limits, CORS and page headers (in-process, in front of an unreachable backend)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from coalqa.ask import AskConfig
from coalqa.serve import ServeConfig
from coalqa.serve.app import create_app
from coalqa.serve.engine import TextDeltas
from coalqa.serve.protocol import ApiError, parse_request
from coalqa.serve.proxy import ProxyEngine
from coalqa.template import PromptFormat, split_reasoning, split_reasoning_so_far

OUTPUTS = [
    ("让我查一下规程。\n</think>\n\n工作水泵的能力应能在20h内排出矿井24h的正常涌水量。", True),  # R1: </think> without <think>
    ("<think>\n先想想\n</think>\n\n答案是3次。", False),
    ("  <think>只有推理，被截断", False),
    ("推理被长度上限截断，没有 </thi", True),
    ("直接回答：矿灯11h。  \n", False),
    ("plain 模板下 R1 的推理</think>答案", False),
    ("<", False),
    ("", True),
]


@pytest.mark.parametrize("text,opens", OUTPUTS)
@pytest.mark.parametrize("may_think", [False, True])
def test_parts_so_far_are_prefixes_of_the_final_parts(text: str, opens: bool, may_think: bool) -> None:
    final_reasoning, final_answer, _ = split_reasoning(text, opens)
    for end in range(len(text) + 1):
        reasoning, answer = split_reasoning_so_far(text[:end], opens, may_think)
        assert final_reasoning.startswith(reasoning), (text[:end], reasoning)
        if may_think or opens or text.lstrip().startswith("<think>") or "</think>" not in text:
            assert final_answer.startswith(answer), (text[:end], answer)


def test_r1_reasoning_is_held_back_until_think_closes_under_a_prompt_that_did_not_open_it() -> None:
    # template plain + R1: "…</think>answer" with no <think>; with may_think nothing is sent as answer early
    text = "plain 模板下 R1 的推理</think>答案"
    assert split_reasoning_so_far(text[:10], False, True) == ("", "")
    assert split_reasoning_so_far(text, False, True) == ("plain 模板下 R1 的推理", "答案")
    assert split_reasoning_so_far(text[:10], False, False) == ("", text[:10].rstrip())


def _stream(deltas: TextDeltas, ids: list[int]) -> tuple[list[tuple[str, str]], tuple]:
    sent = []
    for k in range(1, len(ids) + 1):
        reasoning, answer, _, hit = deltas.parts(ids[:k], final=False)
        sent.append(deltas.pieces(reasoning, answer))
        if hit:
            ids = ids[:k]
            break
    final = deltas.parts(ids, final=True)
    sent.append(deltas.pieces(final[0], final[1]))
    return sent, final


def test_streamed_pieces_keep_split_cjk_characters_whole_and_join_to_the_reply(r1_tokenizer) -> None:
    """瓩 and 𠀀 are two and three byte-level BPE tokens: decoding a token alone gives U+FFFD."""
    text = "额定功率15瓩吗？𠀀\n</think>\n\n答：电动机额定功率不超过15瓩，每班检查3次。"
    ids = r1_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in r1_tokenizer.decode(ids[:k]) for k in range(1, len(ids))), "no token splits a character"
    assert any("\ufffd" in r1_tokenizer.decode([t]) for t in ids)
    sent, final = _stream(TextDeltas(r1_tokenizer, opens_think=True, may_think=False), ids)
    assert all("\ufffd" not in r + a for r, a in sent)
    assert "".join(r for r, _ in sent) == final[0] == "额定功率15瓩吗？𠀀"
    assert "".join(a for _, a in sent) == final[1] == "答：电动机额定功率不超过15瓩，每班检查3次。"
    assert sum(bool(a) for _, a in sent) > 5  # really streamed, not sent at the end


def test_stop_string_cuts_the_answer_and_is_never_sent(r1_tokenizer) -> None:
    text = "\n</think>\n\n答：不超过15瓩。\n\n第二段不该出现"
    ids = r1_tokenizer(text, add_special_tokens=False)["input_ids"]
    sent, final = _stream(TextDeltas(r1_tokenizer, True, False, stop=["\n\n第二"]), ids)
    assert final[3] is True and final[1] == "答：不超过15瓩。"
    assert "".join(a for _, a in sent) == final[1]
    assert "第二" not in "".join(a for _, a in sent)


# ------------------------------------------------------------------------------------------ requests

LIMITS = {"served_model": "coalqa", "defaults": AskConfig(max_new_tokens=64), "max_messages": 4, "max_message_chars": 50, "max_tokens_limit": 100}


def _parse(body) -> object:
    return parse_request(json.dumps(body, ensure_ascii=False).encode() if not isinstance(body, bytes) else body, **LIMITS)


def test_request_becomes_a_turn_with_history_system_and_defaults() -> None:
    turn = _parse({"model": "coalqa", "messages": [
        {"role": "system", "content": "你是安全员。"},
        {"role": "user", "content": [{"type": "text", "text": "矿灯"}, {"type": "text", "text": "多久？"}]},
        {"role": "assistant", "content": "11h。"},
        {"role": "user", "content": "氧气呢？"}], "stop": "。", "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True}, "max_completion_tokens": 20})
    assert turn.question == "氧气呢？" and turn.history == [("矿灯多久？", "11h。")] and turn.system == "你是安全员。"
    assert turn.stop == ["。"] and turn.temperature == 0 and turn.max_tokens == 20 and turn.include_usage
    default = _parse({"model": "coalqa", "messages": [{"role": "user", "content": "问"}]})
    assert (default.temperature, default.top_p, default.max_tokens, default.system) == (0.6, 0.95, 64, None)
    assert not default.stream and not default.include_usage and default.history == []


@pytest.mark.parametrize("body,status,needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"messages": [{"role": "user", "content": "问"}]}, 400, "model"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "问"}]}, 404, "gpt-4o"),
    ({"model": "coalqa", "messages": []}, 400, "at least one"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}] * 5}, 400, "at most 4"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "长" * 51}]}, 400, "at most 50"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}], "max_tokens": 101}, 400, "limit of 100"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}], "temperature": 3}, 400, "temperature"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}], "n": 2}, 400, "n=1"),
    ({"model": "coalqa", "messages": [{"role": "assistant", "content": "答"}]}, 400, "expected a user"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}, {"role": "system", "content": "s"}]}, 400, "before"),
    ({"model": "coalqa", "messages": [{"role": "tool", "content": "x"}]}, 400, "unsupported role"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400, "image_url"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
    ({"model": "coalqa", "messages": [{"role": "user", "content": "问"}], "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
])
def test_bad_requests_get_openai_errors(body, status: int, needle: str) -> None:
    with pytest.raises(ApiError) as e:
        _parse(body)
    assert e.value.status == status and needle in e.value.message
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


# ------------------------------------------------------------------------------------------ app


def _client(api_key: str | None = "s3cret-key", **settings) -> TestClient:
    cfg = ServeConfig(backend_url="http://127.0.0.1:9/v1", backend_model="m", max_body_bytes=2048, **settings)
    return TestClient(create_app(ProxyEngine(cfg, PromptFormat()), cfg, api_key=api_key))


def test_api_key_is_required_on_v1_but_not_on_health_or_the_page() -> None:
    with _client() as client:
        assert client.get("/health").json()["auth"] is True
        assert client.get("/").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"},
                        {"Authorization": "Basic s3cret-key"}):
            r = client.get("/v1/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer" and "s3cret" not in r.text
        r = client.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"})
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "coalqa"


def test_body_size_is_capped_with_and_without_content_length() -> None:
    big = json.dumps({"model": "coalqa", "messages": [{"role": "user", "content": "长" * 3000}]}).encode()
    with _client(api_key=None) as client:
        r = client.post("/v1/chat/completions", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "request_too_large"
        r = client.post("/v1/chat/completions", content=iter([big[:1500], big[1500:]]))  # chunked: no length
        assert r.status_code == 400 and r.json()["error"]["code"] == "request_too_large"


def test_unreachable_backend_is_a_502_error_object() -> None:
    with _client(api_key=None) as client:
        r = client.post("/v1/chat/completions", json={"model": "coalqa", "messages": [{"role": "user", "content": "问"}]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "backend_unreachable"


def test_cors_is_off_by_default_and_never_allows_credentials() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with _client() as client:
        r = client.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    with _client(cors_origins=["https://chat.example.com"]) as client:
        ok = client.options("/v1/chat/completions", headers={**preflight, "Origin": "https://chat.example.com"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://chat.example.com"
        assert "access-control-allow-credentials" not in ok.headers
        bad = client.options("/v1/chat/completions", headers=preflight)
        assert bad.headers.get("access-control-allow-origin") != "https://evil.example"
    with _client(cors_origins=["*"]) as client:
        r = client.get("/health", headers={"Origin": "https://evil.example"})
        assert r.headers["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in r.headers
    with pytest.raises(ValueError, match="must be"):
        ServeConfig(cors_origins=["chat.example.com"])


def test_page_and_its_files_are_served_with_a_strict_content_security_policy() -> None:
    with _client() as client:
        page = client.get("/")
        assert "煤矿安全规程问答" in page.text and "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script src=\"/static/chat.js\">" in page.text
        js = client.get("/static/chat.js")
        assert js.status_code == 200 and "innerHTML" not in js.text  # model text only ever as textContent
        assert client.get("/static/chat.css").status_code == 200
