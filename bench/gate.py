"""Benchmark: the support gate of grounded answering — which retrieved clauses count as supporting a question.

Usage::

    python bench/gate.py                       # dev.jsonl + dev2.jsonl against bench/data/offtopic.txt
    python bench/gate.py --min_expanded_score 8 --references other.jsonl
    python bench/gate.py --max_chars 300 --min_score 3 --context_k 1   # the demo's index and gate

Chunks ``../shared/corpus/coal-safety`` (``--max_chars``, default 1,500, as ``bench/retrieval.py``), builds the default index, takes
the top ``--context_k`` hits of every question and applies :func:`coalqa.grounding.supports_question` four
times: **before** — the old gate, ``min_score`` 5 alone (the question's own words' BM25); ``--min_score`` alone;
``--min_score`` or ``--min_expanded_score``; and those or ``--min_coverage`` (defaults: those of grounded answering) (the expansion-weighted score of the whole clause and of its best sentence window, the
lower, for a clause holding at least one of the question's own words). Printed per set: the share of questions
whose source clause (strict: ``source_doc`` holding ``source_span``) is in the top hits and passes the gate, the
share for which any top hit passes; for the off-topic questions (``bench/data/offtopic.txt``, written for this bench:
daily life, other industries, mining-sounding questions no regulation answers) the share abstained (no top hit
passes), and each off-topic question that gets through, with its clause. ``--everyday FILE`` (default
``bench/data/everyday_short.txt``: short everyday questions the regulations do answer, each with a word its clause must
hold) adds, per gate, the share of them with such a clause in the top hits, and with such a clause passing the gate.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from coalqa.corpus import load_documents, split_into_chunks, write_chunks
from coalqa.eval import load_references
from coalqa.eval.grounding import is_source
from coalqa.grounding import supports_question, with_coverage
from coalqa.retrieval import build_index, load_index
from coalqa.retrieval.config import GroundingConfig

OFFTOPIC = REPO / "bench" / "data" / "offtopic.txt"
EVERYDAY = REPO / "bench" / "data" / "everyday_short.txt"


def read_questions(path: Path) -> list[str]:
    """One question a line; blank lines and ``#`` comments skipped."""
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety")
    ap.add_argument("--references", type=Path, action="append")
    ap.add_argument("--offtopic", type=Path, default=OFFTOPIC)
    ap.add_argument("--everyday", type=Path, default=EVERYDAY, help="short everyday questions: 'question<TAB>regex' lines")
    ap.add_argument("--context_k", type=int, default=3)
    ap.add_argument("--max_chars", type=int, default=1500, help="chunk size (the demo: 300, with --min_score 3 --context_k 1)")
    ap.add_argument("--min_score", type=float, default=GroundingConfig().min_score)
    ap.add_argument("--min_expanded_score", type=float, default=GroundingConfig().min_expanded_score)
    ap.add_argument("--min_coverage", type=float, default=GroundingConfig().min_coverage)
    ap.add_argument("--char_unigrams", action="store_true", help="index with character-unigram sentences (README 2b)")
    args = ap.parse_args()
    refs = args.references or [REPO.parent / "shared" / "eval" / f"{n}.jsonl" for n in ("dev", "dev2")]
    gates = {"before (min_score 5 alone)": GroundingConfig(min_score=5.0, min_expanded_score=None, min_coverage=None),
             f"min_score {args.min_score:g} alone": GroundingConfig(min_score=args.min_score, min_expanded_score=None,
                                                                    min_coverage=None),
             f"min_score {args.min_score:g} or min_expanded_score {args.min_expanded_score:g}":
                 GroundingConfig(min_score=args.min_score, min_expanded_score=args.min_expanded_score, min_coverage=None),
             f"… or min_coverage {args.min_coverage:g}"
             + (" (default)" if args.min_coverage == GroundingConfig().min_coverage else ""):
                 GroundingConfig(min_score=args.min_score, min_expanded_score=args.min_expanded_score,
                                 min_coverage=args.min_coverage)}
    documents, _ = load_documents([args.docs])
    chunks = [c for d in documents for c in split_into_chunks(d, args.max_chars)]
    offtopic = read_questions(args.offtopic)
    everyday = [line.split("\t") for line in read_questions(args.everyday)]
    for n, row in enumerate(everyday, 1):
        if len(row) != 2:
            raise SystemExit(f"{args.everyday}: question {n} ({row[0]!r}): expected 'question<TAB>regex'")
    with tempfile.TemporaryDirectory() as tmp:
        write_chunks(chunks, Path(tmp) / "chunks.jsonl")
        build_index([Path(tmp) / "chunks.jsonl"], Path(tmp) / "index", char_unigrams=args.char_unigrams)
        index = load_index(Path(tmp) / "index")
        cov = GroundingConfig()  # hits carry their coverage; gates without min_coverage ignore it

        def top(q: str) -> list[dict]:
            return with_coverage(index, q, index.search(q, args.context_k), cov)

        sets = {p.stem: [(r, top(r["question"])) for r in load_references(p)] for p in refs}
        off = [(q, top(q)) for q in offtopic]
        short = [(re.compile(rx), top(q)) for q, rx in everyday]
    load = os.getloadavg()
    print(f"{len(chunks)} chunks; top {args.context_k} hits per question; load {load[0]:.1f}\n")
    print("| gate | set | source clause passes | any top hit passes | off-topic abstained |\n|---|---|---:|---:|---:|")
    for name, cfg in gates.items():
        passed_off = [(q, h) for q, hits in off for h in hits if supports_question(h, cfg)]
        abstained = len(off) - len({q for q, _ in passed_off})
        for set_name, items in sets.items():
            src = sum(any(is_source(h, r) and supports_question(h, cfg) for h in hits) for r, hits in items)
            anyp = sum(any(supports_question(h, cfg) for h in hits) for _, hits in items)
            print(f"| {name} | {set_name} ({len(items)}) | {src / len(items):.3f} ({src}) | {anyp / len(items):.3f} "
                  f"({anyp}) | {abstained / len(off):.3f} ({abstained} of {len(off)}) |")
    if short:
        found = sum(any(rx.search(h["text"]) for h in hits) for rx, hits in short)
        print(f"\nshort everyday questions ({args.everyday.name}, {len(short)}): an answering clause in the top "
              f"{args.context_k} for {found}\n\n| gate | an answering clause passes | any top hit passes |\n|---|---:|---:|")
        for name, cfg in gates.items():
            ok = sum(any(rx.search(h["text"]) and supports_question(h, cfg) for h in hits) for rx, hits in short)
            anyp = sum(any(supports_question(h, cfg) for h in hits) for _, hits in short)
            print(f"| {name} | {ok / len(short):.3f} ({ok}) | {anyp / len(short):.3f} ({anyp}) |")
    for name, cfg in gates.items():
        print(f"\noff-topic questions answered, {name}:")
        for q, h in [(q, h) for q, hits in off for h in hits if supports_question(h, cfg)]:
            print(f"  {q}  →  《{h['title']}》{h['locator']}  bm25 {h['bm25']:.2f}  expanded {h['expanded']:.2f}  "
                  f"coverage {h.get('coverage', 0.0):.2f}")


if __name__ == "__main__":
    main()
