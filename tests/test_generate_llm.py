"""The provider layer against a local chat-completions server: both real SDKs, faults, retries, secrets."""

from __future__ import annotations

import logging
import time

import pytest
from llm_server import LLMServer

from coalqa.errors import CoalqaError
from coalqa.llm import FatalLLMError, make_chat_client

KEYS = {"openai": "sk-test-OPENAI-SECRET-0001", "zhipuai": "a1b2c3d4e5.ZHIPU-SECRET-0002"}  # Zhipu keys are id.secret
ENV = {"openai": "OPENAI_API_KEY", "zhipuai": "ZHIPUAI_API_KEY"}
MSG = [{"role": "user", "content": "######\n第一条 为加强煤矿防治水工作，制定本规定。\n######"}]


@pytest.fixture
def server():
    with LLMServer() as srv:
        yield srv


@pytest.fixture(params=["openai", "zhipuai"])
def provider(request, monkeypatch) -> str:
    monkeypatch.setenv(ENV[request.param], KEYS[request.param])
    return request.param


def client(provider: str, srv: LLMServer, **kw):
    opts = {"timeout": 0.5, "max_retries": 2, "retry_wait": 0.01} | kw
    return make_chat_client(provider, "glm-4", srv.url, opts.pop("timeout"), opts.pop("max_retries"), **opts)


def test_reply_usage_and_request(provider: str, server: LLMServer) -> None:
    text, usage = client(provider, server, temperature=0.9, top_p=0.7, max_tokens=None)(MSG)
    assert "第一条" in text and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    req = server.requests[-1]
    assert req["path"].endswith("/chat/completions")
    assert b'"temperature": 0.9' in req["body"].replace(b'":0.9', b'": 0.9') and b"max_tokens" not in req["body"]


@pytest.mark.parametrize("fault", [
    {"status": 500}, {"status": 503}, {"status": 502}, {"hang": 1.5}, {"drop": True},
    {"body": b"{not json"}, {"body": b'{"unexpected": true}'}, {"body": b""},
], ids=["500", "503", "502", "timeout", "dropped", "bad_json", "no_choices", "empty_body"])
def test_transient_faults_are_retried(provider: str, server: LLMServer, fault: dict) -> None:
    server.faults.extend([fault, fault])
    text, _ = client(provider, server)(MSG)
    assert "第一条" in text and len(server.requests) == 3


def test_429_honours_retry_after(provider: str, server: LLMServer) -> None:
    server.faults.append({"status": 429, "headers": {"Retry-After": "1"}})
    t0 = time.monotonic()
    client(provider, server)(MSG)
    assert time.monotonic() - t0 >= 0.95 and len(server.requests) == 2


def test_gives_up_after_max_retries(provider: str, server: LLMServer) -> None:
    server.faults.extend([{"status": 500}] * 3)
    with pytest.raises(Exception, match="500"):
        client(provider, server, max_retries=2)(MSG)
    assert len(server.requests) == 3


def test_auth_errors_are_fatal_and_4xx_not_retried(provider: str, server: LLMServer) -> None:
    server.faults.append({"status": 401, "echo_auth": True})
    with pytest.raises(FatalLLMError, match="401") as info:
        client(provider, server)(MSG)
    assert KEYS[provider] not in str(info.value)  # the echoed key is redacted
    server.faults.append({"status": 400})
    with pytest.raises(Exception, match="400"):
        client(provider, server)(MSG)
    assert len(server.requests) == 2


def test_key_only_from_environment(monkeypatch, server: LLMServer) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(CoalqaError, match="OPENAI_API_KEY is not set"):
        make_chat_client("openai", "m", server.url)
    with pytest.raises(CoalqaError, match="unknown LLM provider"):
        make_chat_client("clause", "m")


def test_retry_log_never_shows_key(provider: str, server: LLMServer, caplog) -> None:
    server.faults.append({"status": 500, "echo_auth": True})
    with caplog.at_level(logging.DEBUG):
        client(provider, server)(MSG)
    assert "retry 1" in caplog.text and KEYS[provider] not in caplog.text


ARREARS = {"status": 429, "code": "1113", "message": "您的账户已欠费，请充值后重试。"}


@pytest.mark.parametrize("fault", [
    ARREARS,
    {"status": 429, "code": "insufficient_quota", "message": "You exceeded your current quota"},
    {"status": 402, "message": "Insufficient Balance"},
    {"status": 400, "code": "E42", "message": "账户余额不足"},  # an unknown code, but the message says it
    {"status": 404, "code": "1211", "message": "模型不存在，请检查模型代码。"},
], ids=["zhipu-1113", "openai-quota", "402", "message", "404-model"])
def test_permanent_errors_stop_at_once_and_stop_the_client(provider: str, server: LLMServer, fault: dict) -> None:
    server.error = fault  # every request gets it
    chat = client(provider, server, max_retries=6)
    with pytest.raises(FatalLLMError, match=r"Retrying cannot fix this") as info:
        chat(MSG)
    assert str(fault["status"]) in str(info.value) and fault.get("code", "") in str(info.value)
    assert len(server.requests) == 1  # not retried
    with pytest.raises(FatalLLMError):
        chat(MSG)  # a later call of the same client sends nothing
    assert len(server.requests) == 1


def test_rate_limit_codes_are_transient(provider: str, server: LLMServer) -> None:
    server.faults.extend([{"status": 429, "code": "1302", "message": "您当前使用该API的并发数过高"},
                          {"status": 429, "code": "rate_limit_exceeded"}])
    chat = client(provider, server)
    text, _ = chat(MSG)
    assert "第一条" in text and len(server.requests) == 3
    assert chat.limit.cuts >= 1 and chat.limit.limit < chat.limit.maximum  # the 429s lowered the limit


def test_adaptive_limit_is_aimd() -> None:
    from coalqa.llm import AdaptiveLimit

    limit = AdaptiveLimit(8)
    rounds = [limit.acquire() for _ in range(8)]
    limit.release(rounds[0], "rate_limited")
    assert limit.limit == 4 and limit.cuts == 1
    limit.release(rounds[1], "rate_limited")  # sent before the cut: no second cut for the same round
    assert limit.limit == 4
    for r in rounds[2:]:
        limit.release(r, "ok")  # +1/limit each: about one more per round
    assert 5 < limit.limit < 6
    limit.stop(FatalLLMError("balance used up"))
    with pytest.raises(FatalLLMError, match="balance used up"):
        limit.acquire()
