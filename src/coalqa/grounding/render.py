"""The console rendering of a grounded answer's provenance (rich markup), for ``coalqa ask`` and the demo's panels."""

from __future__ import annotations

NOT_GROUNDED = "[yellow]⚠ 未引用任何条款：此回答来自模型记忆，未经规程核对 / not grounded: answered from memory[/]"


def provenance_lines(result: dict, *, compact: bool = False) -> list[str]:
    """Rich-markup lines for a grounded record (:func:`coalqa.grounding.answer_grounded`): the abstention text alone
    when it abstained; else (with ``compact`` off) a warning when no clause was cited, then one ``[n] 《title》locator``
    line per citation, the evidence sentences quoted verbatim, and the numbers no cited clause states.

    ``compact``: the demo's panel form, indented, without sources, scores or the not-grounded warning, English labels.
    Model and clause text are escaped (never read as markup).
    """
    from rich.markup import escape

    if result.get("abstained"):
        return [f"[yellow]{escape(result['answer'])}[/]"]
    lines = [] if compact or result.get("grounded") else [NOT_GROUNDED]
    for n, c in enumerate(result.get("citations") or [], 1):
        ocr = " [yellow]（扫描件 OCR 识别，请核对原件 / read by OCR）[/]" if c.get("ocr") else ""
        cited = f"[cyan]\\[{n}] 《{escape(c['title'])}》{escape(c['locator'])}[/]{ocr}"
        lines.append(f"  {cited}" if compact else f"{cited} [dim]({escape(c['source'])}, score {c['score']:.3g})[/]")
    for e in result.get("evidence") or []:
        lines.append(f"  [dim]原文:[/] {escape(e['text'])}" if compact else
                     f"[dim]  原文 《{escape(e['title'])}》{escape(e['locator'])}：[/]{escape(e['text'])}")
    if result.get("unsupported_numbers"):
        numbers = escape("、".join(result["unsupported_numbers"]))
        lines.append(f"  [bold red]⚠ not in the cited clauses: {numbers}[/]" if compact else
                     f"[bold red]⚠ 以下数值在所引条款中找不到，请以规程原文为准 / numbers no cited clause states: {numbers}[/]")
    return lines
