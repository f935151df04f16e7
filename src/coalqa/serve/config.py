"""Settings of ``coalqa serve``, declared once with their help text.

Inherits the answering settings of :class:`coalqa.ask.AskConfig` (base model, 4-bit, dtype, and the default
temperature/top_p/max_new_tokens a request gets when it does not set its own). The API key is deliberately not a
setting: it comes from ``--api_key`` or the ``COALQA_API_KEY`` environment variable and is never written anywhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, field_validator, model_validator

from coalqa.ask.config import AskConfig


class ServeConfig(AskConfig):
    """Every knob of the serve stage; defaults < ``--config`` YAML < command-line flags."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on; 127.0.0.1 (default) answers this machine only, "
                      "0.0.0.0 every network interface (set --api_key then)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    served_model_name: str = Field("coalqa", min_length=1, description="the model id clients send and /v1/models lists")
    batch_size: int = Field(8, ge=1, le=256, description="most requests generated together in one batch")
    batch_window_ms: int = Field(30, ge=0, le=5000, description="how long the first waiting request waits for others "
                                 "to join its batch (milliseconds)")
    max_queue: int = Field(64, ge=1, description="requests waiting or running at once; more are answered 503 with Retry-After")
    max_tokens_limit: int = Field(4096, ge=1, description="largest max_tokens a request may ask for (400 above it)")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body in bytes (400 above it)")
    max_messages: int = Field(64, ge=1, description="most messages in one request (400 above it)")
    max_message_chars: int = Field(8000, ge=1, description="longest message in characters (400 above it)")
    cors_origins: list[str] = Field(
        default_factory=list, description="web origins allowed to call the API from a browser (CORS), e.g. "
        "https://chat.example.com; default: none (the page served at / needs none). '*' allows any site; "
        "credentials (cookies) are never allowed, the API key travels in the Authorization header",
    )
    backend_url: str | None = Field(None, description="proxy mode: an OpenAI-compatible API (e.g. vLLM) to answer "
                                    "instead of a local model, e.g. http://gpu-host:8000/v1; its key from COALQA_BACKEND_API_KEY")
    backend_model: str | None = Field(None, description="proxy mode: the model name the backend serves (vLLM: the "
                                      "--lora-modules name, e.g. coal)")
    backend_opens_think: bool = Field(False, description="proxy mode: the backend's content starts inside an open "
                                      "<think> block (vLLM serving R1-Distill without --reasoning-parser): the text "
                                      "before </think> is reasoning")
    backend_timeout_s: float = Field(600, gt=0, description="proxy mode: seconds to wait for the backend")
    feedback_dir: Path | None = Field(None, description="folder for answer feedback: the page offers correct / wrong "
                                      "and a corrected answer on each answer, stored append-only in DIR/feedback.jsonl "
                                      "(POST /v1/feedback, same API key as /v1); review it with `coalqa review --feedback DIR`")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must be '*' or start with http:// or https://")
        return [o.rstrip("/") for o in value]

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServeConfig:
        if self.max_new_tokens > self.max_tokens_limit:
            raise ValueError(f"max_new_tokens {self.max_new_tokens} (the default max_tokens of a request) is above "
                             f"max_tokens_limit {self.max_tokens_limit}")
        return self
