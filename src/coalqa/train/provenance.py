"""Where an adapter's training data came from, and whether those regulations have changed since.

``coalqa train`` writes ``provenance.json`` into the run folder (and the same hashes into ``run_card.md``)::

    {"data": {"path", "sha256"},                 the QA file, absolute path and SHA-256
     "chunks_file": {"path", "sha256"} | null,   the chunks.jsonl the QA file was generated from (read from the
                                                  QA file's ``*.summary.json``, written by ``coalqa generate``)
     "chunks": [{"sha", "source", "locator"}],   every chunk the training pairs were made from (``chunk_sha``)
     "review": {...} | null}                      reviewed pairs, reviewers and review log hashes of a file written by
                                                  ``coalqa review export`` (:func:`coalqa.review.export.review_provenance`)

``coalqa ask`` calls :func:`stale_chunks` to warn when the chunks file has since been rebuilt with some of
those chunks changed or removed (a regulation update the adapter has not learnt).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256

PROVENANCE = "provenance.json"


def data_provenance(data_path: str | Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The provenance record of a training run on ``rows`` read from ``data_path`` (format in the module docstring)."""
    from coalqa.review.export import review_provenance

    data_path = Path(data_path)
    stem = data_path.with_suffix("") if data_path.suffix == ".json" else data_path
    summary_path = Path(f"{stem}.summary.json")
    chunks_file = None
    if summary_path.is_file():
        try:
            chunks_file = json.loads(summary_path.read_text(encoding="utf-8")).get("chunks_file")
        except (OSError, ValueError, AttributeError):
            chunks_file = None  # not a generate summary: no chunks file to record
    chunks: dict[str, dict[str, str]] = {}
    for row in rows:
        sha = row.get("chunk_sha")
        if sha and sha not in chunks:
            chunks[str(sha)] = {"source": str(row.get("source") or ""), "locator": str(row.get("locator") or "")}
    return {
        "data": {"path": str(data_path.resolve()), "sha256": file_sha256(data_path)},
        "chunks_file": chunks_file,
        "chunks": [{"sha": sha, **where} for sha, where in chunks.items()],
        "review": review_provenance(rows),
    }


def stale_chunks(adapter_dir: str | Path) -> str | None:
    """A warning when chunks the adapter was trained on have changed or gone from its chunks file; else ``None``.

    ``None`` also when nothing can be checked: no ``provenance.json`` (an adapter made elsewhere or before
    this existed), no chunks file recorded, or the file no longer there.
    """
    from coalqa.corpus import read_chunks

    path = Path(adapter_dir) / PROVENANCE
    if not path.is_file():
        return None
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{path} is not readable ({e}); cannot check whether its regulations changed"
    record = prov.get("chunks_file") or {}
    chunks_path = Path(record.get("path") or "")
    if not record.get("path") or not chunks_path.is_file() or file_sha256(chunks_path) == record.get("sha256"):
        return None
    try:
        current = {c.sha for c in read_chunks(chunks_path)}
    except CoalqaError as e:
        return f"the chunks file this adapter was trained from changed and cannot be read: {e}"
    trained = prov.get("chunks") or []
    gone = [c for c in trained if c.get("sha") not in current]
    if not gone:
        return None
    examples = ", ".join(f"{c['source']} {c['locator']}" for c in gone[:3]) + (" …" if len(gone) > 3 else "")
    return (
        f"this adapter was trained on {len(gone)} of {len(trained)} chunk(s) that have since changed or been removed "
        f"in {chunks_path} ({examples}): its answers there may follow the old text. Regenerate the QA pairs "
        "(`coalqa generate` reuses those of unchanged chunks) and retrain."
    )
