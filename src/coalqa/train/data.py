"""QA data for training: read and validate the QA file, split by source chunk, tokenise.

Input: a JSON list or JSON Lines file (any common encoding, e.g. GBK: :mod:`coalqa.textio`) whose rows are,
each detected by its content (formats may be mixed):

* coalqa (written by ``coalqa generate``): ``{"input": question, "output": answer, "chunk_id"?, "source"?, "locator"?}``;
* alpaca: ``{"instruction": question, "input"?: context, "output": answer}`` (the context is appended to
  the question on a new line, as alpaca's own prompt does);
* sharegpt: ``{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}``;
* OpenAI chat: ``{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}``.

Conversations must hold one question and its answer (an optional leading system message is not trained on:
the prompt format's ``system_prompt`` is used for every pair, and rows with their own are counted in a warning).
Each pair is tokenised by :func:`coalqa.template.encode_example`, the single definition of the prompt
format shared with inference, into ``input_ids`` + ``completion_mask`` (1 on answer tokens and the final
EOS): the columns TRL's ``SFTTrainer`` turns into labels (-100 on prompt tokens).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import read_rows
from coalqa.template import ExampleTooLong, PromptFormat, encode_example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from coalqa.retrieval.index import Index

log = logging.getLogger(__name__)


FORMATS = ("coalqa {input, output}; alpaca {instruction, input?, output}; "
           "sharegpt {conversations: [{from, value}]}; OpenAI {messages: [{role, content}]}")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
          "model": "assistant", "chatgpt": "assistant", "system": "system"}


def _turns(where: str, turns: Any, role_key: str, text_key: str) -> tuple[str, str, bool]:
    """``(question, answer, had_system)`` of a one-question conversation (sharegpt or OpenAI messages)."""
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise CoalqaError(f"{where}: expected a list of {{{role_key}, {text_key}}} objects")
    roles = []
    for i, turn in enumerate(turns, 1):
        role = _ROLES.get(str(turn.get(role_key, "")).strip().lower())
        if role is None:
            raise CoalqaError(f"{where}: turn {i} has {role_key} {turn.get(role_key)!r}; expected "
                              f"{', '.join(sorted(_ROLES))}")
        roles.append(role)
    had_system = bool(roles) and roles[0] == "system"
    body = turns[1:] if had_system else turns
    if [_ROLES[str(t[role_key]).strip().lower()] for t in body] != ["user", "assistant"]:
        raise CoalqaError(
            f"{where}: expected one question and its answer (roles: system?, user, assistant), got "
            f"{', '.join(roles) or 'no turns'}; coalqa trains single-turn QA pairs: give each question its own row"
        )
    return body[0].get(text_key), body[1].get(text_key), had_system


def qa_pair(where: str, row: Any) -> tuple[dict[str, Any], bool]:
    """One row of a QA file, in any supported format (module docstring), as ``{"input", "output", ...}``.

    Returns ``(pair, had_system)``: ``pair`` keeps the row's other fields (``chunk_id``, ``source``…);
    ``had_system`` is True when a conversation carried its own system message.

    Raises:
        CoalqaError: the row fits no format, or its question/answer is not a non-empty string (``where`` named).
    """
    if not isinstance(row, dict):
        raise CoalqaError(f"{where}: expected an object ({FORMATS}), got {type(row).__name__}")
    had_system = False
    rest = {k: v for k, v in row.items() if k not in ("instruction", "input", "output", "conversations", "messages")}
    names = ("'input'", "'output'")
    if "conversations" in row:  # sharegpt
        question, answer, had_system = _turns(f"{where}: conversations", row["conversations"], "from", "value")
        names = ("the human turn's value", "the gpt turn's value")
    elif "messages" in row:  # OpenAI chat
        question, answer, had_system = _turns(f"{where}: messages", row["messages"], "role", "content")
        names = ("the user message's content", "the assistant message's content")
    elif "instruction" in row or "input" in row or "output" in row:  # alpaca, coalqa
        alpaca = "instruction" in row
        for key in ("instruction" if alpaca else "input", "output"):
            if key not in row:
                raise CoalqaError(f"{where}: missing {key!r} (expected {FORMATS})")
        question, answer = row["instruction" if alpaca else "input"], row["output"]
        if alpaca:
            names = ("'instruction'", "'output'")
            context = row.get("input")
            if isinstance(question, str) and isinstance(context, str) and context.strip():
                question = f"{question.rstrip()}\n{context.strip()}"
    else:
        raise CoalqaError(f"{where}: fits no QA format (keys: {', '.join(map(str, row)) or 'none'}); expected {FORMATS}")
    for name, value in zip(names, (question, answer)):
        if not isinstance(value, str):
            raise CoalqaError(f"{where}: {name} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise CoalqaError(f"{where}: {name} is empty")
    return rest | {"input": question, "output": answer}, had_system


def read_qa_file(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a QA file (JSON list or JSON lines, in any format of the module docstring).

    Returns:
        the rows as dicts ``{"input": question, "output": answer, ...other fields}``, in file order;
        ``input``/``output`` are non-empty strings.

    Raises:
        CoalqaError: missing file, invalid JSON, or a row that fits no format or has a missing, non-string or
            blank question/answer (the message names the file and the row, 1-based).
    """
    out, with_system = [], 0
    for where, row in read_rows(path, "QA data"):
        pair, had_system = qa_pair(where, row)
        with_system += had_system
        out.append(pair)
    if not out:
        raise CoalqaError(f"{path}: no QA pairs in the file")
    if with_system:
        log.warning("%s: %d conversation(s) carry their own system message; it is not trained on: every pair "
                    "uses the prompt format's system_prompt", path, with_system)
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


def raft_contexts(rows: list[dict[str, Any]], index: Index, k: int, oracle_probability: float, seed: int,
                  where: str = "QA data", clause_chars: int = 0) -> tuple[list[list[dict]], int]:
    """Retrieved clauses for each QA pair's prompt, by the RAFT recipe (Zhang et al., 2024).

    For each pair: the ``k`` best clauses of ``index`` for its question other than its own source chunk
    (``chunk_id``) are the distractors. With probability ``oracle_probability`` the source chunk replaces the
    last distractor at a random place ("oracle" pairs: the model learns to take the answer from the clauses),
    otherwise the pair gets the ``k`` distractors only (the model learns to answer when retrieval missed).
    Deterministic for a ``seed``. Clause texts are cut to ``clause_chars`` as at inference
    (:meth:`coalqa.retrieval.Index.focus`).

    Returns:
        ``(contexts, oracle_count)``: one list of clause dicts (``title``, ``locator``, ``text``) per row.

    Raises:
        CoalqaError: a row without ``chunk_id``, or whose ``chunk_id`` the index does not hold (the index was built
            from other chunks than the QA data: the message names the row and the rebuild command).
    """
    rng = random.Random(seed)
    contexts, oracles = [], 0
    for n, row in enumerate(rows, 1):
        own = row.get("chunk_id")
        if own in (None, ""):
            raise CoalqaError(f"{where}: row {n} has no chunk_id; training with --index needs QA pairs from "
                              "`coalqa generate` (each names the chunk it was made from)")
        source = index.chunk(str(own))
        if source is None:
            raise CoalqaError(
                f"{where}: row {n}: chunk_id {own!r} is not in index {index.path}: the index was built from other chunks "
                f"than the QA data; index the chunks file the QA pairs were generated from: coalqa index CHUNKS.jsonl "
                f"-o {index.path}"
            )
        hits = [h for h in index.search(row["input"], k + 1) if h["chunk_id"] != source["id"]][:k]
        context = [{"title": h["title"], "locator": h["locator"], "text": index.focus(row["input"], h["text"], clause_chars)}
                   for h in hits]
        if rng.random() < oracle_probability:
            oracles += 1
            context = context[: k - 1]
            context.insert(rng.randrange(len(context) + 1), {"title": source["title"], "locator": source["locator"],
                                                            "text": index.focus(row["input"], source["text"], clause_chars)})
        contexts.append(context)
    return contexts, oracles


def tokenise(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, max_length: int, val_ratio: float,
             seed: int, contexts: list[list[dict]] | None = None) -> TokenisedData:
    """Split ``rows`` by source group and encode each pair with :func:`encode_example` (with ``contexts[i]``, the
    retrieved clauses of row ``i``, in its prompt when given).

    Answers longer than the room left by the prompt are cut (EOS re-appended and labelled); pairs whose
    prompt alone reaches ``max_length`` are skipped and counted.

    Raises:
        CoalqaError: no training example is left.
    """
    train_idx, eval_idx, note = split_by_group(rows, val_ratio, seed)
    out = TokenisedData(train=[], eval=[], rows=len(rows), split_note=note)
    for indices, target in ((train_idx, out.train), (eval_idx, out.eval)):
        for i in indices:
            context = contexts[i] if contexts is not None else None
            ex = encode_example(tokenizer, rows[i]["input"], rows[i]["output"], fmt, context=context)
            if len(ex["input_ids"]) > max_length:
                try:
                    ex = encode_example(tokenizer, rows[i]["input"], rows[i]["output"], fmt, max_length, context=context)
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
