"""QA data for training: read and validate the QA file, split by source chunk, tokenise.

Input format (written by ``coalqa generate``): a JSON list of objects ``{"input": question,
"output": answer, "chunk_id"?, "source"?, "locator"?}``, or the same objects one per line (JSON lines).
Each pair is tokenised by :func:`coalqa.template.encode_example`, the single definition of the prompt
format shared with inference, into ``input_ids`` + ``completion_mask`` (1 on answer tokens and the final
EOS): the columns TRL's ``SFTTrainer`` turns into labels (-100 on prompt tokens).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import read_rows
from coalqa.template import ExampleTooLong, PromptFormat, encode_example

log = logging.getLogger(__name__)


def read_qa_file(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a QA file (JSON list or JSON lines).

    Returns:
        the rows as dicts, in file order; ``input``/``output`` are non-empty strings.

    Raises:
        CoalqaError: missing file, invalid JSON, a row that is not an object, or a row whose ``input`` or
            ``output`` is missing, not a string, or blank (the message names the file and the row, 1-based).
    """
    rows = read_rows(path, "QA data")
    out = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise CoalqaError(f"{where}: expected an object with input and output, got {type(row).__name__}")
        for key in ("input", "output"):
            if key not in row:
                raise CoalqaError(f"{where}: missing {key!r} (expected keys input, output)")
            if not isinstance(row[key], str):
                raise CoalqaError(f"{where}: {key!r} must be a string, got {type(row[key]).__name__}")
            if not row[key].strip():
                raise CoalqaError(f"{where}: {key!r} is empty")
        out.append(row)
    if not out:
        raise CoalqaError(f"{path}: no QA pairs in the file")
    return out


def group_key(row: dict[str, Any], index: int) -> str:
    """The unit the validation split keeps together: ``chunk_id``, else ``source``+``locator``, else the row."""
    if row.get("chunk_id") not in (None, ""):
        return f"chunk:{row['chunk_id']}"
    if row.get("source") not in (None, "") or row.get("locator") not in (None, ""):
        return f"loc:{row.get('source', '')}#{row.get('locator', '')}"
    return f"row:{index}"


def split_by_group(rows: list[dict[str, Any]], val_ratio: float, seed: int) -> tuple[list[int], list[int], str]:
    """Split row indices into (train, eval) so that no source chunk is in both.

    ``round(val_ratio × groups)`` groups (at least one when there are ≥ 2 groups and ``val_ratio`` > 0)
    are drawn with ``random.Random(seed)``; with fewer than 2 groups there is no eval split.

    Returns:
        ``(train_indices, eval_indices, note)``; ``note`` explains the split in one line for the log.
    """
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(group_key(row, i), []).append(i)
    names = sorted(groups)
    if val_ratio <= 0:
        return list(range(len(rows))), [], "no eval split (val_ratio 0)"
    if len(names) < 2:
        return list(range(len(rows))), [], f"no eval split: only {len(names)} source group(s)"
    n_eval = min(len(names) - 1, max(1, round(val_ratio * len(names))))
    eval_groups = set(random.Random(seed).sample(names, n_eval))
    eval_idx = sorted(i for g in eval_groups for i in groups[g])
    train_idx = sorted(i for g in names if g not in eval_groups for i in groups[g])
    return train_idx, eval_idx, f"eval split: {n_eval} of {len(names)} source groups ({len(eval_idx)} pairs)"


@dataclass
class TokenisedData:
    """Tokenised train/eval examples and the counts the run card reports."""

    train: list[dict[str, list[int]]]
    eval: list[dict[str, list[int]]]
    rows: int
    truncated: int = 0
    skipped_too_long: int = 0
    split_note: str = ""
    notes: list[str] = field(default_factory=list)


def tokenise(rows: list[dict[str, Any]], tokenizer, fmt: PromptFormat, max_length: int, val_ratio: float,
             seed: int) -> TokenisedData:
    """Split ``rows`` by source group and encode each pair with :func:`encode_example`.

    Answers longer than the room left by the prompt are cut (EOS re-appended and labelled); pairs whose
    prompt alone reaches ``max_length`` are skipped and counted.

    Raises:
        CoalqaError: no training example is left.
    """
    train_idx, eval_idx, note = split_by_group(rows, val_ratio, seed)
    out = TokenisedData(train=[], eval=[], rows=len(rows), split_note=note)
    for indices, target in ((train_idx, out.train), (eval_idx, out.eval)):
        for i in indices:
            ex = encode_example(tokenizer, rows[i]["input"], rows[i]["output"], fmt)
            if len(ex["input_ids"]) > max_length:
                try:
                    ex = encode_example(tokenizer, rows[i]["input"], rows[i]["output"], fmt, max_length)
                except ExampleTooLong:
                    out.skipped_too_long += 1
                    continue
                out.truncated += 1
            target.append(ex)
    if out.skipped_too_long:
        out.notes.append(f"{out.skipped_too_long} pair(s) skipped: the prompt alone fills max_length {max_length}")
    if out.truncated:
        out.notes.append(f"{out.truncated} answer(s) cut to fit max_length {max_length} (EOS kept)")
    if not out.train:
        raise CoalqaError(f"no training examples left out of {len(rows)} QA pairs (see: {'; '.join(out.notes) or note})")
    return out
