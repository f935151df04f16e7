"""``coalqa corpus DOCS... -o chunks.jsonl``: read regulation files and write structure-aware chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from coalqa.config import config_options, load_config
from coalqa.corpus.chunking import split_into_chunks
from coalqa.corpus.config import CorpusConfig
from coalqa.corpus.jsonl import write_chunks
from coalqa.corpus.readers import load_documents
from coalqa.errors import CoalqaError


@config_options(CorpusConfig)
def corpus(
    docs: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively) of regulations.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the chunks (JSON lines).")] = Path(
        "chunks.jsonl"
    ),
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with CorpusConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Read .txt/.md/.docx/.pdf/.doc regulations (any encoding) and write chunks.jsonl.

    Each line: id, source, title, locator (第五十八条 / 第五十八条–第六十条 / 6.2.2), text, chars,
    heading. Unreadable files are reported and skipped; fails only when nothing could be read.
    """
    cfg = load_config(CorpusConfig, config, overrides)
    console = Console(stderr=True)
    documents, skipped = load_documents(list(docs), soffice=cfg.soffice)
    rows: list[tuple[str, int, int, list[str]]] = []
    chunks = []
    for doc in documents:
        doc_chunks = split_into_chunks(doc, cfg.max_chars)
        chunks.extend(doc_chunks)
        rows.append((str(doc.path), len(doc.text), len(doc_chunks), doc.warnings))
    rows.extend((str(path), 0, 0, [reason]) for path, reason in skipped)

    for name, _, _, warnings in rows:
        for w in warnings:
            console.print(f"[yellow]warning:[/] {name}: {w}", highlight=False, soft_wrap=True)
    table = Table(title=f"coalqa corpus → {output}")
    table.add_column("document")
    table.add_column("chars", justify="right")
    table.add_column("chunks", justify="right")
    table.add_column("warnings", justify="right")
    for name, chars, n_chunks, warnings in rows:
        style = "red" if n_chunks == 0 else None
        table.add_row(Path(name).name, f"{chars:,}", str(n_chunks), str(len(warnings)), style=style)
    table.add_section()
    table.add_row(
        f"{len(documents)} read, {len(skipped)} skipped",
        f"{sum(r[1] for r in rows):,}",
        str(len(chunks)),
        str(sum(len(r[3]) for r in rows)),
    )
    console.print(table)

    if not chunks:
        raise CoalqaError(f"nothing could be read from {', '.join(map(str, docs))}; no chunks written")
    write_chunks(chunks, output)
    console.print(f"wrote {len(chunks)} chunks (max {cfg.max_chars} chars) to {output}", highlight=False, soft_wrap=True)
