"""A persistent retrieval index over chunks: BM25 (bm25s) on jieba tokens over whole chunks and over sentence windows,
and on character bigrams over the same sentence windows, questions expanded with regulation wording, optionally fused
with dense embeddings.

``build_index(chunk_files, out_dir)`` writes the index folder; ``load_index(out_dir)`` reads it back, refusing a
stale one; ``Index.search(question, k)`` ranks the chunks. The folder::

    INDEX_DIR/
        index.json      manifest: format and tokenizer versions, the chunk files with their SHA-256, chunk count,
                        BM25 parameters, user-dictionary size, embedding model, fingerprint of the chunks
        chunks.jsonl    the indexed chunks as written (id, source, title, locator, text): what citations show
        userdict.txt    jieba user dictionary of the corpus' own terms (:func:`coalqa.retrieval.text.corpus_terms`)
        bm25/           the bm25s index of whole chunks (sparse score matrix + vocabulary)
        windows/        (sentence_window > 0) the bm25s index of every run of ``sentence_window`` consecutive sentences
                        of each chunk (the sentences alone: the chunk ranking already matches title and heading)
        window_chunks.npy  (sentence_window > 0) the chunk (row of chunks.jsonl) of each window, int32, ascending
        bigram_windows/  (sentence_window > 0 and char_bigrams) the bm25s index of the same windows as character
                        bigrams (:func:`coalqa.retrieval.text.char_bigrams`), row for row those of ``windows/``
        unigram_sentences/  (char_unigrams) the bm25s index of every single sentence as character unigrams
                        (:func:`coalqa.retrieval.text.char_unigrams`), with sentence_chunks.npy (the chunk of each
                        sentence, int32, ascending)
        expansions.txt  (unless --expansions none) the query-expansion table used (:mod:`coalqa.retrieval.expansion`)
        questions/      (--questions QA.json) the bm25s index of the questions asked of each chunk
                        (:mod:`coalqa.retrieval.questions`), with questions.jsonl (chunk id, question) and
                        question_chunks.npy (the chunk of each question, int32, ascending)
        embeddings.npy  (dense/hybrid only) L2-normalised chunk embeddings, float32, shape (chunks, dim)

The folder is built beside ``INDEX_DIR`` under a temporary name and moved into place at the end, so an
interrupted build leaves either the old index or none, never half of one.

Scores: BM25 as in Lucene (Robertson et al.; bm25s ``method="lucene"``, k1 1.5, b 0.75). The question's tokens
(:func:`coalqa.retrieval.text.tokenize`, less :data:`~coalqa.retrieval.text.QUESTION_WORDS`) count 1 each; the
regulation terms its everyday words expand to (:func:`coalqa.retrieval.expansion.expand`) count ``expansion_weight``.
Two rankings come from these weighted BM25 scores: the whole chunks, and the chunks by their best sentence window
(a chunk of 1,500 characters holds many clauses; a question is answered by one or two sentences of one of them).
A third ranks the chunks by their best sentence window matched on character bigrams (the question's, less its question
words, each 1 per occurrence; those of its expansion terms at ``expansion_weight``): it does not depend on where jieba
cuts the question and the clause (README 2b: strict recall@1 dev 0.833 → 0.867, dev2 0.750 → 0.775).
Optionally (``char_unigrams``, off by default) a fourth ranks them by their best single sentence matched on character
unigrams (:data:`~coalqa.retrieval.text.UNIGRAM_STOP` left out): ``喝了两杯酒`` meets ``喝酒``, ``洒`` meets ``洒水``
(README 2b: support recall@1 dev2 0.825 → 0.875, an independent everyday set 0.600 → 0.700; strict dev 0.867 → 0.833).
They are fused by reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009: ``Σ 1 / (60 + rank)`` over each
ranking's top 100); with embeddings the dense ranking is fused the same way. A **title prior** (``title_weight``)
then adds to each found chunk's fused score ``title_weight × Σ idf`` over the question's own words of two or more
characters that its document's title holds (:meth:`Index.title_prior`): a question that names a regulation's subject
(冲击地压, 瓦斯抽采) prefers that regulation's clause when another one states the same rule about as well; at the
default 0.0005 a title word of idf 2 weighs about as much as four places in one ranking (README 2b: strict recall@1
dev 0.867 → 0.900, dev2 0.775 → 0.800). Chunks sharing no token (and no
expansion term) with the question score 0 and are never returned by the lexical rankings (bm25s itself would rank
them, and raise for ``k`` larger than the corpus). Every hit keeps ``bm25``, the plain BM25 score of the question's
own words on the whole chunk (what ``min_score`` of grounded answering is measured in), and ``expanded``, the
expansion-weighted BM25 score of the whole chunk or of its best sentence window, whichever is lower (what
``min_expanded_score`` is measured in), beside the ranking score.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import file_sha256, new_file_mode
from coalqa.retrieval.expansion import BUILTIN, DEFAULT_WEIGHT, expand, read_expansions
from coalqa.retrieval.text import (
    QUESTION_WORDS,
    TOKENIZER_VERSION,
    char_bigrams,
    char_unigrams,
    corpus_terms,
    coverage,
    make_tokenizer,
    normalize_for_index,
    split_sentences,
    tokenize,
    write_user_dict,
)

DEFAULT_TITLE_WEIGHT = 0.0005  # README 2b: dev 0.900 at 0.0003-0.0006 (0.867 at 0 and from 0.0007)
INDEX_FORMAT = 3  # 2: sentence windows + query expansion; 3: + character-bigram windows (older: refused, rebuild command)
MANIFEST = "index.json"
CHUNK_FIELDS = ("id", "source", "title", "locator", "text", "ocr")  # ocr: only on chunks read by OCR
RRF_K = 60  # Cormack et al. 2009
BM25_PARAMS = {"method": "lucene", "k1": 1.5, "b": 0.75}
FUSION_DEPTH = 100  # each ranking's top 100 enter the fusion
DEFAULT_SENTENCE_WINDOW = 2  # README 2b: windows of 1 / 2 / 3 sentences, recall@1 dev 0.767 / 0.833 / 0.800, dev2 0.700 / 0.750 / 0.725


def _head_text(chunk: dict) -> str:
    """What the whole-chunk index matches besides the text: title, locator and heading."""
    return " ".join(str(chunk.get(k) or "") for k in ("title", "locator", "heading"))


def rebuild_command(manifest: dict, out_dir: str | Path) -> str:
    """The ``coalqa index`` command that rebuilds ``out_dir`` from its recorded chunk files."""
    files = " ".join(f["path"] for f in manifest.get("chunk_files", []))
    flags = f" --embedding_model {manifest['embedding']['model']}" if manifest.get("embedding") else ""
    if "sentence_window" in manifest and manifest["sentence_window"] != DEFAULT_SENTENCE_WINDOW:
        flags += f" --sentence_window {manifest['sentence_window']}"
    if manifest.get("sentence_window") and manifest.get("char_bigrams") is False:
        flags += " --char_bigrams false"
    if manifest.get("char_unigrams"):
        flags += " --char_unigrams true"
    if manifest.get("title_weight", DEFAULT_TITLE_WEIGHT) != DEFAULT_TITLE_WEIGHT:
        flags += f" --title_weight {manifest['title_weight']}"
    for q in (manifest.get("questions") or {}).get("files", []):
        flags += f" --questions {q['path']}"
    for r in (manifest.get("questions") or {}).get("references", []):
        flags += f" --references {r}"
    if "expansions" in manifest:
        exp = manifest["expansions"]
        if exp is None:
            flags += " --expansions none"
        else:
            if exp["source"] != "builtin":
                flags += f" --expansions {exp['source']}"
            if exp["weight"] != DEFAULT_WEIGHT:
                flags += f" --expansion_weight {exp['weight']}"
    return f"coalqa index {files} -o {out_dir}{flags}"


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
        h.update(f"{c['id']}\0{c['text']}\0".encode())
    return h.hexdigest()[:16]


def build_index(chunk_files: Sequence[str | Path], out_dir: str | Path, *, embedding_model: str | None = None,
                sentence_window: int = DEFAULT_SENTENCE_WINDOW, char_bigrams: bool = True, char_unigrams: bool = False,
                expansions: str | Path | None = "builtin", expansion_weight: float = DEFAULT_WEIGHT,
                title_weight: float = DEFAULT_TITLE_WEIGHT, questions: Sequence[str | Path] = (),
                references: Sequence[str | Path] = (), progress: bool = False) -> dict:
    """Index the chunks of ``chunk_files`` into the folder ``out_dir`` (layout in the module docstring).

    Args:
        embedding_model: also embed every chunk for hybrid retrieval (:func:`coalqa.retrieval.dense.load_embedder`).
        sentence_window: also rank chunks by their best run of this many consecutive sentences, fused with the
            whole-chunk ranking; 0: whole chunks only.
        char_bigrams: also rank chunks by their best sentence window matched on character bigrams, fused the same
            way (only with ``sentence_window`` > 0; recorded as ``false`` without windows).
        char_unigrams: also rank chunks by their best single sentence matched on character unigrams, fused the same way.
        expansions: ``"builtin"`` (:data:`coalqa.retrieval.expansion.BUILTIN`), a table file, ``None``/``"none"``.
        expansion_weight: weight of an expansion term against a word of the question (0–1).
        title_weight: weight of the title prior (module docstring; 0: none), recorded and used at search time.
        questions: QA files whose questions rank their chunks too (:mod:`coalqa.retrieval.questions`; off: none).
        references: evaluation sets whose questions ``questions`` must not hold (refused, file and row named).

    Returns:
        the manifest written to ``out_dir/index.json``.

    Raises:
        CoalqaError: bad chunk files (see :func:`read_index_chunks`), ``out_dir`` is a file or a non-empty folder
            that is not an index, the embedding model cannot be loaded, a bad expansion table (file and line named),
            ``sentence_window`` < 0, ``expansion_weight`` outside 0–1 or ``title_weight`` < 0.
    """
    table_file, table = _expansion_table(expansions, sentence_window, expansion_weight, title_weight)  # before any work
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and (out_dir.is_file() or any(out_dir.iterdir())):
        raise CoalqaError(f"{out_dir} exists and is not a coalqa index; pick another -o folder (nothing was written)")
    started = time.perf_counter()
    files = [Path(f) for f in chunk_files]
    hashes = [file_sha256(f) if f.is_file() else None for f in files]
    chunks = read_index_chunks(files)
    asked, question_stats = _read_questions(questions, references, chunks)
    embedder = _embedder(embedding_model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(new_file_mode(directory=True))  # mkdtemp makes it 0o700; the index is read by whoever reads the chunks
    try:
        terms = corpus_terms(chunks)
        write_user_dict(terms, tmp / "userdict.txt")
        tokenizer = make_tokenizer(tmp / "userdict.txt")
        # each sentence is tokenised once; a chunk is its head + all its sentences, a window a run of its sentences
        # and each block jieba cuts on its own (a phrase between punctuation) once however often the corpus repeats it
        cache: dict[str, list[str]] = {}
        bigrams = bool(char_bigrams and sentence_window)
        _write_chunk_indexes(tmp, chunks, tokenizer, cache, sentence_window, bigrams, char_unigrams, progress)
        question_record = None
        if asked is not None:
            _write_question_index(tmp, chunks, asked, tokenizer, cache, progress)
            question_record = _question_record(questions, references, question_stats)
        expansion = _write_expansions(tmp, table_file, table, expansion_weight)
        _write_jsonl(tmp / "chunks.jsonl", ({k: c[k] for k in CHUNK_FIELDS if k in c} for c in chunks))
        embedding = _write_embeddings(tmp, chunks, embedder)
        manifest = {
            "coalqa_index": INDEX_FORMAT,
            "tokenizer_version": TOKENIZER_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "chunk_files": [{"path": str(f.resolve()), "sha256": h} for f, h in zip(files, hashes)],
            "chunks": len(chunks),
            "fingerprint": chunks_fingerprint(chunks),
            "bm25": BM25_PARAMS,
            "sentence_window": sentence_window,
            "char_bigrams": bigrams, "char_unigrams": bool(char_unigrams),
            "fusion": {"method": "rrf", "k": RRF_K, "depth": FUSION_DEPTH}, "title_weight": float(title_weight),
            "expansions": expansion,
            "questions": question_record,
            "user_dict_terms": len(terms),
            "embedding": embedding,
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _embedder(embedding_model: str | None):
    """The embedding model of a hybrid index (:func:`coalqa.retrieval.dense.load_embedder`), or ``None``."""
    if not embedding_model:
        return None
    from coalqa.retrieval.dense import load_embedder

    return load_embedder(embedding_model)


def _expansion_table(expansions, sentence_window, expansion_weight, title_weight):
    """Checks :func:`build_index`'s numeric options and reads its expansion table: ``(table_file, table)``, both
    ``None`` when expansion is off."""
    if not isinstance(sentence_window, int) or sentence_window < 0:
        raise CoalqaError(f"sentence_window must be 0 (off) or a number of sentences (got {sentence_window!r})")
    if not 0 <= expansion_weight <= 1:
        raise CoalqaError(f"expansion_weight must be between 0 and 1 (got {expansion_weight!r})")
    if not 0 <= title_weight < math.inf:  # also refuses NaN
        raise CoalqaError(f"title_weight must be a finite number, 0 (off) or more (got {title_weight!r})")
    if expansions is not None and str(expansions).lower() == "none":
        expansions = None
    table_file = None if expansions is None else BUILTIN if str(expansions) == "builtin" else Path(expansions)
    table = read_expansions(table_file) if table_file is not None else None
    return table_file, table


def _read_questions(questions, references, chunks):
    """The questions of ``questions`` per chunk and their stats (:func:`~coalqa.retrieval.questions.read_index_questions`),
    or ``(None, None)`` without QA files."""
    if references and not questions:
        raise CoalqaError("--references lists the evaluation sets whose questions --questions QA files must not hold; "
                          "give --questions QA.json too, or leave --references out")
    if not questions:
        return None, None
    from coalqa.retrieval.questions import read_index_questions

    return read_index_questions(questions, [c["id"] for c in chunks], references)


def _write_chunk_indexes(tmp: Path, chunks, tokenizer, cache, sentence_window: int, bigrams: bool, unigrams: bool,
                         progress: bool) -> None:
    """The whole-chunk BM25 index (``bm25/``) and, with ``sentence_window``, the sentence-window one (``windows/`` and
    ``window_chunks.npy``: the chunk of each window) and, with ``bigrams``, the same windows as character bigrams
    (``bigram_windows/``); with ``unigrams``, :func:`_write_unigram_index`."""
    import bm25s
    import numpy as np

    texts = [split_sentences(c["text"]) for c in chunks]  # each chunk's sentences, wording kept
    if unigrams:
        _write_unigram_index(tmp, texts, progress)

    heads = [tokenize(_head_text(c), tokenizer, cache) for c in chunks]
    sentences = [[tokenize(s, tokenizer, cache) for s in ss] for ss in texts]
    retriever = bm25s.BM25(**BM25_PARAMS)
    retriever.index([h + [t for s in ss for t in s] for h, ss in zip(heads, sentences)], show_progress=progress)
    retriever.save(str(tmp / "bm25"), show_progress=False)
    if not sentence_window:
        return
    windows, owners = [], []
    for i, ss in enumerate(sentences):
        for start in range(max(1, len(ss) - sentence_window + 1)):
            windows.append([t for s in ss[start:start + sentence_window] for t in s])
            owners.append(i)
    window_index = bm25s.BM25(**BM25_PARAMS)
    window_index.index(windows, show_progress=progress)
    window_index.save(str(tmp / "windows"), show_progress=False)
    np.save(tmp / "window_chunks.npy", np.asarray(owners, dtype="int32"))
    if bigrams:  # the same windows, in the same order, as character bigrams
        grams = [[char_bigrams(s) for s in ss] for ss in texts]
        bigram_windows = [[g for s in gs[start:start + sentence_window] for g in s]
                          for gs in grams for start in range(max(1, len(gs) - sentence_window + 1))]
        assert len(bigram_windows) == len(windows)
        bigram_index = bm25s.BM25(**BM25_PARAMS)
        bigram_index.index(bigram_windows, show_progress=progress)
        bigram_index.save(str(tmp / "bigram_windows"), show_progress=False)


def _write_unigram_index(tmp: Path, texts: list[list[str]], progress: bool) -> None:
    """``unigram_sentences/``: every sentence of every chunk (``texts``: each chunk's :func:`split_sentences`) as
    character unigrams, with ``sentence_chunks.npy`` (a chunk without sentences: one empty document)."""
    import bm25s
    import numpy as np

    sentences, owners = [], []
    for i, ss in enumerate(texts):
        for s in ss or [""]:
            sentences.append(char_unigrams(s))
            owners.append(i)
    retriever = bm25s.BM25(**BM25_PARAMS)
    retriever.index(sentences, show_progress=progress)
    retriever.save(str(tmp / "unigram_sentences"), show_progress=False)
    np.save(tmp / "sentence_chunks.npy", np.asarray(owners, dtype="int32"))


def _question_record(questions, references, stats: dict) -> dict:
    """The manifest's ``questions``: the QA files with their SHA-256, the evaluation sets checked, the counts."""
    return {"files": [{"path": str(Path(q).resolve()), "sha256": file_sha256(q)} for q in questions],
            "references": [str(Path(r).resolve()) for r in references], **stats}


def _write_question_index(tmp: Path, chunks, asked, tokenizer, cache, progress: bool) -> None:
    """The BM25 index of the QA files' questions (``questions/``), the chunk of each (``question_chunks.npy``) and
    the questions themselves (``questions.jsonl``)."""
    import bm25s
    import numpy as np

    rows = [(i, q) for i, qs in enumerate(asked) for q in qs]
    question_index = bm25s.BM25(**BM25_PARAMS)
    question_index.index([tokenize(q, tokenizer, cache) for _, q in rows], show_progress=progress)
    question_index.save(str(tmp / "questions"), show_progress=False)
    np.save(tmp / "question_chunks.npy", np.asarray([i for i, _ in rows], dtype="int32"))
    _write_jsonl(tmp / "questions.jsonl", ({"chunk_id": chunks[i]["id"], "question": q} for i, q in rows))


def _write_expansions(tmp: Path, table_file: Path | None, table, weight: float) -> dict | None:
    """A copy of the expansion table (``expansions.txt``) and its manifest entry; ``None`` when expansion is off."""
    if table is None:
        return None
    shutil.copyfile(table_file, tmp / "expansions.txt")
    return {"source": "builtin" if table_file == BUILTIN else str(table_file.resolve()),
            "sha256": file_sha256(tmp / "expansions.txt"), "entries": len(table), "weight": float(weight)}


def _write_embeddings(tmp: Path, chunks, embedder) -> dict | None:
    """``embeddings.npy`` (float32, one row per chunk) and its manifest entry; ``None`` without an embedder."""
    if embedder is None:
        return None
    import numpy as np

    vectors = embedder.passages([c["title"] + " " + c["text"] for c in chunks])
    np.save(tmp / "embeddings.npy", vectors.astype("float32"))
    return {"model": embedder.spec, "dim": int(vectors.shape[1])}


def _write_jsonl(path: Path, rows) -> None:
    """One JSON object per line, UTF-8, Chinese kept as is."""
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replaces ``out_dir`` (if any) by the finished ``tmp`` folder."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _scores(retriever, weights: dict[str, float], n: int):
    """Weighted BM25 score of each of the ``n`` documents of a bm25s ``retriever``: ``Σ weight × BM25(token)`` over
    ``weights`` (token → weight; tokens the index lacks add nothing); numpy float32, shape (n,)."""
    import numpy as np

    out = np.zeros(n, dtype="float32")
    by_weight: dict[float, list[int]] = {}
    for token, w in weights.items():
        j = retriever.vocab_dict.get(token)
        if j is not None and w > 0:
            by_weight.setdefault(w, []).append(j)
    for w, ids in by_weight.items():
        out += w * np.asarray(retriever.get_scores_from_ids(ids), dtype="float32")
    return out


@dataclass
class Index:
    """A loaded index (see :func:`load_index`): the chunks, the BM25 retriever, the tokenizer, the sentence-window
    retriever with the chunk of each window and its character-bigram twin (``bigram_windows``, same rows), the
    single-sentence character-unigram retriever with the chunk of each sentence (optional), the query-expansion table
    and, for hybrid retrieval, the chunk embeddings with the embedder that made them."""

    path: Path
    manifest: dict
    chunks: list[dict]
    retriever: Any
    tokenizer: Any
    embeddings: Any = None
    embedder: Any = None
    windows: Any = None
    window_chunks: Any = None
    bigram_windows: Any = None
    unigram_sentences: Any = None
    sentence_chunks: Any = None
    questions: Any = None
    question_chunks: Any = None
    expansions: dict[str, list[str]] | None = None
    _by_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import numpy as np

        self._by_id = {c["id"]: i for i, c in enumerate(self.chunks)}
        self._pools = {}  # windows/questions of chunk i are contiguous: max-pool with np.maximum.reduceat
        self._term_tokens: dict[str, list[str]] = {}  # see _expansion_tokens
        self._titles: list[tuple[set[str], Any]] | None = None  # see title_prior
        for name, owners in (("windows", self.window_chunks), ("sentences", self.sentence_chunks),
                             ("questions", self.question_chunks)):
            if owners is not None:
                present = np.unique(owners)
                self._pools[name] = (present, np.searchsorted(owners, present))

    @property
    def settings(self) -> dict:
        """How this index ranks (format, BM25 parameters, sentence window, bigram and unigram rankings, fusion, title
        prior weight, expansion table hash and weight, indexed question files): with :attr:`fingerprint` (which
        chunks), what a cached result of a search depends on."""
        return {k: self.manifest.get(k)
                for k in ("coalqa_index", "bm25", "sentence_window", "char_bigrams", "char_unigrams", "fusion",
                          "title_weight", "expansions", "questions")}

    @property
    def title_weight(self) -> float:
        """Weight of the title prior (:meth:`title_prior`); 0 for an index built before it existed."""
        return float(self.manifest.get("title_weight") or 0.0)

    def title_prior(self, tokens: list[str]):
        """What the title prior adds to each chunk's fused score for a question of ``tokens`` (its :func:`tokenize`):
        ``title_weight × Σ idf`` (:meth:`idf`) over the distinct tokens of two or more characters that the chunk's
        document title (its ``title``, else ``source``) holds too, as the index's tokenizer cuts the title; numpy float64,
        shape (chunks,), all 0 when no title holds one."""
        import numpy as np

        if self._titles is None:
            rows: dict[str, list[int]] = {}
            for i, c in enumerate(self.chunks):
                rows.setdefault(str(c.get("title") or c.get("source") or ""), []).append(i)
            self._titles = [(set(tokenize(t, self.tokenizer)), np.asarray(r)) for t, r in rows.items()]
        words = {t for t in tokens if len(t) >= 2}
        prior = np.zeros(len(self.chunks))
        for title_tokens, rows_of_title in self._titles:
            shared = words & title_tokens
            if shared:
                prior[rows_of_title] = self.title_weight * sum(self.idf(t) for t in shared)
        return prior

    @property
    def expansion_weight(self) -> float:
        """Weight of an expansion term against a word of the question (0 without expansion)."""
        return float((self.manifest.get("expansions") or {}).get("weight", 0.0))

    def _expansion_tokens(self, term: str) -> list[str]:
        """:func:`tokenize` of an expansion term, memoised (the table's terms recur across questions)."""
        tokens = self._term_tokens.get(term)
        if tokens is None:
            tokens = self._term_tokens[term] = tokenize(term, self.tokenizer)
        return tokens

    def expansion_terms(self, question: str) -> list[str]:
        """The regulation terms ``question``'s everyday words expand to (:func:`expand`); ``[]`` without expansion."""
        if self.expansions and self.expansion_weight > 0:
            return expand(question, self.expansions, self.tokenizer)
        return []

    def query_weights(self, question: str, terms: list[str] | None = None,
                      tokens: list[str] | None = None) -> dict[str, float]:
        """Token → weight for ``question``: each of its tokens (:func:`tokenize`, less ``QUESTION_WORDS``) 1 per
        occurrence, each expansion term's token not already there :attr:`expansion_weight`. ``terms`` and ``tokens``:
        the expansion terms (:meth:`expansion_terms`) and the question's tokens, if already known."""
        weights: dict[str, float] = {}
        for t in tokenize(question, self.tokenizer) if tokens is None else tokens:
            if t not in QUESTION_WORDS:
                weights[t] = weights.get(t, 0.0) + 1.0
        for term in self.expansion_terms(question) if terms is None else terms:
            for t in self._expansion_tokens(term):
                if t not in weights and t not in QUESTION_WORDS:
                    weights[t] = self.expansion_weight
        return weights

    def bigram_weights(self, question: str, terms: list[str] | None = None) -> dict[str, float]:
        """Character bigram → weight for ``question`` (:func:`char_bigrams`): the question's words less
        ``QUESTION_WORDS`` (jieba's precise cut without HMM, as :func:`expand` cuts: each question word leaves a gap, so no
        bigram spans it) give 1 per
        occurrence, each expansion term's bigram not already there :attr:`expansion_weight`. ``terms`` as in
        :meth:`query_weights`."""
        return self._gram_weights(question, terms, char_bigrams, "")

    def unigram_weights(self, question: str, terms: list[str] | None = None) -> dict[str, float]:
        """Character unigram → weight for ``question`` (:func:`char_unigrams`), built as :meth:`bigram_weights`: the
        question's words less ``QUESTION_WORDS`` 1 per occurrence, each expansion term's unigram not already there
        :attr:`expansion_weight`."""
        return self._gram_weights(question, terms, char_unigrams, " ")

    def _gram_weights(self, question: str, terms: list[str] | None, grams, sep: str) -> dict[str, float]:
        """``grams`` (:func:`char_bigrams` or :func:`char_unigrams`) of ``question``'s words joined by ``sep``, each
        question word replaced by a gap, 1 per occurrence; its expansion terms' ones not already there at
        :attr:`expansion_weight`."""
        words = self.tokenizer.lcut(normalize_for_index(question), HMM=False)
        kept = sep.join(" " if w in QUESTION_WORDS else w for w in words)
        weights: dict[str, float] = {}
        for g in grams(kept):
            weights[g] = weights.get(g, 0.0) + 1.0
        for term in self.expansion_terms(question) if terms is None else terms:
            for g in grams(term):
                weights.setdefault(g, self.expansion_weight)
        return weights

    @property
    def fingerprint(self) -> str:
        """Hash of the indexed chunks' ids and texts (:func:`chunks_fingerprint`)."""
        return self.manifest["fingerprint"]

    def chunk(self, chunk_id: str) -> dict | None:
        """The indexed chunk with this id, or ``None``."""
        i = self._by_id.get(chunk_id)
        return None if i is None else self.chunks[i]

    def bm25_scores(self, question: str, tokens: list[str] | None = None):
        """BM25 score of every chunk for ``question``'s own tokens (``tokens``: its :func:`tokenize`, if already
        known), unexpanded and unweighted (numpy float32, shape (chunks,)); all 0 when no token is known. This is the
        ``bm25`` of a hit and what ``min_score`` compares."""
        counts: dict[str, float] = {}
        for t in tokenize(question, self.tokenizer) if tokens is None else tokens:
            counts[t] = counts.get(t, 0.0) + 1.0
        return _scores(self.retriever, counts, len(self.chunks))

    def ranking_scores(self, question: str, tokens: list[str] | None = None) -> list:
        """The lexical rankings' scores for ``question`` (:meth:`query_weights`; ``tokens``: its :func:`tokenize`, if
        already known): the chunk scores, then (if indexed) each chunk's best sentence-window score, its best
        character-bigram window score (:meth:`bigram_weights`), its best character-unigram sentence score
        (:meth:`unigram_weights`) and its best indexed-question score; numpy float32 arrays of shape (chunks,)."""
        import numpy as np

        terms = self.expansion_terms(question)
        weights = self.query_weights(question, terms, tokens)
        out = [_scores(self.retriever, weights, len(self.chunks))]
        bigram_weights = self.bigram_weights(question, terms) if self.bigram_windows is not None else None
        unigram_weights = self.unigram_weights(question, terms) if self.unigram_sentences is not None else None
        for name, retriever, owners, w in (("windows", self.windows, self.window_chunks, weights),
                                           ("windows", self.bigram_windows, self.window_chunks, bigram_weights),
                                           ("sentences", self.unigram_sentences, self.sentence_chunks, unigram_weights),
                                           ("questions", self.questions, self.question_chunks, weights)):
            if retriever is not None:
                per_doc = _scores(retriever, w, len(owners))
                best = np.zeros(len(self.chunks), dtype="float32")
                present, starts = self._pools[name]
                if len(per_doc):
                    best[present] = np.maximum.reduceat(per_doc, starts)
                out.append(best)
        return out

    def search(self, question: str, k: int = 5) -> list[dict]:
        """The ``k`` best chunks for ``question``, best first.

        Returns:
            up to ``k`` hits ``{"rank", "chunk_id", "source", "title", "locator", "text", "score", "bm25", "expanded"}`` (+
            ``"dense"``, the cosine similarity, with embeddings). ``score`` ranks the hits: the reciprocal-rank-fusion
            score of the chunk, sentence-window and character-bigram window (and unigram, question, dense) rankings
            plus the title prior (:meth:`title_prior`), or the weighted BM25 score when there is one ranking
            (``sentence_window`` 0, no embeddings: no prior either); ``bm25`` is the plain BM25 score of the question's own
            words (:meth:`bm25_scores`); ``expanded`` the weighted BM25 score with expansion terms
            (:meth:`query_weights`) of the whole chunk or, if lower, of its best sentence window (with
            ``bm25``, what the support gate of grounded answering compares: ``min_expanded_score``). Chunks sharing neither a token nor an expansion term with the question are
            not returned by the lexical rankings; they can come from the dense ranking, with ``bm25`` 0; a chunk
            found through expansion terms alone has ``bm25`` 0.

        Raises:
            CoalqaError: an empty question or ``k`` < 1.
        """
        import numpy as np

        if not isinstance(question, str) or not question.strip():
            raise CoalqaError("the question is empty: nothing to retrieve for")
        if not isinstance(k, int) or k < 1:
            raise CoalqaError(f"k must be at least 1 (got {k!r})")
        tokens = tokenize(question, self.tokenizer)
        bm25 = self.bm25_scores(question, tokens)
        lexical = self.ranking_scores(question, tokens)
        rankings = []  # each: chunk rows, best first (ties: lower row first), lexical ones without score-0 chunks
        for s in lexical:
            order = np.argsort(-s, kind="stable")
            rankings.append(order[s[order] > 0])
        dense = None
        if self.embeddings is not None:
            dense = self.embeddings @ self.embedder.query(question)
            rankings.append(np.argsort(-dense, kind="stable"))
        if len(rankings) == 1:  # one lexical ranking: its weighted BM25 score is the score
            picked = [(int(i), float(lexical[0][i])) for i in rankings[0][:k]]
        else:
            fused = np.zeros(len(self.chunks))  # float64, added ranking by ranking: the sums of Σ 1/(RRF_K + rank)
            for ranking in rankings:
                top = ranking[:FUSION_DEPTH]
                fused[top] += 1.0 / (RRF_K + np.arange(1, len(top) + 1))
            if self.title_weight > 0:  # only chunks a ranking found: the prior orders them, it finds none
                fused += np.where(fused > 0, self.title_prior(tokens), 0.0)
            rows = np.flatnonzero(fused)
            best = rows[np.lexsort((rows, -fused[rows]))][:k]  # by fused score, ties: lower row first
            picked = [(int(i), float(fused[i])) for i in best]
        expanded = lexical[0] if self.windows is None else np.minimum(lexical[0], lexical[1])
        hits = []
        for rank, (i, score) in enumerate(picked, 1):
            c = self.chunks[i]
            hit = {"rank": rank, "chunk_id": c["id"], "source": c["source"], "title": c["title"], "locator": c["locator"],
                   "text": c["text"], "score": round(score, 6), "bm25": round(float(bm25[i]), 4),
                   "expanded": round(float(expanded[i]), 4), **({"ocr": True} if c.get("ocr") else {})}
            if dense is not None:
                hit["dense"] = round(float(dense[i]), 4)
            hits.append(hit)
        return hits

    def sentence_scores(self, question: str, text: str) -> list[tuple[float, str]]:
        """Each sentence of ``text`` (:func:`split_sentences`, wording kept) with how well it matches ``question``:
        the summed :meth:`idf` of the distinct question tokens it holds, an expansion term's at its weight
        (:meth:`query_weights`); in text order."""
        wanted = {t: min(w, 1.0) for t, w in self.query_weights(question).items()}
        return [(sum(self.idf(t) * wanted[t] for t in wanted.keys() & set(tokenize(s, self.tokenizer))), s)
                for s in split_sentences(text)]

    def focus(self, question: str, text: str, max_chars: int, gap: str = "") -> str:
        """``text`` cut to its sentences best matching ``question`` (:meth:`sentence_scores`), kept in text order,
        at most ``max_chars`` characters (the best sentence always); ``max_chars`` 0 or a short text: unchanged.

        Used for the clauses of grounded prompts (``PromptFormat.clause_chars``): small models copy from a short
        context more reliably and answer faster. ``gap`` is put where sentences were left out between, before or
        after the kept ones (``coalqa retrieve`` shows "…", so that two kept sentences of different articles are
        not read as one passage); prompts use none.
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
        if not gap:
            return "".join(scored[i][1] for i in sorted(kept))
        out, last = [], -1
        for i in sorted(kept):
            if i != last + 1:
                out.append(gap)
            out.append(scored[i][1])
            last = i
        if last != len(scored) - 1:
            out.append(gap)
        return "".join(out)

    def coverage(self, question: str, text: str) -> float:
        """The share of ``question``'s content characters ``text`` states, directly or through this index's expansion
        table (:func:`coalqa.retrieval.text.coverage`; without expansion, directly only): a float in [0, 1]."""
        return coverage(question, text, self.tokenizer, self.expansions if self.expansion_weight > 0 else None)

    def idf(self, token: str) -> float:
        """BM25 inverse document frequency of ``token`` in this index (0 for a token it does not hold)."""
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
        for f in (manifest.get("questions") or {}).get("files", []):
            if not Path(f["path"]).is_file() or file_sha256(f["path"]) != f["sha256"]:
                raise CoalqaError(f"index {path} is stale: its QA file {f['path']} (--questions) is gone or changed since "
                                  f"it was indexed; rebuild it: {rebuild}")
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
        windows = window_chunks = bigram_windows = expansions = None
        if manifest.get("sentence_window"):
            windows = bm25s.BM25.load(str(path / "windows"), show_progress=False, verbosity=0)
            window_chunks = np.load(path / "window_chunks.npy")
            if manifest.get("char_bigrams"):
                bigram_windows = bm25s.BM25.load(str(path / "bigram_windows"), show_progress=False, verbosity=0)
        unigram_sentences = sentence_chunks = None
        if manifest.get("char_unigrams"):
            unigram_sentences = bm25s.BM25.load(str(path / "unigram_sentences"), show_progress=False, verbosity=0)
            sentence_chunks = np.load(path / "sentence_chunks.npy")
        questions = question_chunks = None
        if manifest.get("questions"):
            questions = bm25s.BM25.load(str(path / "questions"), show_progress=False, verbosity=0)
            question_chunks = np.load(path / "question_chunks.npy")
        if manifest.get("expansions"):
            if file_sha256(path / "expansions.txt") != manifest["expansions"]["sha256"]:
                raise ValueError("expansions.txt differs from the one recorded in index.json")
            expansions = read_expansions(path / "expansions.txt")
    except (OSError, ValueError, CoalqaError) as e:
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
                 tokenizer=make_tokenizer(path / "userdict.txt"), embeddings=embeddings, embedder=embedder,
                 windows=windows, window_chunks=window_chunks, bigram_windows=bigram_windows,
                 unigram_sentences=unigram_sentences, sentence_chunks=sentence_chunks, expansions=expansions,
                 questions=questions, question_chunks=question_chunks)
