"""``coalqa demo``: the whole pipeline on real regulations in one command (see :mod:`coalqa.demo.run`).

- :mod:`coalqa.demo.config`: :class:`DemoConfig` and the presets shipped in ``coalqa/demo/presets/``;
- :mod:`coalqa.demo.steps`: each step (chunk, generate, index, train, answer) with its cache key;
- :mod:`coalqa.demo.run`: :func:`run_demo`, which only calls the steps in order and reports;
- :mod:`coalqa.demo.command`: the ``coalqa demo`` command line.
"""

from coalqa.demo.command import demo
from coalqa.demo.config import (
    FAST_PRESET,
    REAL_MODEL,
    REAL_PRESET,
    STANDIN_PRESET,
    DemoConfig,
    split_config,
)
from coalqa.demo.run import run_demo
from coalqa.demo.steps import base_model, pick_documents, step_answer, step_corpus, step_generate, step_train

__all__ = [
    "FAST_PRESET", "REAL_MODEL", "REAL_PRESET", "STANDIN_PRESET", "DemoConfig", "base_model",
    "demo", "pick_documents", "run_demo", "split_config", "step_answer", "step_corpus", "step_generate", "step_train",
]
