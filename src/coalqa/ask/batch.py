"""Batch mode of ``coalqa ask``: read a questions file, answer what is not answered yet, save as it goes.

Questions file (format by extension ``.json``/``.jsonl``/``.ndjson``/``.txt``/``.csv``/``.tsv``/``.xlsx``,
else sniffed from the content; text in any common encoding, see :mod:`coalqa.textio`; rows numbered from 1
in errors):

* a JSON list of strings, or of objects with ``input`` (QAdata_all.json) or ``question`` (eval set);
* JSON Lines of such objects (or strings);
* a table: CSV, TSV or an Excel ``.xlsx`` workbook (its first sheet, read with ``openpyxl``) whose header row
  names a ``question`` (or ``input``, ``问题``) column; an ``id`` column and any others are carried into the
  results, the header itself is not a question;
* plain text, one question per line (blank lines skipped).

Results file: a JSON list, one object per answered question, in questions-file order: the row's
other fields (e.g. ``id``, ``output``; a field named like a result key is kept as ``input_<key>``),
then ``question``, ``answer``, ``reasoning``, ``tokens``, ``seconds``, ``finished_reasoning``, ``cut`` (the
token limit ended the answer; see :func:`coalqa.ask.answer`). It is
rewritten atomically (temporary file + ``os.replace``) after every batch, so a killed run keeps what
it finished, and a rerun with the same output file answers only the rest (matched on ``id`` when rows
have one, else on the question text). Settings go to ``<output stem>.settings.json`` beside it.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import read_rows
from coalqa.textio import read_text_file

RESULT_KEYS = ("question", "answer", "reasoning", "tokens", "seconds", "finished_reasoning", "cut",
               "grounded", "abstained", "citations", "evidence", "unsupported_numbers")


def _row(where: str, value: Any) -> dict:
    """One questions-file row (``where``: "FILE: line N" / "FILE: row N") → ``{"question": ..., **other fields}``."""
    if isinstance(value, str):
        row = {"question": value}
    elif isinstance(value, dict):
        key = "input" if "input" in value else "question" if "question" in value else None
        if key is None:
            raise CoalqaError(f"{where}: object has no 'input' or 'question' field (fields: {', '.join(value)})")
        row = {k: v for k, v in value.items() if k != key}
        for k in RESULT_KEYS:
            if k in row:
                row[f"input_{k}"] = row.pop(k)
        row["question"] = value[key]
    else:
        raise CoalqaError(f"{where}: expected a question string or an object, got {type(value).__name__}")
    if not isinstance(row["question"], str):
        raise CoalqaError(f"{where}: question is {type(row['question']).__name__}, expected text")
    if not row["question"].strip():
        raise CoalqaError(f"{where}: empty question")
    row["question"] = row["question"].strip()
    return row


def read_questions(path: str | Path) -> list[dict]:
    """Read a questions file (see module doc) into rows ``{"question": str, **other fields}``.

    Raises:
        CoalqaError: file missing/unreadable/not text, invalid JSON (with line number), a row that is
            neither text nor an object with ``input``/``question``, a table without a question column, an
            empty question, or no questions (file and row named).
    """
    path = Path(path)
    kind = QUESTION_FORMATS.get(path.suffix.lower())
    if kind == "xls":
        raise CoalqaError(f"{path}: legacy Excel .xls is not supported; save it as .xlsx (or CSV) and retry")
    if kind is None and path.is_file():
        with path.open("rb") as f:
            if f.read(4) == b"PK\x03\x04":
                kind = "xlsx"  # a zip: an Excel workbook without its extension
    if kind == "xlsx":
        return _table_questions(path, _xlsx_rows(path))
    text = read_text_file(path, "questions")
    stripped = text.lstrip()
    if kind is None:  # unknown extension: sniff the content
        kind = "json" if stripped.startswith("[") else "jsonl" if stripped.startswith(("{", '"')) else "text"
    if kind in ("csv", "tsv"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="," if kind == "csv" else "\t")
        return _table_questions(path, ((f"{path}: line {reader.line_num}", row) for row in reader))
    if kind == "text":
        rows = [_row(f"{path}: line {n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        rows = [_row(where, value) for where, value in read_rows(path, "questions")]
    if not rows:
        raise CoalqaError(f"{path}: no questions found")
    return rows


QUESTION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text", ".csv": "csv",
                    ".tsv": "tsv", ".tab": "tsv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xls"}
QUESTION_COLUMNS = ("question", "input", "问题")


def _xlsx_rows(path: Path):
    """``(where, [cell values])`` for each row of the workbook's first sheet (values, not formulas)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises assorted errors (zipfile, KeyError, InvalidFileException) on bad files
        raise CoalqaError(f"cannot read questions workbook {path}: {type(e).__name__}: {e}") from e
    try:
        sheet = book.worksheets[0]
        for n, row in enumerate(sheet.iter_rows(values_only=True), 1):
            yield f"{path}: sheet {sheet.title!r} row {n}", ["" if v is None else v for v in row]
    finally:
        book.close()


def _table_questions(path: Path, rows) -> list[dict]:
    """Questions from table rows ``(where, cells)``: the first non-blank row is the header.

    Raises:
        CoalqaError: no header naming a question column, an empty question in a non-blank row, no questions.
    """
    header: list[str] | None = None
    out = []
    for where, cells in rows:
        cells = [c.strip() if isinstance(c, str) else c for c in cells]
        if all(c in ("", None) for c in cells):
            continue
        if header is None:
            header = ["id" if str(c).strip().casefold() == "id" else str(c).strip() for c in cells]
            names = [h.casefold() for h in header]
            column = next((names.index(q) for q in QUESTION_COLUMNS if q in names), None)
            if column is None:
                raise CoalqaError(
                    f"{where}: the header row ({', '.join(header)}) has no question column; name the column "
                    f"of questions {' or '.join(QUESTION_COLUMNS)} (an id column is optional)"
                )
            continue
        row = {name: cell if isinstance(cell, (str, int, float, bool)) else str(cell)
               for i, (name, cell) in enumerate(zip(header, cells)) if name and i != column}
        for k in RESULT_KEYS:
            if k in row:
                row[f"input_{k}"] = row.pop(k)
        question = cells[column] if column < len(cells) else ""
        question = question.strip() if isinstance(question, str) else str(question)
        if not question:
            raise CoalqaError(f"{where}: empty question (column {header[column]!r})")
        out.append(row | {"question": question})
    if not out:
        raise CoalqaError(f"{path}: no questions found (expected a header row and one question per row)")
    return out


def row_keys(rows: list[dict]) -> list[tuple]:
    """Resume keys: ``("id", id)`` when a row has an ``id``, else ``("q", question, occurrence)``."""
    seen: Counter = Counter()
    keys = []
    for r in rows:
        if "id" in r:
            keys.append(("id", json.dumps(r["id"], ensure_ascii=False)))
        else:
            seen[r.get("question")] += 1
            keys.append(("q", r.get("question"), seen[r.get("question")]))
    return keys


def load_results(path: str | Path) -> list[dict]:
    """Results already in ``path`` (``[]`` when it does not exist).

    Raises:
        CoalqaError: the file exists but is not a JSON list of result objects.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CoalqaError(f"output file {path} exists but is not readable JSON ({e}); move it away or pick another --output_file") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) and "question" in r and "answer" in r for r in data):
        raise CoalqaError(f"output file {path} exists but is not a results list from `coalqa ask`; move it away or pick another --output_file")
    return data


def settings_path(output_file: str | Path) -> Path:
    """``results.json`` → ``results.settings.json`` (generation settings and model, beside the results)."""
    output_file = Path(output_file)
    return output_file.with_name(output_file.stem + ".settings.json")


def settings_differences(old: dict, new: dict) -> list[str]:
    """Differences in ``model``, ``generation`` and ``grounding`` between two settings files (what changes answers)."""
    diffs = []
    for section in ("model", "generation", "grounding"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return diffs
