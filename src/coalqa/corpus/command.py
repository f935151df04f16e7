"""``coalqa corpus DOCS... -o chunks.jsonl``: read regulation files and write structure-aware chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from coalqa.config import config_options, load_config
from coalqa.corpus.chunking import Chunk, split_into_chunks
from coalqa.corpus.config import CorpusConfig
from coalqa.corpus.jsonl import read_chunks, write_chunks
from coalqa.corpus.readers import load_documents
from coalqa.corpus.report import compare_chunks, document_report, report_path, write_report
from coalqa.errors import CoalqaError
from coalqa.paths import check_outputs


@config_options(CorpusConfig, bool_style="flag")
def corpus(
    docs: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively) of regulations.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the chunks (JSON lines).")] = Path(
        "chunks.jsonl"
    ),
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with CorpusConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Read .txt/.md/.docx/.pdf/.doc regulations (any encoding; scanned PDFs and .png/.jpg pages by OCR) and write
    chunks.jsonl.

    Each line: id, source, title, locator (第五十八条 / 第五十八条–第六十条 / 6.2.2), text, chars,
    heading, sha (content hash). Unreadable files are reported and skipped; fails only when nothing could be
    read (or, with --strict, when any document loses a number or looks garbled). A fidelity report
    (characters and numbers in vs out per document) is printed and saved as <chunks stem>.report.json;
    with --previous OLD_chunks.jsonl it also lists the chunks added, removed and changed since then.
    """
    cfg = load_config(CorpusConfig, config, overrides)
    rpath = report_path(output)
    check_outputs("corpus", inputs={"DOCS": docs, "--config": config, "--previous": cfg.previous},
                  outputs={"the chunks file (--output)": output, "the fidelity report": rpath})
    console = Console(stderr=True)
    previous = read_chunks(cfg.previous) if cfg.previous else None  # fail early on a bad --previous
    documents, skipped = _load_with_progress(docs, cfg, [output, rpath], console)
    chunks: list[Chunk] = []
    docs_report: list[dict[str, Any]] = []
    for doc in documents:
        doc_chunks = split_into_chunks(doc, cfg.max_chars)
        chunks.extend(doc_chunks)
        docs_report.append(document_report(doc, doc_chunks) | {"notes": list(doc.warnings)})
    problems = [(d["path"], w) for d in docs_report for w in d["warnings"]]
    problems += [(str(path), reason) for path, reason in skipped]
    _print_summary(console, docs_report, skipped, problems, len(chunks), output)
    report = _report(output, cfg.max_chars, docs_report, skipped, len(chunks), len(problems))
    if previous is not None:
        report["update"] = {"previous": str(cfg.previous), **compare_chunks(previous, chunks)}
        _print_update(console, report["update"])
    if not chunks:  # the report still says which file was skipped and why
        report["failed"] = "nothing could be read; no chunks written"
        write_report(rpath, report)
        raise CoalqaError(f"nothing could be read from {', '.join(map(str, docs))}; no chunks written "
                          f"(report: {rpath})")
    if cfg.strict and problems:
        report["strict_failed"] = True
        write_report(rpath, report)
        raise CoalqaError(
            f"--strict: {len(problems)} fidelity warning(s), first: {problems[0][0]}: {problems[0][1]}; "
            f"chunks not written to {output} (report: {rpath})"
        )
    write_chunks(chunks, output)
    write_report(rpath, report)
    console.print(f"wrote {len(chunks)} chunks (max {cfg.max_chars} chars) to {output}; fidelity report {rpath}",
                  highlight=False, soft_wrap=True)


def _load_with_progress(docs: list[Path], cfg: CorpusConfig, exclude: list[Path], console: Console):
    """:func:`~coalqa.corpus.readers.load_documents` with an OCR progress bar per scanned file: ``(documents, skipped)``."""
    with Progress(TextColumn("OCR {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
                  TimeElapsedColumn(), console=console, transient=False) as bars:

        def progress(path: Path):
            task = None

            def step(done: int, total: int) -> None:
                nonlocal task
                if task is None:
                    task = bars.add_task(path.name, total=total)
                bars.update(task, completed=done)

            return step

        return load_documents(list(docs), soffice=cfg.soffice, exclude=exclude, ocr=cfg.ocr,
                              progress=progress, ocr_dpi=cfg.ocr_dpi)


def _print_summary(console: Console, docs_report: list[dict[str, Any]], skipped: list[tuple[Path, str]],
                   problems: list[tuple[str, str]], n_chunks: int, output: Path) -> None:
    """Notes, warnings, the per-document table, an OCR line per scanned document and the totals line."""
    for d in docs_report:
        for w in d["notes"]:
            console.print(f"[yellow]note:[/] {d['path']}: {w}", highlight=False, soft_wrap=True)
    for name, w in problems:
        console.print(f"[yellow]warning:[/] {name}: {w}", highlight=False, soft_wrap=True)
    console.print(_table(docs_report, skipped, output))
    for d in docs_report:
        if "ocr" in d:
            o = d["ocr"]
            left_out = f", {len(o['pages_left_out'])} left out as unusable" if o["pages_left_out"] else ""
            console.print(f"OCR: {d['path']}: {len(o['pages'])} page(s){left_out}, {o['lines']} line(s), median "
                          f"confidence {o['median_confidence']:.3f}, lowest {o['min_confidence']:.3f}; "
                          f"{len(o['low_confidence'])} line(s) under {o['low_confidence_threshold']}; numbers "
                          f"recognised {o['numbers_recognised']}, on low-confidence lines {o['numbers_low_confidence']} "
                          f"(no ground truth for a scan); {len(o['suspect_numbers'])} suspect number(s), "
                          f"{len(o['suspect_headings'])} suspect article number(s) (see the report)",
                          highlight=False, soft_wrap=True)
    text_docs = [d for d in docs_report if "ocr" not in d]  # numbers "kept" only where the source is known
    kept = sum(d["numbers_in"] - d["numbers_missing_count"] for d in text_docs)
    n_ocr = len(docs_report) - len(text_docs)
    cells = sum(d["table_cells"] for d in docs_report)
    ocr_numbers = (f" · OCR'd: numbers recognised {sum(d['ocr']['numbers_recognised'] for d in docs_report if 'ocr' in d):,}, "
                   f"on low-confidence lines {sum(d['ocr']['numbers_low_confidence'] for d in docs_report if 'ocr' in d):,} "
                   f"(no ground truth)") if n_ocr else ""
    console.print(
        f"{len(docs_report)} read, {len(skipped)} skipped{f' ({n_ocr} by OCR)' if n_ocr else ''} · {n_chunks} chunks · "
        f"{sum(d['tables'] for d in docs_report)} table(s), {cells:,} cells · numbers kept "
        f"{kept:,}/{sum(d['numbers_in'] for d in text_docs):,}{' (text layers)' if n_ocr else ''}{ocr_numbers} · characters in→out "
        f"{sum(d['chars_in'] for d in docs_report):,}→{sum(d['chars_out'] for d in docs_report):,} · "
        f"{len(problems)} warning(s)", highlight=False, soft_wrap=True,
    )


def _report(output: Path, max_chars: int, docs_report: list[dict[str, Any]], skipped: list[tuple[Path, str]],
            n_chunks: int, n_problems: int) -> dict[str, Any]:
    """The fidelity report saved beside the chunks: per-document entries, skipped files and totals."""
    ocr = [d["ocr"] for d in docs_report if "ocr" in d]
    return {
        "output": str(output),
        "max_chars": max_chars,
        "documents": docs_report,
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
        "totals": {
            "documents": len(docs_report),
            "skipped": len(skipped),
            "chunks": n_chunks,
            "chars_in": sum(d["chars_in"] for d in docs_report),
            "chars_out": sum(d["chars_out"] for d in docs_report),
            "numbers_in": sum(d["numbers_in"] for d in docs_report),
            "numbers_missing": sum(d["numbers_missing_count"] for d in docs_report),
            "ocr_documents": len(ocr),
            "ocr_pages": sum(len(o["pages"]) for o in ocr),
            "ocr_pages_left_out": sum(len(o["pages_left_out"]) for o in ocr),
            "ocr_numbers_recognised": sum(o["numbers_recognised"] for o in ocr),
            "ocr_numbers_low_confidence": sum(o["numbers_low_confidence"] for o in ocr),
            "ocr_suspect_numbers": sum(len(o["suspect_numbers"]) for o in ocr),
            "ocr_suspect_headings": sum(len(o["suspect_headings"]) for o in ocr),
            "tables": sum(d["tables"] for d in docs_report),
            "table_cells": sum(d["table_cells"] for d in docs_report),
            "table_numbers": sum(d["table_numbers"] for d in docs_report),
            "table_numbers_kept": sum(d["table_numbers_kept"] for d in docs_report),
            "warnings": n_problems,
        },
    }


def _table(docs_report: list[dict[str, Any]], skipped: list[tuple[Path, str]], output: Path) -> Table:
    table = Table(title=f"coalqa corpus → {output}")
    for name, justify in (("document", "left"), ("chars in→out", "right"), ("numbers kept", "right"),
                          ("chunks", "right"), ("卷首", "right"), ("warnings", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for d in docs_report:
        kept = d["numbers_in"] - d["numbers_missing_count"]
        style = "red" if d["warnings"] else None
        numbers = (f"OCR {d['ocr']['numbers_recognised']:,} ({d['ocr']['numbers_low_confidence']:,} doubtful)"
                   if "ocr" in d else f"{kept:,}/{d['numbers_in']:,}")
        table.add_row(d["source"], f"{d['chars_in']:,}→{d['chars_out']:,}", numbers,
                      str(d["chunks"]), str(d["front_chunks"]), str(len(d["warnings"])), style=style)
    for path, _ in skipped:
        table.add_row(Path(path).name, "0", "0/0", "0", "0", "1", style="red")
    table.add_section()
    text_docs = [d for d in docs_report if "ocr" not in d]
    kept = sum(d["numbers_in"] - d["numbers_missing_count"] for d in text_docs)
    table.add_row(
        f"{len(docs_report)} read, {len(skipped)} skipped",
        f"{sum(d['chars_in'] for d in docs_report):,}→{sum(d['chars_out'] for d in docs_report):,}",
        f"{kept:,}/{sum(d['numbers_in'] for d in text_docs):,}",
        str(sum(d["chunks"] for d in docs_report)),
        str(sum(d["front_chunks"] for d in docs_report)),
        str(sum(len(d["warnings"]) for d in docs_report) + len(skipped)),
    )
    return table


def _print_update(console: Console, update: dict[str, Any]) -> None:
    console.print(
        f"since {update['previous']}: {len(update['added'])} chunk(s) added, {len(update['removed'])} removed, "
        f"{len(update['changed'])} changed, {update['unchanged']} unchanged",
        highlight=False, soft_wrap=True,
    )
    for kind in ("added", "removed", "changed"):
        for e in update[kind][:20]:
            console.print(f"  {kind}: {e['source']} {e['locator']}", highlight=False, soft_wrap=True)
        if len(update[kind]) > 20:
            console.print(f"  … {len(update[kind]) - 20} more {kind} (see the report)", highlight=False)
