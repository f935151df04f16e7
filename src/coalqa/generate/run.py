"""Run the generate stage: chunks → (checkpoint) → validated, de-duplicated ``QAdata_all.json``.

Flow: read the checkpoint beside the output; skip chunks already ``done`` (same text); ask the
provider for the rest (a thread pool bounded by ``concurrency``; ``clause`` runs inline), appending
each chunk's record to the checkpoint the moment it finishes; then rebuild the dataset from the
checkpoint in chunk order — validate, de-duplicate, attach provenance — and write it, a rejects
log and a run summary atomically. Because the dataset is always rebuilt from the checkpoint,
an interrupted run resumed later yields the same file as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coalqa.corpus.chunking import chunk_sha
from coalqa.errors import CoalqaError
from coalqa.generate.checkpoint import check_header, open_checkpoint, read_checkpoint, text_sha
from coalqa.generate.clause import clause_pairs, occurrences
from coalqa.generate.config import GenerateConfig
from coalqa.generate.dedup import make_deduper
from coalqa.generate.parse import parse_pairs
from coalqa.generate.prompt import Prompt, load_prompt, render_prompt
from coalqa.generate.validate import check_faithful, check_pair
from coalqa.jsonio import file_sha256, read_rows
from coalqa.jsonio import write_text_atomic as write_atomic
from coalqa.llm import ChatFn, FatalLLMError, chat_client_for, redact

log = logging.getLogger("coalqa.generate")
CLAUSE_VERSION = "clause-v2"
# Settings the clause generator never reads: left out of its summary so that it does not claim, say, model glm-4.
LLM_ONLY = {"model", "base_url", "concurrency", "pairs", "prompt", "temperature", "top_p", "max_tokens", "timeout",
            "max_retries", "retry_wait"}


def side_paths(output: Path, cfg: GenerateConfig) -> dict[str, Path]:
    """Files written beside ``output``: checkpoint, summary and rejects log."""
    stem = output.with_suffix("") if output.suffix == ".json" else output
    return {
        "checkpoint": cfg.checkpoint or Path(f"{stem}.checkpoint.jsonl"),
        "summary": Path(f"{stem}.summary.json"),
        "rejects": Path(f"{stem}.rejects.jsonl"),
    }


def _header(cfg: GenerateConfig, prompt: Prompt | None) -> dict[str, Any]:
    lo, hi = cfg.pair_bounds()
    llm = cfg.provider != "clause"
    return {
        "type": "header",
        "provider": cfg.provider,
        "model": cfg.model if llm else CLAUSE_VERSION,
        "prompt_version": prompt.version if prompt else CLAUSE_VERSION,
        "pairs": [lo, hi] if llm else None,
        "max_question_chars": cfg.max_question_chars,
        "max_answer_chars": cfg.max_answer_chars,
        **({} if llm else {"clause_kinds": list(cfg.clause_kinds)}),
    }


def _llm_record(chunk: dict[str, Any], chat: ChatFn, prompt: Prompt, cfg: GenerateConfig) -> dict[str, Any]:
    """Ask the LLM about one chunk; a failed call becomes a ``failed`` record (FatalLLMError propagates)."""
    lo, hi = cfg.pair_bounds()
    content = render_prompt(
        prompt, chunk["text"], max_question_chars=cfg.max_question_chars,
        max_answer_chars=cfg.max_answer_chars, min_pairs=lo, max_pairs=hi,
    )
    record: dict[str, Any] = {"chunk_id": chunk["id"], "text_sha": text_sha(chunk["text"]), "chunk_sha": content_sha(chunk)}
    try:
        raw, usage = chat([{"role": "user", "content": content}])
    except FatalLLMError:
        raise
    except Exception as e:  # noqa: BLE001 -- retries exhausted or a non-retryable 4xx: redo on the next run
        return record | {"status": "failed", "error": redact(f"{type(e).__name__}: {e}")[:500], "pairs": [], "problems": []}
    pairs, problems = parse_pairs(raw)
    for p in problems:
        log.warning("chunk %s: %s: %s", chunk["id"], p["reason"], p["detail"])
    status = "done" if pairs else "failed"
    error = None if pairs else "no usable pairs in the reply: " + "; ".join(p["detail"] for p in problems)[:300]
    return record | {"status": status, "error": error, "pairs": pairs, "problems": problems, "usage": usage, "raw": raw}


def _clause_record(chunk: dict[str, Any], cfg: GenerateConfig, occurrence: int) -> dict[str, Any]:
    pairs = clause_pairs(chunk, cfg.max_answer_chars, cfg.max_question_chars, occurrence, tuple(cfg.clause_kinds))
    if pairs:
        problems = []
    elif not str(chunk.get("text") or "").strip():
        problems = [{"reason": "empty_chunk", "detail": "chunk has no text"}]
    else:  # only fact pairs asked for, and no sentence states a number
        problems = [{"reason": "no_fact", "detail": "no sentence of the chunk states a number (clause_kinds: fact)"}]
    return {"chunk_id": chunk["id"], "text_sha": text_sha(chunk["text"]), "chunk_sha": content_sha(chunk),
            "occurrence": occurrence, "status": "done", "error": None, "pairs": pairs, "problems": problems}


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
        TextColumn("done {task.fields[done]} · failed {task.fields[failed]} · pairs {task.fields[pairs]}"),
        TimeElapsedColumn(), console=console,
    )


def _produce(todo: list[dict], cfg: GenerateConfig, append: Callable[[dict], None], console: Console,
             make_record: Callable[[dict], dict], counts: dict[str, int]) -> None:
    """Generate records for ``todo``, appending each as it completes and counting them in ``counts``."""

    def finished(rec: dict) -> None:
        append(rec)
        counts[rec["status"]] += 1
        counts["pairs"] += len(rec["pairs"])
        for k, v in (rec.get("usage") or {}).items():
            counts[k] = counts.get(k, 0) + v
        if rec["status"] == "failed":
            log.warning("chunk %s failed: %s", rec["chunk_id"], rec.get("error"))
        bar.update(task, advance=1, done=counts["done"], failed=counts["failed"], pairs=counts["pairs"])

    with _progress(console) as bar:
        task = bar.add_task("generate", total=len(todo), done=0, failed=0, pairs=0)
        if cfg.provider == "clause":
            for chunk in todo:
                finished(make_record(chunk))
            return
        pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="coalqa-gen")
        pending = {pool.submit(make_record, c) for c in todo}
        fatal: FatalLLMError | None = None
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.cancelled():
                        continue
                    try:
                        finished(fut.result())
                    except FatalLLMError as e:  # stop: drop queued chunks, keep what the running ones finish
                        if fatal is None:
                            fatal = e
                            for queued in pending:
                                queued.cancel()
        finally:
            pool.shutdown(wait=not pending, cancel_futures=True)
    if fatal is not None:
        raise fatal


def content_sha(chunk: dict[str, Any]) -> str:
    """The chunk's content hash (``sha`` of chunks.jsonl; computed with :func:`coalqa.corpus.chunking.chunk_sha`
    for chunk dicts without one)."""
    return str(chunk.get("sha") or chunk_sha(str(chunk.get("source") or ""), str(chunk.get("title") or ""),
                                           str(chunk.get("locator") or ""), str(chunk.get("heading") or ""),
                                           str(chunk.get("text") or "")))


def record_finder(records: dict[str, dict], occurrence: dict[str, int] | None = None) -> Callable[[dict], dict | None]:
    """``find(chunk) -> record | None``: the checkpoint record made from this very chunk content.

    Records are matched by the chunk's content hash (``chunk_sha``), so the pairs of an unchanged chunk are
    found again after the chunks file was rebuilt (a regulation update), whatever its id; records written
    before content hashes existed are matched by id and text hash. With ``occurrence`` (the clause generator,
    whose questions depend on it) the record must also have been made for the same occurrence.
    """
    by_sha = {r["chunk_sha"]: r for r in records.values() if r.get("chunk_sha")}

    def find(chunk: dict) -> dict | None:
        rec = by_sha.get(content_sha(chunk))
        if rec is None:
            old = records.get(chunk["id"])
            rec = old if old and not old.get("chunk_sha") and old.get("text_sha") == text_sha(chunk["text"]) else None
        if rec is not None and occurrence is not None and rec.get("occurrence", 0) != occurrence.get(chunk["id"], 0):
            return None
        return rec

    return find


def build_dataset(chunks: list[dict], records: dict[str, dict], cfg: GenerateConfig,
                  occurrence: dict[str, int] | None = None) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Rebuild the dataset from checkpoint records (found by :func:`record_finder`), in chunk order.

    Returns ``(dataset, rejects, reasons)``: dataset items are ``{"input", "output", "chunk_id",
    "chunk_sha", "source", "locator"}``; rejects are ``{"chunk_id", "source", "locator", "reason", "detail"}``
    for parse problems, invalid pairs, unfaithful pairs (``number_not_in_chunk``, ``language``: ``detail``
    starts with the numbers or languages at fault, then the pair) and duplicates; ``reasons`` counts rejects by reason.
    """
    seen = make_deduper(cfg.near_dup_threshold)
    lookup = record_finder(records, occurrence)
    dataset, rejects, reasons = [], [], {}

    def reject(chunk: dict, reason: str, detail: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1
        rejects.append({"chunk_id": chunk["id"], "source": chunk.get("source"), "locator": chunk.get("locator"),
                        "reason": reason, "detail": detail[:300]})

    for chunk in chunks:
        rec = lookup(chunk)
        if not rec or rec.get("status") != "done":
            continue
        for p in rec.get("problems") or []:
            reject(chunk, p["reason"], p["detail"])
        for pair in rec["pairs"]:
            why, detail = check_pair(pair, cfg), ""
            if why is None:
                why, detail = check_faithful(pair, chunk["text"], cfg) or (None, "")
            if why is None:
                why = seen(pair["input"], pair["output"])
            if why:
                pair_json = json.dumps(pair, ensure_ascii=False)
                reject(chunk, why, f"{detail}: {pair_json}" if detail else pair_json)
                continue
            dataset.append({"input": pair["input"].strip(), "output": pair["output"].strip(), "chunk_id": chunk["id"],
                            "chunk_sha": content_sha(chunk), "source": chunk.get("source"), "locator": chunk.get("locator")})
    return dataset, rejects, reasons


def _previous_pairs(path: Path, todo: list[dict], header: dict[str, Any], nth: dict[str, int] | None) -> list[dict]:
    """Checkpoint records for the chunks of ``todo`` whose pairs an earlier dataset (``--previous_qa``) holds.

    Pairs are taken by ``chunk_sha`` (their chunk's content hash), so only unchanged chunks reuse them.
    The earlier dataset's ``*.summary.json``, when beside it, must name the same provider, model and prompt
    version as this run (a dataset is not mixed from two generators).

    Raises:
        CoalqaError: the file cannot be read, or its summary names other generation settings.
    """
    stem = path.with_suffix("") if path.suffix == ".json" else path
    summary_path = Path(f"{stem}.summary.json")
    if summary_path.is_file():
        prev = json.loads(summary_path.read_text(encoding="utf-8"))
        theirs = (prev.get("provider"), prev.get("model"), (prev.get("prompt") or {}).get("version"))
        ours = (header["provider"], header["model"], header["prompt_version"])
        if theirs != ours:
            raise CoalqaError(f"--previous_qa {path} was made with provider/model/prompt {theirs}, this run uses {ours}; "
                              "its pairs are not reused (drop --previous_qa, or use the same settings)")
    by_sha: dict[str, list[dict[str, str]]] = {}
    for where, row in read_rows(path, "previous QA data"):
        if isinstance(row, dict) and row.get("chunk_sha") and isinstance(row.get("input"), str) and isinstance(row.get("output"), str):
            by_sha.setdefault(str(row["chunk_sha"]), []).append({"input": row["input"], "output": row["output"]})
    out = []
    for c in todo:
        pairs = by_sha.get(content_sha(c))
        if pairs:
            out.append({"chunk_id": c["id"], "text_sha": text_sha(c["text"]), "chunk_sha": content_sha(c),
                        "occurrence": (nth or {}).get(c["id"], 0), "status": "done", "error": None, "pairs": pairs,
                        "problems": [], "origin": str(path)})
    return out


def _summary(output: Path, cfg: GenerateConfig, header: dict[str, Any], prompt: Prompt | None, paths: dict[str, Path],
             chunks: list[dict[str, Any]], chunks_path: str | Path | None, run: dict[str, Any],
             dataset: list[dict[str, Any]], reasons: dict[str, int], lookup: Callable) -> dict[str, Any]:
    """The run summary (``*.summary.json``): provider, chunk counts (``run``: this run's counts), pairs kept and
    rejected by reason, tokens, failed chunks, settings, files, elapsed time."""
    llm = cfg.provider != "clause"
    done, failed, session = run["done"], run["failed"], run["session"]
    dups = {k: reasons.get(f"duplicate_{k}", 0) for k in ("exact", "near")}
    return {
        "output": str(output),
        "provider": cfg.provider,
        "model": header["model"],
        "base_url": cfg.base_url if llm else None,
        "prompt": {"version": header["prompt_version"], "file": prompt.path if prompt else None},
        "chunks": {"total": len(chunks), "done": done, "failed": len(failed), "not_attempted": len(chunks) - done - len(failed),
                   "reused_from_checkpoint": run["reused"],
                   "reused_from_previous_qa": run["seeded"], "generated_this_run": session["done"],
                   "stale_records_ignored": run["stale"]},
        "chunks_file": {"path": str(Path(chunks_path).resolve()), "sha256": file_sha256(chunks_path)} if chunks_path else None,
        "pairs": {
            "kept": len(dataset),
            "candidates": sum(len(r["pairs"]) for c in chunks if (r := lookup(c)) and r.get("status") == "done"),
            "rejected": sum(v for k, v in reasons.items() if not k.startswith("duplicate_")),
            "rejected_by_reason": {k: v for k, v in sorted(reasons.items()) if not k.startswith("duplicate_")},
            "duplicates_removed": sum(dups.values()),
            "duplicates_by_kind": dups,
        },
        "tokens": {"this_run": {k: session[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                   "all_runs": run["tokens"]},
        "failed_chunks": failed,
        "settings": cfg.model_dump(mode="json", exclude=None if llm else LLM_ONLY),
        "files": {k: str(v) for k, v in paths.items()},
        "elapsed_s": round(time.monotonic() - run["started"], 2),
    }


def _todo(chunks: list[dict[str, Any]], cfg: GenerateConfig, checkpoint: Path, header: dict[str, Any],
          nth: dict[str, int] | None) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """``(chunks still to generate, checkpoint records of chunks no longer present, records seeded from
    cfg.previous_qa)``: a chunk whose record in the checkpoint (found by content hash) is done is not redone.

    Raises:
        CoalqaError: the checkpoint was made with other settings.
    """
    found, records, _ = read_checkpoint(checkpoint)
    check_header(checkpoint, found, header)
    lookup = record_finder(records, nth)
    todo = [c for c in chunks if not ((rec := lookup(c)) and rec.get("status") == "done")]
    current = {content_sha(c) for c in chunks}
    stale = sum(1 for r in records.values() if r.get("chunk_sha") and r["chunk_sha"] not in current)
    seeded = _previous_pairs(cfg.previous_qa, todo, header, nth) if cfg.previous_qa else []
    if seeded:
        done_ids = {r["chunk_id"] for r in seeded}
        todo = [c for c in todo if c["id"] not in done_ids]
    return todo, stale, seeded


def run_generate(chunks: list[dict[str, Any]], output: str | Path, cfg: GenerateConfig, *,
                 chat: ChatFn | None = None, console: Console | None = None,
                 chunks_path: str | Path | None = None) -> dict[str, Any]:
    """Generate QA pairs for ``chunks`` into ``output``; resumable; returns the run summary.

    Args:
        chunks: dicts with at least ``id`` (unique) and ``text``; ``source``/``title``/``locator``/
            ``heading`` are used for provenance and by the clause generator.
        output: the dataset path (JSON array); the checkpoint, ``*.summary.json`` and
            ``*.rejects.jsonl`` are written beside it (see :func:`side_paths`).
        chat: an injected ``chat(messages) -> (text, usage)``; default :func:`make_chat_client`.
        chunks_path: the chunks file ``chunks`` came from; its path and SHA-256 go into the summary (and from
            there into the run card of an adapter trained on the output).

    Regulation updates: records are found by chunk content hash (:func:`record_finder`), so rerunning with a
    rebuilt chunks file and the same output reuses the pairs of unchanged chunks, generates only new or changed
    ones, and leaves out the pairs of chunks no longer present. ``cfg.previous_qa`` seeds the checkpoint from an
    earlier dataset instead (see :func:`_previous_pairs`).

    Raises:
        CoalqaError: missing API key, a checkpoint made with other settings, or a permanent provider error
            (:class:`FatalLLMError`: bad key, balance used up, unknown model…), raised after the dataset and
            summary of the chunks finished so far are written; finished chunks stay in the checkpoint.
    """
    started = time.monotonic()
    output = Path(output)
    console = console or Console(stderr=True)
    chunks = chunks[: cfg.limit] if cfg.limit else chunks
    llm = cfg.provider != "clause"
    prompt = load_prompt(cfg.prompt) if llm else None
    paths = side_paths(output, cfg)
    header = _header(cfg, prompt)
    nth = None if llm else occurrences(chunks)
    todo, stale, seeded = _todo(chunks, cfg, paths["checkpoint"], header, nth)
    if todo and llm and chat is None:
        chat = chat_client_for(cfg, max_concurrency=cfg.concurrency)
    if len(todo) < len(chunks):
        console.print(f"reusing {len(chunks) - len(todo) - len(seeded)} unchanged chunk(s) from {paths['checkpoint']}"
                      + (f" and {len(seeded)} from {cfg.previous_qa}" if seeded else "")
                      + f"; generating {len(todo)} new or changed of {len(chunks)}"
                      + (f"; {stale} checkpoint record(s) of chunks no longer present are ignored" if stale else ""))
    make_record = (lambda c: _llm_record(c, chat, prompt, cfg)) if llm else (lambda c: _clause_record(c, cfg, nth[c["id"]]))
    append, close = open_checkpoint(paths["checkpoint"], header, durable=llm)
    for rec in seeded:
        append(rec)
    fatal: FatalLLMError | None = None
    session = {"done": 0, "failed": 0, "pairs": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    try:
        _produce(todo, cfg, append, console, make_record, session)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished chunks are saved in {paths['checkpoint']}; rerun the same command to resume")
        raise
    except FatalLLMError as e:  # write what was finished, then stop with the provider's reason
        fatal = e
    finally:
        close()

    _, records, tokens = read_checkpoint(paths["checkpoint"])
    dataset, rejects, reasons = build_dataset(chunks, records, cfg, nth)
    lookup = record_finder(records, nth)
    finished_before = lambda c: bool(rec := lookup(c)) and rec.get("status") == "done"
    failed = [{"chunk_id": c["id"], "error": records[c["id"]].get("error")} for c in chunks
              if c["id"] in records and records[c["id"]].get("status") == "failed" and not finished_before(c)]
    done = sum(1 for c in chunks if finished_before(c))  # records were re-read: counts every run
    summary = _summary(output, cfg, header, prompt, paths, chunks, chunks_path, {
        "done": done, "failed": failed, "reused": len(chunks) - len(todo) - len(seeded), "seeded": len(seeded),
        "stale": stale, "session": session, "tokens": tokens, "started": started,
    }, dataset, reasons, lookup)
    write_atomic(output, json.dumps(dataset, ensure_ascii=False, indent=2) + "\n")
    write_atomic(paths["rejects"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    write_atomic(paths["summary"], redact(json.dumps(summary, ensure_ascii=False, indent=2)) + "\n")
    if fatal is not None:
        raise FatalLLMError(
            f"{fatal}. Stopped at the first such error: {done} of {len(chunks)} chunks are done and kept in "
            f"{paths['checkpoint']} (dataset so far: {output}); fix the cause and rerun the same command to continue"
        ) from None
    return summary
