"""Stage 6: serve the model (``coalqa serve``): an OpenAI-compatible API and a chat page with citations.

``create_app(engine, ServeConfig(...))`` → a FastAPI app; engines: :class:`coalqa.serve.engine.LocalEngine` (one
model, batched generation through :mod:`coalqa.ask`) or :class:`coalqa.serve.proxy.ProxyEngine` (any
OpenAI-compatible backend, e.g. vLLM). See :mod:`coalqa.serve.app` for the routes.
"""

from coalqa.serve.config import ServeConfig

__all__ = ["ServeConfig"]
