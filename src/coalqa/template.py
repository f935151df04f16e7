"""The prompt format — the one definition shared by training (``coalqa train``) and inference
(``coalqa ask``, ``coalqa eval``, serving). No other module builds prompts.

A QA pair ``(question, answer)`` becomes token ids in two parts:

* **prompt** = :func:`encode_prompt` — exactly the ids the model is fed at inference;
* **completion** = what the model must learn to generate after it, ending with EOS.

Templates (``PromptFormat.template``):

* ``chat`` (default): the base model's own chat template with a system prompt and the user question,
  ``add_generation_prompt=True``. For DeepSeek-R1-Distill that prompt ends with
  ``<｜Assistant｜><think>\\n`` (see the model's ``tokenizer_config.json``; TRL ships the same template
  as ``trl.chat_template_utils.deepseek_r1_distill_chat_template``).
* ``plain``: the original CoalQA design's text format
  ``system: {system}\\nuser: {input}\\nresponse: {output}`` + EOS.

``<think>`` policy (``PromptFormat.think``) for reasoning models whose prompt opens ``<think>``:

* ``empty`` (default): the target is ``<think>\\n\\n</think>\\n\\n{answer}`` — since the prompt already
  ends with ``<think>\\n``, the completion is ``\\n</think>\\n\\n{answer}`` + EOS, so the trained prompt
  is exactly the inference prompt;
* ``keep``: the data's own ``<think>…</think>`` reasoning is kept (a leading ``<think>`` that the
  prompt already holds is not repeated); rows without one are treated as ``empty``.

Grounded prompts (``coalqa ask/eval --index``, ``coalqa train --index``): the user turn is
``PromptFormat.context_template`` with the retrieved clauses, each written with ``PromptFormat.clause_template``
(:func:`user_message`); both strings are saved with every adapter and every batch of answers, so training and
inference put the clauses into the prompt the same way.

Traps designed out here (each covered by tests): the prompt is tokenised once, by the same code, so
training and inference prompt ids are identical; special tokens of the rendered template are not
added again (one BOS); the completion always ends with the EOS id, also after truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SYSTEM_PROMPT = (
    "你是一个煤矿安全领域的知识达人，你对相关煤矿安全规章规程制度、技术等文档非常熟悉。"
    "请你专业正确地解答用户想问的煤矿安全相关问题。"
)
# A base model served without an adapter gets no system prompt unless one is given: DeepSeek's usage
# recommendations for R1 models (model card of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B) say "avoid adding a
# system prompt; all instructions should be contained within the user prompt", and other chat models then use
# their template's own default. An adapter keeps the system prompt it was trained with.
BARE_BASE_SYSTEM_PROMPT = ""
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# The context block of a grounded prompt. Placeholders: {clauses}, {question}; per clause {n}, {title}, {locator}, {text}.
# Kept plain: with an extra "state the numbers" instruction the 135M stand-in echoed the instruction instead of answering.
CONTEXT_TEMPLATE = "参考条款：\n{clauses}\n\n请依据上述条款回答问题。\n问题：{question}"
CLAUSE_TEMPLATE = "[{n}]《{title}》{locator}：{text}"


class PromptFormat(BaseModel):
    """How a question is turned into a prompt; saved with every adapter and reused at inference."""

    template: Literal["chat", "plain"] = Field("chat", description="prompt template: the model's chat template or the original plain text format")
    think: Literal["empty", "keep"] = Field("empty", description="<think> policy for reasoning models: train an empty reasoning block, or keep the data's own")
    system_prompt: str = Field(SYSTEM_PROMPT, description="system prompt used in training and inference ('' = none)")
    context_template: str = Field(CONTEXT_TEMPLATE, description="grounded prompts: the user turn, with {clauses} and {question}")
    clause_template: str = Field(CLAUSE_TEMPLATE, description="grounded prompts: one clause, with {n}, {title}, {locator}, {text}")
    clause_chars: int = Field(
        0, ge=0, description="grounded prompts: cut each clause to its sentences best matching the question, in order, "
        "up to this many characters (0: the whole clause)",
    )

    @field_validator("context_template", "clause_template")
    @classmethod
    def _placeholders(cls, value: str, info) -> str:
        names = ("clauses", "question") if info.field_name == "context_template" else ("text",)
        for name in names:
            if "{" + name + "}" not in value:
                raise ValueError(f"{info.field_name} must contain {{{name}}}")
        try:
            value.format(clauses="", question="", n=1, title="", locator="", text="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"{info.field_name}: bad placeholder ({e}); write a literal brace as {{{{ or }}}}") from e
        return value


SAVED_FORMAT_FILE = "coalqa_prompt_format.json"  # beside a merged model written by `coalqa export`


def read_saved_format(folder) -> dict:
    """The prompt-format fields recorded in ``folder/coalqa_prompt_format.json`` (``{}`` when there is none).

    ``coalqa export`` writes this file into a merged model folder, so that the merged model is prompted as the
    adapter was trained (``{"prompt_format": {"template", "think", "system_prompt"}, ...}``).

    Raises:
        ValueError: the file exists but is not such a JSON object.
    """
    import json
    from pathlib import Path

    path = Path(str(folder)).expanduser() / SAVED_FORMAT_FILE
    if not path.is_file():
        return {}
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))["prompt_format"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a prompt format record ({e})") from e
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: prompt_format is not an object")  # noqa: TRY004 -- a bad file, as above
    return {k: fields[k] for k in PromptFormat.model_fields if k in fields}


class ExampleTooLong(ValueError):
    """The prompt alone leaves no room for an answer within ``max_length`` tokens."""


def inference_format(trained: PromptFormat | None, system_prompt: str | None = None) -> PromptFormat:
    """The prompt format to answer with: the one an adapter was trained with (``trained``), or for a bare base
    (``None``) the defaults with :data:`BARE_BASE_SYSTEM_PROMPT`; ``system_prompt`` (``""`` = none) replaces
    either's system prompt. Shared by ``coalqa ask``, ``coalqa eval`` and serving."""
    fmt = trained if trained is not None else PromptFormat(system_prompt=BARE_BASE_SYSTEM_PROMPT)
    return fmt if system_prompt is None else fmt.model_copy(update={"system_prompt": system_prompt})


def user_message(question: str, fmt: PromptFormat, context: Sequence[dict] | None = None) -> str:
    """The user turn: ``question`` alone, or (``context`` given, even empty) the context block of ``fmt`` with the
    clauses ``context`` (dicts with ``title``, ``locator``, ``text``), numbered from 1 in the given order."""
    if context is None:
        return question
    clauses = "\n".join(
        fmt.clause_template.format(n=n, title=c.get("title", ""), locator=c.get("locator", ""), text=" ".join(c.get("text", "").split()))
        for n, c in enumerate(context, 1)
    )
    return fmt.context_template.format(clauses=clauses or "（无）", question=question)


def _messages(question: str, fmt: PromptFormat, history: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages + [{"role": "user", "content": question}]


def render_prompt(tokenizer: PreTrainedTokenizerBase, question: str, fmt: PromptFormat, history: Sequence[tuple[str, str]] = (),
                  context: Sequence[dict] | None = None) -> str:
    """The prompt as text (for display and logging); :func:`encode_prompt` gives the ids to use."""
    question = user_message(question, fmt, context)
    if fmt.template == "plain":
        turns = "".join(f"user: {q}\nresponse: {a}\n" for q, a in history)
        return f"system: {fmt.system_prompt}\n{turns}user: {question}\nresponse: "
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no chat template; use template 'plain'"
        )
    return tokenizer.apply_chat_template(_messages(question, fmt, history), add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, question: str, fmt: PromptFormat, history: Sequence[tuple[str, str]] = (),
                  context: Sequence[dict] | None = None) -> list[int]:
    """Token ids fed to the model to answer ``question`` (after optional earlier turns ``history``; with the
    retrieved clauses ``context`` in the user turn, see :func:`user_message`).

    Returns:
        list of ids. ``chat``: the rendered chat template tokenised without adding special tokens
        (the template writes its own BOS); ``plain``: the text format tokenised with the tokenizer's
        own special tokens (one BOS for R1-Distill).
    """
    text = render_prompt(tokenizer, question, fmt, history, context)
    return tokenizer(text, add_special_tokens=fmt.template == "plain")["input_ids"]


def prompt_opens_think(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat) -> bool:
    """True when the inference prompt ends inside an opened ``<think>`` block (R1-Distill's chat template)."""
    return fmt.template == "chat" and render_prompt(tokenizer, "?", fmt).rstrip("\n").endswith(THINK_OPEN)


def completion_text(answer: str, fmt: PromptFormat, opens_think: bool) -> str:
    """The text the model learns to generate after the prompt (EOS not included)."""
    if not opens_think:
        return answer
    if fmt.think == "keep" and answer.lstrip().startswith(THINK_OPEN) and THINK_CLOSE in answer:
        rest = answer.lstrip()[len(THINK_OPEN):]
        return rest.removeprefix("\n")
    return f"\n{THINK_CLOSE}\n\n{answer}"


def encode_example(
    tokenizer: PreTrainedTokenizerBase, question: str, answer: str, fmt: PromptFormat, max_length: int | None = None,
    context: Sequence[dict] | None = None,
) -> dict[str, list[int]]:
    """Tokenise one QA pair for supervised fine-tuning (with retrieved clauses ``context`` in the prompt, if given).

    Returns:
        ``{"input_ids": [...], "completion_mask": [...]}``, equal lengths ``L <= max_length``.
        ``input_ids = encode_prompt(...) + completion ids + [eos_token_id]``; ``completion_mask`` is 0
        on prompt tokens and 1 on completion tokens and the final EOS (the tokens that get a loss).
        If too long, the completion is cut and the EOS re-appended, so EOS is always the last token.

    Raises:
        ExampleTooLong: the prompt leaves fewer than 2 tokens for the completion.
        ValueError: the tokenizer has no EOS token.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos_token_id; cannot mark the end of an answer")
    prompt = encode_prompt(tokenizer, question, fmt, context=context)
    completion = tokenizer(completion_text(answer, fmt, prompt_opens_think(tokenizer, fmt)), add_special_tokens=False)[
        "input_ids"
    ]
    if max_length is not None:
        room = max_length - len(prompt) - 1
        if room < 1:
            raise ExampleTooLong(f"prompt is {len(prompt)} tokens, max_length is {max_length}")
        completion = completion[:room]
    ids = prompt + completion + [tokenizer.eos_token_id]
    return {"input_ids": ids, "completion_mask": [0] * len(prompt) + [1] * (len(completion) + 1)}


def split_reasoning(generated: str, opens_think: bool) -> tuple[str, str, bool]:
    """Split decoded model output into ``(reasoning, answer, finished_reasoning)``.

    R1-Distill's output contains ``</think>`` without an opening ``<think>`` (it sits in the prompt).
    If the prompt opened a think block and no ``</think>`` was generated (cut by the token limit),
    everything is reasoning, the answer is ``""`` and ``finished_reasoning`` is False.
    """
    text = generated.strip()
    if THINK_CLOSE in text:
        reasoning, answer = text.split(THINK_CLOSE, 1)
        reasoning = reasoning.strip()
        if reasoning.startswith(THINK_OPEN):
            reasoning = reasoning[len(THINK_OPEN):].strip()
        return reasoning, answer.strip(), True
    if text.startswith(THINK_OPEN) or opens_think:
        return text.removeprefix(THINK_OPEN).strip(), "", False
    return "", text, True



def hold_back_partial(text: str, marker: str) -> str:
    """``text`` without a trailing proper prefix of ``marker`` (``"abc</th"`` → ``"abc"`` for ``</think>``)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return text[:-k]
    return text


def knows_think(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when ``</think>`` is one token of ``tokenizer`` (a reasoning model's vocabulary, e.g. R1-Distill)."""
    return THINK_CLOSE in tokenizer.get_vocab()


def split_reasoning_so_far(generated: str, opens_think: bool, may_think: bool) -> tuple[str, str]:
    """``(reasoning, answer)`` of output still being generated, for streaming it piece by piece.

    Each part is a prefix of what :func:`split_reasoning` returns once the output is complete, so the pieces a
    server sends, joined, equal the complete reply. What is not certain yet is held back: a trailing piece that
    may be the start of ``<think>``/``</think>``, and trailing whitespace (the final parts are stripped).

    Args:
        opens_think: the prompt opened ``<think>`` (:func:`prompt_opens_think`): the output is reasoning until
            ``</think>``.
        may_think: the model may write reasoning closed by a ``</think>`` it never opened (a reasoning model,
            :func:`knows_think`, under a prompt that does not open it, e.g. R1-Distill with ``template: plain``):
            then nothing is certain until ``</think>`` comes (or the output ends), and nothing is released before.
    """
    text = generated.lstrip()
    if THINK_OPEN.startswith(text):  # "", "<", "<thi": nothing yet, or the start of <think>
        return "", ""
    if opens_think or text.startswith(THINK_OPEN):
        text = text.removeprefix(THINK_OPEN)
        if THINK_CLOSE in text:
            reasoning, answer = text.split(THINK_CLOSE, 1)
            return reasoning.strip(), answer.strip()
        return hold_back_partial(text, THINK_CLOSE).strip(), ""
    if THINK_CLOSE in text:
        reasoning, answer = text.split(THINK_CLOSE, 1)
        return reasoning.strip(), answer.strip()
    if may_think:
        return "", ""
    return "", hold_back_partial(text, THINK_CLOSE).rstrip()
