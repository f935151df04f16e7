"""Corpus stage: regulation files (txt/md/docx/pdf/doc, any encoding) → structure-aware chunks.

>>> docs, skipped = load_documents(["../shared/corpus/coal-safety"])
>>> chunks = [c for d in docs for c in split_into_chunks(d, max_chars=1500)]
>>> write_chunks(chunks, "chunks.jsonl")
"""

from coalqa.corpus.chunking import Chunk, split_into_chunks
from coalqa.corpus.config import CorpusConfig
from coalqa.corpus.jsonl import read_chunks, write_chunks
from coalqa.corpus.readers import Document, ReadError, clean_text, load_documents, read_document

__all__ = [
    "Chunk",
    "CorpusConfig",
    "Document",
    "ReadError",
    "clean_text",
    "load_documents",
    "read_chunks",
    "read_document",
    "split_into_chunks",
    "write_chunks",
]
