"""The LLM client: one home for every call to a chat-completions API (QA generation in :mod:`coalqa.generate`, the
judge in :mod:`coalqa.eval.judge`). Its failure contract is in :mod:`coalqa.llm.client`'s docstring.
"""

from coalqa.llm.client import (
    KEY_ENV,
    AdaptiveLimit,
    ChatFn,
    FatalLLMError,
    chat_client_for,
    make_chat_client,
    redact,
)

__all__ = ["KEY_ENV", "AdaptiveLimit", "ChatFn", "FatalLLMError", "chat_client_for", "make_chat_client", "redact"]
