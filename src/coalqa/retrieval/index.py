"""A persistent retrieval index over chunks: BM25 (bm25s) on jieba tokens, optionally fused with dense embeddings.

``build_index(chunk_files, out_dir)`` writes the index folder; ``load_index(out_dir)`` reads it back, refusing a
stale one; ``Index.search(question, k)`` ranks the chunks. The folder::

    INDEX_DIR/
        index.json      manifest: format and tokenizer versions, the chunk files with their SHA-256, chunk count,
                        BM25 parameters, user-dictionary size, embedding model, fingerprint of the chunks
        chunks.jsonl    the indexed chunks as written (id, source, title, locator, text): what citations show
        userdict.txt    jieba user dictionary of the corpus' own terms (:func:`coalqa.retrieval.text.corpus_terms`)
        bm25/           the bm25s index (sparse score matrix + vocabulary)
        embeddings.npy  (dense/hybrid only) L2-normalised chunk embeddings, float32, shape (chunks, dim)

The folder is built beside ``INDEX_DIR`` under a temporary name and moved into place at the end, so an
interrupted build leaves either the old index or none, never half of one.

Scores: BM25 as in Lucene (Robertson et al.; bm25s ``method="lucene"``, k1 1.5, b 0.75). Documents sharing no
token with the question score 0 and are never returned (bm25s itself would rank them, and raise for ``k``
larger than the corpus). With embeddings the two rankings are fused by reciprocal-rank fusion
(Cormack, Clarke & Büttcher, SIGIR 2009: ``Σ 1 / (60 + rank)``), and every hit keeps both raw scores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256, new_file_mode
from coalqa.retrieval.text import TOKENIZER_VERSION, corpus_terms, make_tokenizer, split_sentences, tokenize, write_user_dict

INDEX_FORMAT = 1
MANIFEST = "index.json"
CHUNK_FIELDS = ("id", "source", "title", "locator", "text", "ocr")  # ocr: only on chunks read by OCR
RRF_K = 60  # Cormack et al. 2009
BM25_PARAMS = {"method": "lucene", "k1": 1.5, "b": 0.75}


def _doc_text(chunk: dict) -> str:
    """What is indexed for a chunk: its title, locator, heading and text (title words match questions naming a regulation)."""
    return " ".join(str(chunk.get(k) or "") for k in ("title", "locator", "heading", "text"))


def rebuild_command(manifest: dict, out_dir: str | Path) -> str:
    """The ``coalqa index`` command that rebuilds ``out_dir`` from its recorded chunk files."""
    files = " ".join(f["path"] for f in manifest.get("chunk_files", []))
    dense = f" --embedding_model {manifest['embedding']['model']}" if manifest.get("embedding") else ""
    return f"coalqa index {files} -o {out_dir}{dense}"


def read_index_chunks(chunk_files: Sequence[str | Path]) -> list[dict]:
    """The chunks of ``chunk_files`` (``coalqa corpus`` output), as dicts with ``id source title locator text heading``.

    Raises:
        CoalqaError: a file is missing or malformed (file and line named, by :func:`coalqa.corpus.read_chunks`);
            a file whose chunks have no locator at all (citations need one); a chunk id that occurs twice; no chunks.
    """
    from coalqa.corpus import read_chunks

    chunks: list[dict] = []
    seen: dict[str, str] = {}
    for path in chunk_files:
        rows = read_chunks(path)
        if rows and not any(c.locator.strip() for c in rows):
            raise CoalqaError(
                f"{path}: no chunk has a locator (第X条, 6.2.2 …), so answers could not cite where a clause stands; "
                f"re-chunk the documents with `coalqa corpus DOCS -o {path}`"
            )
        for c in rows:
            if c.id in seen:
                raise CoalqaError(f"{path}: chunk id {c.id!r} also occurs in {seen[c.id]}; index each chunk file once")
            seen[c.id] = str(path)
            chunks.append({"id": c.id, "source": c.source, "title": c.title, "locator": c.locator or c.heading,
                           "text": c.text, "heading": c.heading, **({"ocr": True} if c.ocr else {})})
    if not chunks:
        raise CoalqaError(f"no chunks in {', '.join(map(str, chunk_files))}")
    return chunks


def chunks_fingerprint(chunks: Sequence[dict]) -> str:
    """SHA-256 (first 16 hex digits) of the chunks' ids and texts: tells whether two indexes hold the same clauses."""
    import hashlib

    h = hashlib.sha256()
    for c in sorted(chunks, key=lambda c: c["id"]):
        h.update(f"{c['id']}\0{c['text']}\0".encode("utf-8"))
    return h.hexdigest()[:16]


def build_index(chunk_files: Sequence[str | Path], out_dir: str | Path, *, embedding_model: str | None = None,
                progress: bool = False) -> dict:
    """Index the chunks of ``chunk_files`` into the folder ``out_dir`` (layout in the module docstring).

    Args:
        embedding_model: also embed every chunk for hybrid retrieval (:func:`coalqa.retrieval.dense.load_embedder`).

    Returns:
        the manifest written to ``out_dir/index.json``.

    Raises:
        CoalqaError: bad chunk files (see :func:`read_index_chunks`), ``out_dir`` is a file or a non-empty folder
            that is not an index, or the embedding model cannot be loaded.
    """
    import bm25s
    import numpy as np

    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and (out_dir.is_file() or any(out_dir.iterdir())):
        raise CoalqaError(f"{out_dir} exists and is not a coalqa index; pick another -o folder (nothing was written)")
    started = time.perf_counter()
    files = [Path(f) for f in chunk_files]
    hashes = [file_sha256(f) if f.is_file() else None for f in files]
    chunks = read_index_chunks(files)
    embedder = None
    if embedding_model:
        from coalqa.retrieval.dense import load_embedder

        embedder = load_embedder(embedding_model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(new_file_mode(directory=True))  # mkdtemp makes it 0o700; the index is read by whoever reads the chunks
    try:
        terms = corpus_terms(chunks)
        write_user_dict(terms, tmp / "userdict.txt")
        tokenizer = make_tokenizer(tmp / "userdict.txt")
        retriever = bm25s.BM25(**BM25_PARAMS)
        retriever.index([tokenize(_doc_text(c), tokenizer) for c in chunks], show_progress=progress)
        retriever.save(str(tmp / "bm25"), show_progress=False)
        with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps({k: c[k] for k in CHUNK_FIELDS if k in c}, ensure_ascii=False) + "\n")
        embedding = None
        if embedder is not None:
            vectors = embedder.passages([c["title"] + " " + c["text"] for c in chunks])
            np.save(tmp / "embeddings.npy", vectors.astype("float32"))
            embedding = {"model": embedder.spec, "dim": int(vectors.shape[1])}
        manifest = {
            "coalqa_index": INDEX_FORMAT,
            "tokenizer_version": TOKENIZER_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "chunk_files": [{"path": str(f.resolve()), "sha256": h} for f, h in zip(files, hashes)],
            "chunks": len(chunks),
            "fingerprint": chunks_fingerprint(chunks),
            "bm25": BM25_PARAMS,
            "user_dict_terms": len(terms),
            "embedding": embedding,
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


@dataclass
class Index:
    """A loaded index (see :func:`load_index`): the chunks, the BM25 retriever, the tokenizer and, for hybrid
    retrieval, the chunk embeddings with the embedder that made them."""

    path: Path
    manifest: dict
    chunks: list[dict]
    retriever: Any
    tokenizer: Any
    embeddings: Any = None
    embedder: Any = None
    _by_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {c["id"]: i for i, c in enumerate(self.chunks)}

    @property
    def fingerprint(self) -> str:
        """Hash of the indexed chunks' ids and texts (:func:`chunks_fingerprint`)."""
        return self.manifest["fingerprint"]

    def chunk(self, chunk_id: str) -> dict | None:
        """The indexed chunk with this id, or ``None``."""
        i = self._by_id.get(chunk_id)
        return None if i is None else self.chunks[i]

    def bm25_scores(self, question: str):
        """BM25 score of every chunk for ``question`` (numpy float32, shape (chunks,)); all 0 when no token is known."""
        import numpy as np

        ids = self.retriever.get_tokens_ids(tokenize(question, self.tokenizer))
        if not ids:
            return np.zeros(len(self.chunks), dtype="float32")
        return np.asarray(self.retriever.get_scores_from_ids(ids), dtype="float32")

    def search(self, question: str, k: int = 5) -> list[dict]:
        """The ``k`` best chunks for ``question``, best first.

        Returns:
            up to ``k`` hits ``{"rank", "chunk_id", "source", "title", "locator", "text", "score", "bm25"}`` (+
            ``"dense"``, the cosine similarity, with embeddings). ``score`` is the BM25 score (lexical index) or the
            reciprocal-rank-fusion score (hybrid). Chunks sharing no token with the question (BM25 0) are not
            returned by the lexical index; in a hybrid index they can come from the dense ranking, with ``bm25`` 0.

        Raises:
            CoalqaError: an empty question or ``k`` < 1.
        """
        import numpy as np

        if not isinstance(question, str) or not question.strip():
            raise CoalqaError("the question is empty: nothing to retrieve for")
        if not isinstance(k, int) or k < 1:
            raise CoalqaError(f"k must be at least 1 (got {k!r})")
        bm25 = self.bm25_scores(question)
        lexical = [int(i) for i in np.argsort(-bm25, kind="stable") if bm25[i] > 0]
        if self.embeddings is None:
            picked = [(i, float(bm25[i])) for i in lexical[:k]]
            dense = None
        else:
            dense = self.embeddings @ self.embedder.query(question)
            semantic = [int(i) for i in np.argsort(-dense, kind="stable")]
            fused: dict[int, float] = {}
            for ranking in (lexical, semantic):
                for rank, i in enumerate(ranking[:100], 1):
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
            picked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        hits = []
        for rank, (i, score) in enumerate(picked, 1):
            c = self.chunks[i]
            hit = {"rank": rank, "chunk_id": c["id"], "source": c["source"], "title": c["title"], "locator": c["locator"],
                   "text": c["text"], "score": round(score, 6), "bm25": round(float(bm25[i]), 4),
                   **({"ocr": True} if c.get("ocr") else {})}
            if dense is not None:
                hit["dense"] = round(float(dense[i]), 4)
            hits.append(hit)
        return hits

    def sentence_scores(self, question: str, text: str) -> list[tuple[float, str]]:
        """Each sentence of ``text`` (:func:`split_sentences`, wording kept) with how well it matches ``question``:
        the summed :meth:`idf` of the distinct question tokens it holds; in text order."""
        wanted = set(tokenize(question, self.tokenizer))
        return [(sum(self.idf(t) for t in wanted & set(tokenize(s, self.tokenizer))), s) for s in split_sentences(text)]

    def focus(self, question: str, text: str, max_chars: int) -> str:
        """``text`` cut to its sentences best matching ``question`` (:meth:`sentence_scores`), kept in text order,
        at most ``max_chars`` characters (the best sentence always); ``max_chars`` 0 or a short text: unchanged.

        Used for the clauses of grounded prompts (``PromptFormat.clause_chars``): small models copy from a short
        context more reliably and answer faster.
        """
        if max_chars <= 0 or len(text) <= max_chars:
            return text
        scored = self.sentence_scores(question, text)
        order = sorted(range(len(scored)), key=lambda i: (-scored[i][0], i))
        kept, used = set(), 0
        for i in order:
            if kept and (scored[i][0] <= 0 or used + len(scored[i][1]) > max_chars):
                continue
            kept.add(i)
            used += len(scored[i][1])
        return "".join(scored[i][1] for i in sorted(kept))

    def idf(self, token: str) -> float:
        """BM25 inverse document frequency of ``token`` in this index (0 for a token it does not hold)."""
        import math

        j = self.retriever.vocab_dict.get(token)
        if j is None:
            return 0.0
        indptr = self.retriever.scores["indptr"]
        df = int(indptr[j + 1] - indptr[j])
        n = len(self.chunks)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))


def load_index(path: str | Path, *, check_sources: bool = True) -> Index:
    """Load an index folder written by :func:`build_index`.

    Args:
        check_sources: refuse the index when one of its chunk files is missing or changed since it was built.

    Raises:
        CoalqaError: no index at ``path``; an index of another format or tokenizer version, or a stale one
            (each message ends with the ``coalqa index`` command that rebuilds it); unreadable files; an embedding
            model that cannot be loaded.
    """
    import bm25s
    import numpy as np

    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        what = "does not exist" if not path.exists() else f"has no {MANIFEST}: not a coalqa index"
        raise CoalqaError(f"index {path} {what}; build it with `coalqa index CHUNKS.jsonl -o {path}`")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CoalqaError(f"{manifest_file}: not readable JSON ({e}); rebuild the index with `coalqa index CHUNKS.jsonl -o {path}`") from e
    rebuild = rebuild_command(manifest, path)
    if manifest.get("coalqa_index") != INDEX_FORMAT or manifest.get("tokenizer_version") != TOKENIZER_VERSION:
        raise CoalqaError(f"index {path} was built by another coalqa version (format {manifest.get('coalqa_index')}, "
                          f"tokenizer {manifest.get('tokenizer_version')}); rebuild it: {rebuild}")
    if check_sources:
        for f in manifest["chunk_files"]:
            source = Path(f["path"])
            if not source.is_file():
                raise CoalqaError(f"index {path} is stale: its chunk file {source} is gone; rebuild the index from the "
                                  f"chunks you now use: coalqa index CHUNKS.jsonl -o {path}")
            if file_sha256(source) != f["sha256"]:
                raise CoalqaError(f"index {path} is stale: {source} changed since it was indexed ({manifest['created']}); "
                                  f"rebuild it: {rebuild}")
    try:
        chunks = [json.loads(line) for line in (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        retriever = bm25s.BM25.load(str(path / "bm25"), show_progress=False, verbosity=0)
    except (OSError, ValueError) as e:
        raise CoalqaError(f"index {path} is damaged ({e}); rebuild it: {rebuild}") from e
    if len(chunks) != manifest["chunks"]:
        raise CoalqaError(f"index {path} is damaged (chunks.jsonl holds {len(chunks)} chunks, the manifest "
                          f"{manifest['chunks']}); rebuild it: {rebuild}")
    embeddings = embedder = None
    if manifest.get("embedding"):
        from coalqa.retrieval.dense import load_embedder

        embeddings = np.load(path / "embeddings.npy")
        embedder = load_embedder(manifest["embedding"]["model"])
    return Index(path=path, manifest=manifest, chunks=chunks, retriever=retriever,
                 tokenizer=make_tokenizer(path / "userdict.txt"), embeddings=embeddings, embedder=embedder)
