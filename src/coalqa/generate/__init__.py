"""Generate stage: corpus chunks → QA pairs (``QAdata_all.json``), by LLM or offline.

>>> cfg = GenerateConfig(provider="clause")
>>> summary = run_generate(load_chunks(Path("chunks.jsonl")), "QAdata_all.json", cfg)

The LLM client it calls (:func:`coalqa.llm.make_chat_client`) lives in :mod:`coalqa.llm`, shared with eval's judge.
"""

from coalqa.generate.clause import clause_pairs, fact_pairs, quantities, split_text
from coalqa.generate.command import load_chunks
from coalqa.generate.config import GenerateConfig
from coalqa.generate.dedup import make_deduper, normalize_for_dedup
from coalqa.generate.parse import parse_pairs
from coalqa.generate.prompt import load_prompt, render_prompt
from coalqa.generate.run import build_dataset, run_generate
from coalqa.generate.validate import check_pair, is_refusal

__all__ = [
    "GenerateConfig",
    "build_dataset",
    "check_pair",
    "clause_pairs",
    "fact_pairs",
    "is_refusal",
    "load_chunks",
    "load_prompt",
    "make_deduper",
    "normalize_for_dedup",
    "parse_pairs",
    "quantities",
    "render_prompt",
    "run_generate",
    "split_text",
]
