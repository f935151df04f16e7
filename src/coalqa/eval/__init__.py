"""Eval stage: score answers against references (character ROUGE-L, BLEU-4, key-fact recall,
optional LLM judge) and compare runs.

>>> refs = load_references("../shared/eval/dev.jsonl")
>>> report = evaluate(refs, load_predictions("results.json"), EvalConfig(), label="tuned")
>>> write_report(report, "tuned")                      # tuned.json + tuned.md
>>> write_comparison([load_report("base.json"), load_report("tuned.json")], "comparison")
"""

from coalqa.eval.config import EvalConfig
from coalqa.eval.data import answer_text, load_predictions, load_references, match_predictions
from coalqa.eval.metrics import (
    bleu4,
    find_key_facts,
    key_fact_recall,
    normalize_for_matching,
    rouge_l,
    score_answer,
    tokenize,
)
from coalqa.eval.report import (
    build_report,
    compare_chart,
    compare_markdown,
    load_report,
    report_markdown,
    summarize,
    write_comparison,
    write_report,
)
from coalqa.eval.run import evaluate, generate_predictions, load_eval_model

__all__ = [
    "EvalConfig",
    "answer_text",
    "bleu4",
    "build_report",
    "compare_chart",
    "compare_markdown",
    "evaluate",
    "find_key_facts",
    "generate_predictions",
    "key_fact_recall",
    "load_eval_model",
    "load_predictions",
    "load_references",
    "load_report",
    "match_predictions",
    "normalize_for_matching",
    "report_markdown",
    "rouge_l",
    "score_answer",
    "summarize",
    "tokenize",
    "write_comparison",
    "write_report",
]
