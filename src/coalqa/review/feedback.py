"""Feedback on served answers: stored by ``coalqa serve --feedback_dir DIR``, reviewed by ``coalqa review --feedback``.

``DIR/feedback.jsonl``, append-only, one JSON object per item (each durable before the page is told "saved",
:func:`coalqa.jsonio.append_jsonl_durable`): ``id``, ``time`` (UTC ISO 8601), ``question``, ``answer`` (the model's),
``verdict`` (``correct``/``wrong``), ``correction`` (the user's corrected answer, or ``null``), ``citations``
(``[{chunk_id, title, locator, source}]`` the answer cited), ``model`` (served model name), ``adapter`` (adapter
folder, or ``null``) and ``adapter_fingerprint`` (SHA-256 of its weights, 16 hex), ``index`` and ``index_fingerprint`` (the retrieval index, or ``null``), ``client`` (``page``
or ``api``). No API key or other secret is ever stored.

In review each item is a pair (:func:`feedback_pairs`): the question with the corrected answer (the model's answer when
marked correct), shown beside its first cited clause that the chunks file holds; approving or editing it makes it a QA
pair of the training export and, with ``--as_eval``, an evaluation reference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import append_jsonl_durable
from coalqa.review.log import now_iso
from coalqa.review.pairs import Pair

FEEDBACK_FILE = "feedback.jsonl"
MAX_CHARS = 8000


def save_feedback(folder: Path, item: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Validate one feedback item from a client and append it durably to ``folder/feedback.jsonl``; returns it.

    ``item``: ``question``, ``answer`` (strings), ``verdict`` (``correct``/``wrong``), ``correction`` (string or
    null), ``citations`` (list of objects; only ``chunk_id``, ``title``, ``locator``, ``source`` are kept).
    ``context``: what the server knows (``model``, ``adapter``, ``index``, ``index_fingerprint``).

    Raises:
        CoalqaError: a missing or over-long field, an unknown verdict (nothing is written).
        OSError: the file cannot be written.
    """
    def text(key: str, required: bool = True) -> str | None:
        value = item.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise CoalqaError(f"feedback needs a non-empty string {key!r}")
        if len(value) > MAX_CHARS:
            raise CoalqaError(f"feedback {key!r} is {len(value)} characters, at most {MAX_CHARS}")
        return value.strip()

    verdict = item.get("verdict")
    if verdict not in ("correct", "wrong"):
        raise CoalqaError("feedback 'verdict' must be 'correct' or 'wrong'")
    citations = item.get("citations") or []
    if not isinstance(citations, list) or len(citations) > 20 or not all(isinstance(c, dict) for c in citations):
        raise CoalqaError("feedback 'citations' must be a list of at most 20 objects")
    record = {"time": now_iso(), "question": text("question"), "answer": text("answer", required=False) or "",
              "verdict": verdict, "correction": text("correction", required=False) or None,
              "citations": [{k: str(c.get(k) or "")[:300] for k in ("chunk_id", "title", "locator", "source")}
                            for c in citations],
              "client": "page" if item.get("client") == "page" else "api",
              **{k: (str(context[k]) if context.get(k) is not None else None)
                 for k in ("model", "adapter", "adapter_fingerprint", "index", "index_fingerprint")}}
    record = {"id": hashlib.sha256(json.dumps(record, ensure_ascii=False).encode()).hexdigest()[:16], **record}
    append_jsonl_durable(Path(folder) / FEEDBACK_FILE, [record])
    return record


def read_feedback(folder: Path) -> list[dict[str, Any]]:
    """The feedback items of ``folder/feedback.jsonl`` in order; an unfinished last line (crash) is skipped.

    Raises:
        CoalqaError: no such file, or another line that is not a JSON object (file and line named).
    """
    path = Path(folder) / FEEDBACK_FILE
    if not path.is_file():
        raise CoalqaError(f"no feedback in {folder}: {FEEDBACK_FILE} not found (start `coalqa serve --feedback_dir "
                          f"{folder}` and mark answers on its page)")
    lines = path.read_bytes().split(b"\n")
    out = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if n == len(lines) or (n == len(lines) - 1 and not lines[-1]) or raw.lstrip().startswith(b"{"):
                continue  # an unfinished line from a crash in mid-write: never acknowledged
            raise CoalqaError(f"{path}: line {n} is not a JSON object")
        out.append(row)
    return out


def feedback_pairs(folder: Path, chunks: dict[str, dict]) -> list[Pair]:
    """The feedback items of ``folder`` as review pairs (ids ``fb-<id>``), beside their first cited clause."""
    out = []
    for item in read_feedback(folder):
        cited = [c for c in item.get("citations") or [] if c.get("chunk_id")]
        chunk_id = next((c["chunk_id"] for c in cited if c["chunk_id"] in chunks), cited[0]["chunk_id"] if cited else "")
        chunk = chunks.get(chunk_id) or {}
        answer = item.get("correction") or item.get("answer") or ""
        out.append(Pair(f"fb-{item.get('id')}", 0, str(item.get("question") or ""), answer, chunk_id,
                        str(chunk.get("source") or (cited[0].get("source") if cited else "") or "（用户反馈）"),
                        str(chunk.get("locator") or (cited[0].get("locator") if cited else "") or ""),
                        origin="feedback",
                        extra={k: item.get(k) for k in ("verdict", "answer", "correction", "citations", "time", "model",
                                                        "adapter", "adapter_fingerprint", "index_fingerprint")}))
    return out
