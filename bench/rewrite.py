"""Benchmark: does rewriting a worker's question into regulation wording with an LLM pay? (measured, not in coalqa)

Usage::

    python bench/rewrite.py --model ~/.cache/coalqa/qwen2.5-coder-1.5b-instruct
    python bench/rewrite.py --model ~/.cache/coalqa/qwen2.5-coder-1.5b-instruct --char_unigrams true

Builds the index of ``../shared/corpus/coal-safety`` as ``bench/retrieval.py`` does (1,500-character chunks, today's
defaults, ``--char_unigrams`` as given), asks a local causal LM (a stand-in of ``coalqa.offline``: the query-rewriting
step of an LLM provider, run here) to rewrite every question of dev, dev2 and ``bench/data/dev3..dev5`` into the
wording of the regulations — greedy, at most 80 new tokens, bfloat16 where the CPU has native bf16, else float32 —
and scores strict recall@1 / recall@5 (:func:`coalqa.eval.grounding.is_source`, top 10) for:

- the question as asked (retrieval as is);
- the question and its rewrite searched as one text;
- reciprocal-rank fusion (Σ w / (60 + rank) over each top 100) of the two searches, the rewrite at weight 1 and 0.5;
- the rewrite alone.

Digits are dropped from the rewrite first: a small model writes a plausible clause and invents its numbers, and an
invented number must not pull a clause that states it. Rewrites are kept in ``--cache`` (JSON lines, one per
question id and model), so a rerun only scores; seconds per rewrite are printed (2 shared cores here).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from coalqa.corpus import load_documents, split_into_chunks, write_chunks
from coalqa.eval import load_references
from coalqa.eval.grounding import is_source
from coalqa.retrieval import build_index, load_index

PROMPT = ("下面是煤矿工人用口语提的一个安全问题。请把它改写成煤矿安全规程、规范里的书面用语（用规程里的专业名词），"
          "只输出改写后的一句话。\n问题：{question}")
SETS = [REPO.parent / "shared" / "eval" / "dev.jsonl", REPO.parent / "shared" / "eval" / "dev2.jsonl",
        *(REPO / "bench" / "data" / f"dev{n}.jsonl" for n in (3, 4, 5))]


def rewriter(model_dir: str):
    """``rewrite(question) -> str`` with the chat model in ``model_dir`` (greedy, ≤ 80 new tokens)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coalqa.hardware import choose_dtype

    tok = AutoTokenizer.from_pretrained(model_dir)
    dtype = getattr(torch, choose_dtype("auto", "cpu").name)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    print(f"rewriter: {model_dir} in {dtype}", flush=True)

    def rewrite(question: str) -> str:
        text = tok.apply_chat_template([{"role": "user", "content": PROMPT.format(question=question)}],
                                       tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=80, do_sample=False)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    return rewrite


def fused(lists: list[list[str]], weights: list[float]) -> list[str]:
    """Chunk ids by Σ w / (60 + rank) over ``lists`` (each best first), best first."""
    score: dict[str, float] = {}
    for ids, w in zip(lists, weights):
        for rank, cid in enumerate(ids, 1):
            score[cid] = score.get(cid, 0.0) + w / (60 + rank)
    return sorted(score, key=lambda cid: -score[cid])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a local chat model folder (e.g. a stand-in of coalqa.offline)")
    ap.add_argument("--char_unigrams", default="false", choices=["true", "false"],
                    help="index with character-unigram sentences too (coalqa index --char_unigrams; default false)")
    ap.add_argument("--cache", type=Path, default=Path("rewrites.jsonl"), help="rewrites kept here (JSON lines)")
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety",
                    help="the regulations to index (default ../shared/corpus/coal-safety)")
    args = ap.parse_args()
    model_dir = str(Path(args.model).expanduser())
    cached = {}
    if args.cache.is_file():
        rows = [json.loads(line) for line in args.cache.read_text(encoding="utf-8").splitlines() if line.strip()]
        cached = {r["id"]: r for r in rows if r["model"] == model_dir}
    rewrite, seconds = None, []
    documents, _ = load_documents([args.docs])
    chunks = [c for d in documents for c in split_into_chunks(d, 1500)]
    with tempfile.TemporaryDirectory() as tmp, args.cache.open("a", encoding="utf-8") as cache:
        write_chunks(chunks, Path(tmp) / "chunks.jsonl")
        build_index([Path(tmp) / "chunks.jsonl"], Path(tmp) / "index", char_unigrams=args.char_unigrams == "true")
        index = load_index(Path(tmp) / "index")
        print(f"strict recall@1 / recall@5, character unigrams {args.char_unigrams}:\n\n"
              "| set | questions | as asked | asked + rewrite, one text | RRF, rewrite 1 | RRF, rewrite 0.5 | rewrite alone |\n"
              "|---|---:|---|---|---|---|---|")
        for path in SETS:
            refs = load_references(path)
            ranks: dict[str, list[int | None]] = {}
            for ref in refs:
                if ref["id"] not in cached:
                    rewrite = rewrite or rewriter(model_dir)
                    t0 = time.perf_counter()
                    cached[ref["id"]] = {"id": ref["id"], "model": model_dir, "rewrite": rewrite(ref["question"]),
                                         "seconds": round(time.perf_counter() - t0, 2)}
                    cache.write(json.dumps(cached[ref["id"]], ensure_ascii=False) + "\n")
                    cache.flush()
                seconds.append(cached[ref["id"]]["seconds"])
                asked = ref["question"]
                rewritten = re.sub(r"[0-9０-９.．]+", "", cached[ref["id"]]["rewrite"]) or asked
                a = [h["chunk_id"] for h in index.search(asked, 100)]
                b = [h["chunk_id"] for h in index.search(rewritten, 100)]
                orders = {"as asked": a, "one text": [h["chunk_id"] for h in index.search(f"{asked}。{rewritten}", 100)],
                          "rrf 1": fused([a, b], [1, 1]), "rrf 0.5": fused([a, b], [1, 0.5]), "alone": b}
                for way, ids in orders.items():
                    ranks.setdefault(way, []).append(
                        next((r for r, cid in enumerate(ids[:10], 1) if is_source(index.chunk(cid), ref)), None))
            cells = [f"{sum(r == 1 for r in v) / len(v):.3f} / {sum(r is not None and r <= 5 for r in v) / len(v):.3f}"
                     for v in ranks.values()]
            print(f"| {path.stem} | {len(refs)} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nseconds per rewrite (when made): median {statistics.median(seconds):.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
