"""The question-generation prompt: an editable template file plus a version for the run summary.

Templates are plain text (UTF-8, GBK, UTF-16: the encoding is detected) with ``{text}`` (the chunk) and optionally ``{max_question_chars}``,
``{max_answer_chars}``, ``{min_pairs}``, ``{max_pairs}``. Only these exact tokens are substituted, so
literal braces (the JSON example) need no escaping. The built-in ``prompts/qa_v1.txt`` follows the
original CoalQA design (GLM-4 asked for 10–20 ``{"input", "output"}`` pairs per text); to change it,
copy it, edit, and pass ``--prompt FILE``: the summary then records the new version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from coalqa.errors import CoalqaError
from coalqa.textio import read_text_file

BUILTIN = Path(__file__).parent / "prompts" / "qa_v1.txt"
PLACEHOLDERS = ("text", "max_question_chars", "max_answer_chars", "min_pairs", "max_pairs")


@dataclass(frozen=True)
class Prompt:
    """A loaded template: ``name`` (file stem), ``version`` (``name@sha256[:12]``), ``template`` text."""

    name: str
    version: str
    template: str
    path: str


def load_prompt(path: str | Path | None = None) -> Prompt:
    """Read a template (default: the built-in ``qa_v1.txt``).

    Raises:
        CoalqaError: the file is missing, not text (any common encoding is detected), or lacks the ``{text}`` placeholder.
    """
    p = Path(path) if path else BUILTIN
    template = read_text_file(p, "prompt")
    if "{text}" not in template:
        raise CoalqaError(f"prompt file {p} has no {{text}} placeholder for the chunk text")
    digest = hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]
    return Prompt(name=p.stem, version=f"{p.stem}@{digest}", template=template, path=str(p))


def render_prompt(prompt: Prompt, text: str, **values: int) -> str:
    """Fill the template: ``{text}`` with the chunk text and each ``{key}`` in ``values``.

    The chunk text is substituted last, so braces inside it are never interpreted.
    """
    out = prompt.template
    for key, value in values.items():
        out = out.replace("{" + key + "}", str(value))
    head, _, tail = out.partition("{text}")
    return head + text + tail.replace("{text}", text)
