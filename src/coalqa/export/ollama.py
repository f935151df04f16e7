"""An Ollama ``Modelfile`` beside the GGUF, prompting the model exactly as it was trained.

Ollama takes safetensors adapters only for Llama/Mistral/Gemma, so a Qwen2 adapter goes to Ollama as a merged
GGUF (:mod:`coalqa.export.llamacpp`). Ollama formats prompts with its own Go ``text/template`` (``TEMPLATE``), not
the chat template inside the GGUF, so the Modelfile carries one written to render the very text
:func:`coalqa.template.render_prompt` renders in training, less the BOS that llama.cpp's tokenizer adds itself
(``tokenizer.ggml.add_bos_token``):

* ``chat`` on DeepSeek-R1-Distill: ``{system}<｜User｜>{question}<｜Assistant｜><think>\\n`` (earlier turns as
  ``<｜User｜>q<｜Assistant｜>a<｜end▁of▁sentence｜>``);
* ``plain``: ``system: {system}\\nuser: {question}\\nresponse: `` (earlier turns ``user: q\\nresponse: a\\n``).

The system prompt is the adapter's training one (``SYSTEM``), sampling follows DeepSeek-R1's recommendation
(temperature 0.6, top_p 0.95), and generation stops at the end-of-sentence token or a new turn marker.
Modelfile reference: Ollama's docs/modelfile.md (FROM, TEMPLATE, SYSTEM, PARAMETER stop/temperature/top_p).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coalqa.errors import CoalqaError
from coalqa.template import PromptFormat, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

R1_USER, R1_ASSISTANT, R1_EOS = "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"

R1_TEMPLATE = (
    "{{- if .System }}{{ .System }}{{ end }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    f'{{{{- if eq .Role "user" }}}}{R1_USER}{{{{ .Content }}}}\n'
    f'{{{{- else if eq .Role "assistant" }}}}{R1_ASSISTANT}{{{{ .Content }}}}{R1_EOS}\n'
    "{{- end }}\n"
    f'{{{{- if and $last (ne .Role "assistant") }}}}{R1_ASSISTANT}<think>\n'
    "{{ end }}\n"
    "{{- end }}"
)
PLAIN_TEMPLATE = (
    "system: {{ .System }}\n"
    '{{ range .Messages }}{{ if eq .Role "user" }}user: {{ .Content }}\n'
    'response: {{ else if eq .Role "assistant" }}{{ .Content }}\n'
    "{{ end }}{{ end }}"
)


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise CoalqaError(f'the {what} contains """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def template_for(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat) -> tuple[str, list[str]]:
    """``(Go template, stop strings)`` for the adapter's prompt format.

    Raises:
        CoalqaError: a ``chat`` format whose chat template is not DeepSeek-R1-Distill's (checked by rendering it:
            the Modelfile would prompt the model differently from training).
    """
    if fmt.template == "plain":
        eos = tokenizer.eos_token
        return PLAIN_TEMPLATE, [s for s in (eos, "user:") if s]
    probe = PromptFormat(template="chat", think=fmt.think, system_prompt="S")
    want = f"{tokenizer.bos_token or ''}S{R1_USER}Q{R1_ASSISTANT}<think>\n"
    try:
        got = render_prompt(tokenizer, "Q", probe)
    except ValueError as e:
        raise CoalqaError(f"no chat template to write an Ollama TEMPLATE from: {e}") from e
    if got != want:
        raise CoalqaError(
            "the Modelfile knows DeepSeek-R1-Distill's chat template and the plain format only; this tokenizer "
            f"renders a prompt as {got!r}. Use the GGUF with llama.cpp (its chat template is inside the file)"
        )
    return R1_TEMPLATE, [R1_EOS, R1_USER, R1_ASSISTANT]


def modelfile(gguf_name: str, tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, temperature: float, top_p: float,
              header: str = "") -> str:
    """The Modelfile text: ``FROM ./gguf_name`` (same folder), ``TEMPLATE``, ``SYSTEM``, stops, sampling.

    Args:
        header: comment lines put at the top (where the file came from, how to create the model).
    """
    template, stops = template_for(tokenizer, fmt)
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"FROM ./{gguf_name}", "", f"TEMPLATE {_quoted(template, 'template')}"]
    if fmt.system_prompt:
        lines += ["", f"SYSTEM {_quoted(fmt.system_prompt, 'system prompt')}"]
    lines.append("")
    for stop in stops:
        lines.append(f'PARAMETER stop "{stop}"')
    lines += [f"PARAMETER temperature {temperature:g}", f"PARAMETER top_p {top_p:g}"]
    return "\n".join(lines) + "\n"
