"""Benchmark: wall and CPU seconds of the offline ``clause`` generator over the whole real corpus.

Usage: ``python bench/generate_clause.py [--max_chars 1500] [--repeat 3]``. Chunks every file of the real corpus
(``../shared/corpus/coal-safety`` through ``coalqa.corpus``), then runs ``coalqa generate --provider clause``'s
entry point (:func:`coalqa.generate.run_generate`, every clause kind) ``--repeat`` times into a temporary folder.
Prints chunks, pairs, rejected candidates, and per run the wall and CPU seconds and pairs/s, with the load average
(the figure depends on what else the machine runs). This replaces the 30-second limit a unit test used to assert.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from coalqa.corpus import load_documents, split_into_chunks
from coalqa.generate import GenerateConfig, run_generate

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety")
    ap.add_argument("--max_chars", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    docs, _ = load_documents([args.corpus])
    chunks = [asdict(c) for d in docs for c in split_into_chunks(d, max_chars=args.max_chars)]
    walls, cpus = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "QAdata_all.json"
            w0, c0 = time.monotonic(), time.process_time()
            summary = run_generate(chunks, out, GenerateConfig(provider="clause"), console=Console(file=io.StringIO()))
            walls.append(time.monotonic() - w0)
            cpus.append(time.process_time() - c0)
            pairs = len(json.loads(out.read_text(encoding="utf-8")))
    wall = statistics.median(walls)
    print(json.dumps({
        "documents": len(docs), "chunks": len(chunks), "pairs": pairs,
        "rejected": summary["pairs"].get("rejected_by_reason", {}),
        "wall_s": [round(w, 2) for w in walls], "cpu_s": [round(c, 2) for c in cpus],
        "median_wall_s": round(wall, 2), "pairs_per_s": round(pairs / wall, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
