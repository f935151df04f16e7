"""Questions asked of each chunk, for ``coalqa index --questions QA.json`` (doc2query: Nogueira et al. 2019,
"Document Expansion by Query Prediction").

The QA files (``coalqa generate`` output, any format :func:`coalqa.train.data.read_qa_file` reads) name each pair's
``chunk_id``; their questions become a third ranking of the index: one BM25 document per distinct question, a chunk
ranked by its best-matching question, fused with the chunk and window rankings by rank. The questions are never
added to a chunk's text, so nothing shown, cited or quoted changes. Off by default: the offline clause generator's
templated questions did not pay on dev/dev2 (README 2b); questions written by an LLM may.

Evaluation questions must never enter an index they are evaluated on: with ``--references EVAL.jsonl`` a QA file
holding an evaluation question (NFKC, casefolded, whitespace removed) is refused, naming both files and rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from coalqa.errors import CoalqaError
from coalqa.numbers import nfkc_casefold


def _key(question: str) -> str:
    return re.sub(r"\s+", "", nfkc_casefold(question))


def read_index_questions(qa_files: Sequence[str | Path], chunk_ids: Sequence[str],
                         references: Sequence[str | Path] = ()) -> tuple[list[list[str]], dict]:
    """The distinct questions of ``qa_files`` for each chunk of ``chunk_ids`` (in that order), and counts.

    Returns:
        ``(questions, stats)``: ``questions[i]`` the distinct questions (first wording kept) naming ``chunk_ids[i]``;
        ``stats`` ``{"pairs", "indexed", "duplicates", "other_chunks", "no_chunk_id"}`` (rows read; questions
        indexed; repeats of a question of the same chunk; rows naming a chunk the index lacks; rows without one).

    Raises:
        CoalqaError: a QA file is missing or malformed (file and row named); a row's question is an evaluation
            question of ``references`` (both files, the row and the reference id named); no row names an indexed
            chunk.
    """
    from coalqa.eval import load_references
    from coalqa.train.data import read_qa_file

    held_out: dict[str, tuple[Path, str]] = {}
    for ref_file in references:
        for ref in load_references(ref_file):
            held_out.setdefault(_key(ref["question"]), (Path(ref_file), str(ref.get("id"))))
    position = {cid: i for i, cid in enumerate(chunk_ids)}
    questions: list[list[str]] = [[] for _ in chunk_ids]
    seen: set[tuple[int, str]] = set()
    stats = {"pairs": 0, "indexed": 0, "duplicates": 0, "other_chunks": 0, "no_chunk_id": 0}
    for qa_file in qa_files:
        for row_number, row in enumerate(read_qa_file(qa_file), 1):
            stats["pairs"] += 1
            key = _key(row["input"])
            if key in held_out:
                ref_file, ref_id = held_out[key]
                raise CoalqaError(f"{qa_file}: row {row_number} asks evaluation question {ref_id} of {ref_file} "
                                  f"({row['input']!r}); an index must not hold the questions it is evaluated on: "
                                  f"remove the row, or leave the file out of --questions")
            cid = row.get("chunk_id")
            if cid in (None, ""):
                stats["no_chunk_id"] += 1
                continue
            if cid not in position:
                stats["other_chunks"] += 1
                continue
            if (position[cid], key) in seen:
                stats["duplicates"] += 1
                continue
            seen.add((position[cid], key))
            questions[position[cid]].append(row["input"])
            stats["indexed"] += 1
    if not stats["indexed"]:
        raise CoalqaError(f"--questions {' '.join(str(f) for f in qa_files)}: no QA pair names a chunk of this index "
                          f"by chunk_id ({stats['other_chunks']} name other chunks, {stats['no_chunk_id']} none); "
                          f"generate the questions from these chunks (coalqa generate CHUNKS.jsonl)")
    return questions, stats
