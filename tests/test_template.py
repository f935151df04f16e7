"""The shared prompt format, checked with the real R1-Distill tokenizer (rebuilt offline)."""

from __future__ import annotations

import pytest

from coalqa.offline import R1_BOS_ID, R1_EOS_ID
from coalqa.template import (
    SYSTEM_PROMPT,
    ExampleTooLong,
    PromptFormat,
    encode_example,
    encode_prompt,
    prompt_opens_think,
    render_prompt,
    split_reasoning,
)

Q = "矿井主要排水设备中，工作水泵的能力应当在多少小时内排出矿井24h的正常涌水量？"
A = "工作水泵的能力，应当能在20h内排出矿井24h的正常涌水量（包括充填水及其他用水）。"


def test_chat_prompt_is_r1_generation_prompt(r1_tokenizer) -> None:
    fmt = PromptFormat()
    text = render_prompt(r1_tokenizer, Q, fmt)
    assert text == f"<｜begin▁of▁sentence｜>{SYSTEM_PROMPT}<｜User｜>{Q}<｜Assistant｜><think>\n"
    ids = encode_prompt(r1_tokenizer, Q, fmt)
    assert ids.count(R1_BOS_ID) == 1 and ids[0] == R1_BOS_ID
    assert r1_tokenizer.decode(ids) == text
    assert prompt_opens_think(r1_tokenizer, fmt)


def test_example_prompt_part_equals_inference_prompt(r1_tokenizer) -> None:
    fmt = PromptFormat()
    ex = encode_example(r1_tokenizer, Q, A, fmt)
    prompt = encode_prompt(r1_tokenizer, Q, fmt)
    n = len(prompt)
    assert ex["input_ids"][:n] == prompt
    assert ex["completion_mask"] == [0] * n + [1] * (len(ex["input_ids"]) - n)
    assert ex["input_ids"][-1] == R1_EOS_ID and ex["input_ids"].count(R1_BOS_ID) == 1
    full = r1_tokenizer.decode(ex["input_ids"])
    assert full.endswith(f"<｜Assistant｜><think>\n\n</think>\n\n{A}<｜end▁of▁sentence｜>")


def test_truncated_example_keeps_eos(r1_tokenizer) -> None:
    fmt = PromptFormat()
    n = len(encode_prompt(r1_tokenizer, Q, fmt))
    ex = encode_example(r1_tokenizer, Q, A * 20, fmt, max_length=n + 10)
    assert len(ex["input_ids"]) == n + 10
    assert ex["input_ids"][-1] == R1_EOS_ID and ex["completion_mask"][-1] == 1
    assert sum(ex["completion_mask"]) == 10
    with pytest.raises(ExampleTooLong):
        encode_example(r1_tokenizer, Q, A, fmt, max_length=n)


def test_think_keep_uses_data_reasoning(r1_tokenizer) -> None:
    fmt = PromptFormat(think="keep")
    ex = encode_example(r1_tokenizer, Q, "<think>\n查第三十八条。\n</think>\n\n" + A, fmt)
    assert r1_tokenizer.decode(ex["input_ids"]).endswith(f"<think>\n查第三十八条。\n</think>\n\n{A}<｜end▁of▁sentence｜>")
    no_reasoning = encode_example(r1_tokenizer, Q, A, fmt)
    assert no_reasoning == encode_example(r1_tokenizer, Q, A, PromptFormat())


def test_plain_template_is_original_format(r1_tokenizer) -> None:
    fmt = PromptFormat(template="plain")
    ex = encode_example(r1_tokenizer, Q, A, fmt)
    assert not prompt_opens_think(r1_tokenizer, fmt)
    assert ex["input_ids"].count(R1_BOS_ID) == 1 and ex["input_ids"][-1] == R1_EOS_ID
    assert r1_tokenizer.decode(ex["input_ids"], skip_special_tokens=True) == f"system: {SYSTEM_PROMPT}\nuser: {Q}\nresponse: {A}"
    assert ex["input_ids"][: sum(1 for m in ex["completion_mask"] if m == 0)] == encode_prompt(r1_tokenizer, Q, fmt)


def test_history_turns_are_rendered(r1_tokenizer) -> None:
    text = render_prompt(r1_tokenizer, "第二问", PromptFormat(), history=[("第一问", "第一答")])
    assert text.endswith("<｜User｜>第一问<｜Assistant｜>第一答<｜end▁of▁sentence｜><｜User｜>第二问<｜Assistant｜><think>\n")


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        ("\n</think>\n\n答案20h。", ("", "答案20h。", True)),
        ("先想一想。\n</think>\n\n答案。", ("先想一想。", "答案。", True)),
        ("<think>想</think>答", ("想", "答", True)),
        ("想到一半被截断", ("想到一半被截断", "", False)),
    ],
)
def test_split_reasoning(generated: str, expected: tuple) -> None:
    assert split_reasoning(generated, opens_think=True) == expected


def test_split_reasoning_without_think_prompt() -> None:
    assert split_reasoning("直接回答。", opens_think=False) == ("", "直接回答。", True)
