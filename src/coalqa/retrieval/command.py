"""``coalqa index CHUNKS.jsonl... -o INDEX_DIR`` and ``coalqa retrieve --index INDEX_DIR "问题" [-k 5] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from coalqa.config import config_options, load_config
from coalqa.errors import CoalqaError
from coalqa.paths import check_outputs
from coalqa.retrieval.config import IndexConfig, RetrieveConfig


@config_options(IndexConfig)
def index(
    chunks: Annotated[list[Path], typer.Argument(help="chunks.jsonl file(s) from `coalqa corpus`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Index folder to write (replaced if it is an index).")] = Path("index"),
    questions: Annotated[list[Path] | None, typer.Option("--questions", help="QA file(s) (`coalqa generate` output): their questions, by chunk_id, rank their chunks too (doc2query; off by default, see README 2b).")] = None,
    references: Annotated[list[Path] | None, typer.Option("--references", help="Evaluation set(s): refuse a --questions file holding one of their questions.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with IndexConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Build a retrieval index (BM25 over jieba tokens of whole chunks and of sentence windows, and over character
    bigrams of the sentence windows, optionally over character unigrams of single sentences; questions expanded with
    regulation wording; a document-title prior; optional dense embeddings) from chunk files.

    The folder records the chunks and a hash of each chunk file; an index whose chunk files changed is refused
    later, with the command that rebuilds it.
    """
    from coalqa.retrieval.index import build_index

    cfg = load_config(IndexConfig, config, overrides)
    table = None if cfg.expansions.lower() in ("builtin", "none") else Path(cfg.expansions)
    check_outputs("index", inputs={"CHUNKS": chunks, "--config": config, "--embedding_model": cfg.embedding_model,
                                   "--expansions": table, "--questions": questions or [], "--references": references or []},
                  output_dirs={"the index folder (--output)": output})
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    manifest = build_index(chunks, output, embedding_model=cfg.embedding_model, sentence_window=cfg.sentence_window,
                           char_bigrams=cfg.char_bigrams, char_unigrams=cfg.char_unigrams, expansions=cfg.expansions,
                           expansion_weight=cfg.expansion_weight, title_weight=cfg.title_weight,
                           questions=questions or (), references=references or ())
    dense = f", dense {manifest['embedding']['model']} ({manifest['embedding']['dim']} dims)" if manifest["embedding"] else ""
    windows = f", {manifest['sentence_window']}-sentence windows" if manifest["sentence_window"] else ""
    windows += " (words and character bigrams)" if manifest["char_bigrams"] else ""
    windows += ", character-unigram sentences" if manifest["char_unigrams"] else ""
    exp = manifest["expansions"]
    expansion = f", {exp['entries']} query expansions at weight {exp['weight']:g}" if exp else ""
    expansion += f", title prior {manifest['title_weight']:g}" if manifest["title_weight"] else ""
    if manifest["questions"]:
        q = manifest["questions"]
        expansion += (f", {q['indexed']} questions of {q['pairs']} QA pairs ({q['duplicates']} repeats, "
                      f"{q['other_chunks']} of other chunks, {q['no_chunk_id']} without chunk_id left out)")
    console.print(f"indexed {manifest['chunks']} chunks from {len(chunks)} file(s) in {manifest['build_seconds']:.1f} s "
                  f"(BM25{windows}{expansion}, {manifest['user_dict_terms']} corpus terms in the jieba dictionary"
                  f"{dense}) → {output}")


PREVIEW_CHARS = 160  # characters of each hit shown by `coalqa retrieve` (--json prints the whole text)


@config_options(RetrieveConfig)
def retrieve(
    question: Annotated[str, typer.Argument(help="The question to find clauses for.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder from `coalqa index`.")] = Path("index"),
    k_short: Annotated[int | None, typer.Option("-k", help="Same as --k.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON (with the full clause text).")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with RetrieveConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Show the clauses an index ranks best for a question: score, 《title》 locator and the chunk's sentences that
    best match the question (a chunk can hold many clauses; its start may be about something else)."""
    from coalqa.retrieval.index import load_index

    if k_short is not None:
        overrides["k"] = k_short
    cfg = load_config(RetrieveConfig, config, overrides)
    if not question.strip():
        raise CoalqaError("the question is empty: give the question to retrieve clauses for")
    index = load_index(index_dir)
    hits = index.search(question, cfg.k)
    if as_json:  # each hit also with the sentences shown as its preview ("excerpt", gaps marked "…")
        hits = [h | {"excerpt": index.focus(question, h["text"], PREVIEW_CHARS, gap="…")} for h in hits]
        typer.echo(json.dumps(hits, ensure_ascii=False, indent=2))
        return
    out = Console(highlight=False, soft_wrap=True)
    if not hits:
        out.print("(no clause shares a word with the question)")
    for h in hits:
        extra = f" · bm25 {h['bm25']:.2f}" + (f" · dense {h['dense']:.3f}" if "dense" in h else "")
        best = " ".join(index.focus(question, h["text"], PREVIEW_CHARS, gap=" … ").split())  # sentences kept in text order
        cut = best if len(best) <= PREVIEW_CHARS + 6 else best[:PREVIEW_CHARS] + "…"  # + 6: the gaps' " … "
        out.print(f"[bold]{h['rank']}.[/] {h['score']:.4g}{extra}  《{escape(h['title'])}》{escape(h['locator'])}  "
                  f"[dim]{escape(h['source'])} · {h['chunk_id']} · {len(h['text'])} chars[/]\n   {escape(cut)}")
