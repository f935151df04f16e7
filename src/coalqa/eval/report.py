"""Scoring a run and writing its report; comparing runs side by side (Markdown + bar chart).

A report is one JSON file (``REPORT_VERSION``)::

    {"coalqa_eval": 1, "label", "created", "references", "predictions", "model", "tokenization",
     "tokenization_note", "key_fact_note", "overall": {"n", "rouge_l", "bleu4", "key_fact_recall", ...},
     "groups": {"<group>": {...}}, "items": [{"id", "question", "reference_answer", "key_facts",
     "answer", "reasoning", "rouge_l", "bleu4", "key_fact_recall", "facts_found", "facts_missed", ...}]}

plus a short Markdown rendering beside it. ``overall`` averages over items (macro); key-fact recall
averages over the items that have key facts, and ``facts_found``/``facts_total`` count them all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coalqa.errors import CoalqaError
from coalqa.eval.data import answer_text
from coalqa.eval.grounding import grounding_summary
from coalqa.eval.metrics import KEY_FACT_NOTE, TOKENIZATION_NOTE, Tokenization, score_answer
from coalqa.jsonio import write_json_atomic, write_text_atomic
from coalqa.numbers import unit_table_markdown

REPORT_VERSION = 1
METRICS = {  # key → label (all in [0, 1])
    "rouge_l": "ROUGE-L F1",
    "bleu4": "BLEU-4",
    "key_fact_recall": "key-fact recall",
    "judge": "LLM judge (1-5 → 0-1)",
    # grounded runs (coalqa eval --index): see coalqa.eval.grounding
    "citation_accuracy": "citation accuracy",
    "unsupported_number_rate": "answers with unsupported numbers (lower is better)",
    "evidence_key_fact_recall": "key-fact recall of the quoted evidence (not the answer)",
}


def score_items(
    references: list[dict[str, Any]], predictions: list[dict[str, Any]], tokenization: Tokenization = "char"
) -> list[dict[str, Any]]:
    """Per-item scores: each reference with its prediction's answer/reasoning and :func:`score_answer`."""
    items = []
    for ref, pred in zip(references, predictions, strict=True):
        answer, reasoning = answer_text(pred)
        item = dict(ref) | {"answer": answer, "reasoning": reasoning}
        for extra in ("tokens", "seconds", "finished_reasoning", "cut"):
            if extra in pred:
                item[extra] = pred[extra]
        item |= score_answer(answer, ref["reference_answer"], ref.get("key_facts"), tokenization)
        items.append(item)
    return items


def _cut(item: dict[str, Any]) -> bool:
    """An answer the token limit ended (``cut`` from :func:`coalqa.ask.answer`); an empty one counts as empty instead."""
    return bool(item.get("cut")) and bool(item["answer"])


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages of the item scores (see the module docstring); metrics with no values are ``None``."""

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    with_facts = [i for i in items if i.get("key_fact_recall") is not None]
    out: dict[str, Any] = {
        "n": len(items),
        "rouge_l": mean([i["rouge_l"] for i in items]),
        "bleu4": mean([i["bleu4"] for i in items]),
        "key_fact_recall": mean([i["key_fact_recall"] for i in with_facts]),
        "items_with_key_facts": len(with_facts),
        "facts_found": sum(len(i["facts_found"]) for i in with_facts),
        "facts_total": sum(len(i["facts_found"]) + len(i["facts_missed"]) for i in with_facts),
        "empty_answers": sum(1 for i in items if not i["answer"]),
        "cut_answers": sum(1 for i in items if _cut(i)),
    }
    judged = [i["judge_score"] for i in items if i.get("judge_score") is not None]
    if any("judge_score" in i for i in items):
        out["judge"] = mean([(s - 1) / 4 for s in judged])
        out["judged"] = len(judged)
    out |= grounding_summary(items, None)
    return out


def build_report(
    items: list[dict[str, Any]], *, label: str, tokenization: Tokenization, **meta: Any
) -> dict[str, Any]:
    """The report dict: metadata, ``overall``, ``groups`` (by each item's ``group``, if any) and ``items``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item.get("group") is not None:
            groups.setdefault(str(item["group"]), []).append(item)
    return {
        "coalqa_eval": REPORT_VERSION,
        "label": label,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **meta,
        "tokenization": tokenization,
        "tokenization_note": TOKENIZATION_NOTE[tokenization],
        "key_fact_note": KEY_FACT_NOTE,
        "overall": summarize(items),
        "groups": {name: summarize(group) for name, group in groups.items()},
        "items": items,
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _metric_keys(summaries: Sequence[dict[str, Any]]) -> list[str]:
    return [k for k in METRICS if any(s.get(k) is not None for s in summaries)]


def _md_cell(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_markdown(report: dict[str, Any]) -> str:
    """A short Markdown rendering: overall (and per-group) averages, then one line per item."""
    scopes = [("all", report["overall"])] + [(name, s) for name, s in report.get("groups", {}).items()]
    keys = _metric_keys([s for _, s in scopes])
    lines = [
        f"# coalqa eval: {report['label']}",
        "",
        (f"References: `{report.get('references')}` · tokens for ROUGE/BLEU: {report['tokenization_note']} · "
        f"key facts: {report.get('key_fact_note', KEY_FACT_NOTE)} (unit table at the end)."),
        "",
        "| items | n | " + " | ".join(METRICS[k] for k in keys) + " | key facts found | empty answers | cut at the token limit |",
        "|---|---:|" + "---:|" * len(keys) + "---:|---:|---:|",
    ]
    for name, s in scopes:
        lines.append(
            f"| {name} | {s['n']} | " + " | ".join(_fmt(s.get(k)) for k in keys)
            + f" | {s['facts_found']}/{s['facts_total']} | {s['empty_answers']} | {s.get('cut_answers', 0)} |"
        )
    retrieval = report.get("retrieval")
    if retrieval:
        lines += ["", f"Retrieval ({retrieval['n']} references with a source span, index `{report.get('index')}`): "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in retrieval.items() if k != "n") + "."]
        support = report.get("retrieval_support")
        if support:
            lines += ["", "Retrieval, support hits (a chunk of any document stating the same rule): "
                      + ", ".join(f"{k} {_fmt(v)}" for k, v in support.items() if k != "n") + "."]
    if "citation_accuracy" in report["overall"]:
        o = report["overall"]
        lines += ["", (f"Grounding: citation accuracy {_fmt(o['citation_accuracy'])}, answers with numbers no cited clause "
                  f"states {_fmt(o['unsupported_number_rate'])}, abstained {o['abstained']}, key-fact recall of the quoted "
                  f"evidence {_fmt(o['evidence_key_fact_recall'])} (evidence is shown beside the answer and not scored as it).")]
    lines += ["", "| id | ROUGE-L | BLEU-4 | key facts | missed | answer |", "|---|---:|---:|---:|---|---|"]
    for i in report["items"]:
        facts = "–" if i["key_fact_recall"] is None else f"{len(i['facts_found'])}/{len(i['facts_found']) + len(i['facts_missed'])}"
        missed = "、".join(i["facts_missed"] or []) or ""
        answer = ("(cut) " if _cut(i) else "") + i["answer"]
        lines.append(
            f"| {i['id']} | {i['rouge_l']:.3f} | {i['bleu4']:.3f} | {facts} | {_md_cell(missed, 30)} | {_md_cell(answer)} |"
        )
    lines += ["", "## Units matched as equal in key facts (coalqa.numbers)", "", unit_table_markdown()]
    return "\n".join(lines) + "\n"


def report_paths(stem: str | Path) -> dict[str, Path]:
    """Files of a report with path stem ``stem`` (a ``.json``/``.md`` suffix is dropped first):
    ``{"json": STEM.json, "md": STEM.md, "predictions": STEM.predictions.json}`` (the last only when
    ``coalqa eval`` generates the answers itself)."""
    stem = Path(stem)
    if stem.suffix in (".json", ".md"):
        stem = stem.with_suffix("")
    return {"json": Path(f"{stem}.json"), "md": Path(f"{stem}.md"), "predictions": Path(f"{stem}.predictions.json")}


def comparison_paths(stem: str | Path) -> dict[str, Path]:
    """Files of a comparison with path stem ``stem`` (a ``.md``/``.png``/``.json`` suffix is dropped first):
    ``{"md": STEM.md, "png": STEM.png}``."""
    stem = Path(stem)
    if stem.suffix in (".md", ".png", ".json"):
        stem = stem.with_suffix("")
    return {"md": Path(f"{stem}.md"), "png": Path(f"{stem}.png")}


def write_report(report: dict[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (everything) and ``<stem>.md`` (short tables); returns both paths."""
    paths = report_paths(stem)
    json_path, md_path = paths["json"], paths["md"]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(md_path, report_markdown(report))
    write_json_atomic(json_path, report)  # last: an existing .json means the report is complete
    return json_path, md_path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report written by :func:`write_report`.

    Raises:
        CoalqaError: missing file, not JSON, or not a ``coalqa eval`` report.
    """
    path = Path(path)
    if not path.is_file():
        raise CoalqaError(f"report not found: {path}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CoalqaError(f"{path}: not valid JSON ({e.msg})") from e
    if not isinstance(report, dict) or report.get("coalqa_eval") != REPORT_VERSION or "items" not in report:
        raise CoalqaError(f"{path}: not a coalqa eval report (write one with `coalqa eval ... -o REPORT`)")
    return report


def _check_comparable(reports: Sequence[dict[str, Any]]) -> None:
    ids = [[i["id"] for i in r["items"]] for r in reports]
    if any(set(x) != set(ids[0]) for x in ids[1:]):
        diff = sorted(set().union(*map(set, ids)) - set.intersection(*map(set, ids)))
        raise CoalqaError(
            f"the reports score different items (e.g. {', '.join(diff[:10])}); compare runs on the same references"
        )
    if len({r["tokenization"] for r in reports}) > 1:
        raise CoalqaError("the reports use different tokenizations; rerun them with the same --tokenization")


def compare_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """Side-by-side Markdown: averages per run (overall and per group, with the change last − first),
    then each item's key-fact recall and ROUGE-L per run.

    Raises:
        CoalqaError: the reports do not score the same items with the same tokenization.
    """
    _check_comparable(reports)
    labels = [r["label"] for r in reports]
    scopes = ["all"] + [g for g in reports[0].get("groups", {}) if all(g in r.get("groups", {}) for r in reports)]
    summaries = [[r["overall"] if s == "all" else r["groups"][s] for r in reports] for s in scopes]
    keys = _metric_keys([x for row in summaries for x in row])
    two = len(reports) == 2
    head = "| items | n | metric | " + " | ".join(labels) + (" | change |" if two else " |")
    lines = [head, "|---|---:|---|" + "---:|" * (len(labels) + two)]
    for scope, row in zip(scopes, summaries):
        for k in keys:
            values = [s.get(k) for s in row]
            delta = ""
            if two:
                delta = " | –" if None in values else f" | {values[1] - values[0]:+.3f}"
            lines.append(f"| {scope} | {row[0]['n']} | {METRICS[k]} | " + " | ".join(map(_fmt, values)) + delta + " |")
    lines += ["", f"Tokens for ROUGE/BLEU: {reports[0]['tokenization_note']}.", ""]
    per_item = [{i["id"]: i for i in r["items"]} for r in reports]
    lines += [
        "| id | group | " + " | ".join(f"key facts {x}" for x in labels) + " | " + " | ".join(f"ROUGE-L {x}" for x in labels) + " |",
        "|---|---|" + "---:|" * (2 * len(labels)),
    ]
    for item in reports[0]["items"]:
        rows = [p[item["id"]] for p in per_item]
        facts = [
            "–" if r["key_fact_recall"] is None else f"{len(r['facts_found'])}/{len(r['facts_found']) + len(r['facts_missed'])}"
            for r in rows
        ]
        lines.append(
            f"| {item['id']} | {item.get('group') or ''} | " + " | ".join(facts) + " | "
            + " | ".join(f"{r['rouge_l']:.3f}" for r in rows) + " |"
        )
    return "\n".join(lines) + "\n"


def compare_chart(reports: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bar chart (PNG) of the average metrics of each run, overall and per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_comparable(reports)
    scopes = ["all"] + [g for g in reports[0].get("groups", {}) if all(g in r.get("groups", {}) for r in reports)]
    keys = _metric_keys([r["overall"] for r in reports])
    fig, axes = plt.subplots(1, len(scopes), figsize=(4.5 * len(scopes), 4), squeeze=False, sharey=True)
    width = 0.8 / len(reports)
    for ax, scope in zip(axes[0], scopes):
        for j, report in enumerate(reports):
            summary = report["overall"] if scope == "all" else report["groups"][scope]
            values = [summary.get(k) or 0.0 for k in keys]
            xs = [x + (j - (len(reports) - 1) / 2) * width for x in range(len(keys))]
            bars = ax.bar(xs, values, width, label=report["label"])
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        n = (reports[0]["overall"] if scope == "all" else reports[0]["groups"][scope])["n"]
        ax.set_title(f"{scope} (n={n})")
        ax.set_xticks(range(len(keys)), [METRICS[k].replace(" (1-5 → 0-1)", "") for k in keys], fontsize=8)
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("score (0-1)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("coalqa eval: " + " vs ".join(r["label"] for r in reports))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_comparison(reports: Sequence[dict[str, Any]], stem: str | Path) -> tuple[Path, Path, str]:
    """Write ``<stem>.md`` and ``<stem>.png`` comparing ``reports``; returns their paths and the Markdown."""
    paths = comparison_paths(stem)
    text = compare_markdown(reports)
    md_path = paths["md"]
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(f"# coalqa eval: {' vs '.join(r['label'] for r in reports)}\n\n" + text, encoding="utf-8")
    return md_path, compare_chart(reports, paths["png"]), text
