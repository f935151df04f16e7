"""Shared test fixtures: paths to the real corpus and eval set in ../shared (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The Hub is unreachable here: never wait for its retries in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every machine takes the same (float32) path in tests unless a test asks otherwise: users' CPUs often lack
# native bf16 (coalqa.hardware), and greedy answers compared token by token must not depend on the CI CPU.
os.environ.setdefault("COALQA_CPU_BF16", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS_DIR = SHARED / "corpus" / "coal-safety"
EVAL_FILE = SHARED / "eval" / "dev.jsonl"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real regulations folder (38 .txt + 2 .docx)."""
    if not CORPUS_DIR.is_dir():
        pytest.fail(f"real corpus not found at {CORPUS_DIR}: the tests expect ../shared beside the checkout")
    return CORPUS_DIR


@pytest.fixture(scope="session")
def eval_file() -> Path:
    """The public evaluation set (30 JSON lines)."""
    if not EVAL_FILE.is_file():
        pytest.fail(f"eval set not found at {EVAL_FILE}: the tests expect ../shared beside the checkout")
    return EVAL_FILE


@pytest.fixture(scope="session")
def r1_tokenizer():
    """The real DeepSeek-R1-Distill-Qwen tokenizer, rebuilt offline (cached after the first build)."""
    from coalqa.offline import build_r1_distill_tokenizer

    return build_r1_distill_tokenizer()


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, r1_tokenizer) -> Path:
    """A folder with a tiny random Qwen2ForCausalLM (9.8M params) + the R1-Distill tokenizer."""
    from coalqa.offline import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer=r1_tokenizer)
