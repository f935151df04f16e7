"""Constrained decoding of numbers (``coalqa.ask.constrain``): a grounded answer writes only its clauses' numbers.

The model is the tiny random Qwen2 with its output layer rewritten to prefer digits (:func:`_digit_lover`): left free,
it writes numbers no clause holds, so every test below could fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SMALL_CHUNKS

from coalqa.ask import AskConfig, answer, load_model, stream_answer
from coalqa.ask.constrain import clause_numbers, token_allowed
from coalqa.grounding import answer_grounded
from coalqa.numbers import NUMBER_TOKEN, number_tokens
from coalqa.retrieval import load_index
from coalqa.template import PromptFormat

CLAUSES = {c["id"]: c for c in SMALL_CHUNKS}
LAMP = [CLAUSES["c-lamp"]]  # 11h, 第四百七十一条
GAS = [CLAUSES["c-gas"], CLAUSES["c-fan"]]  # 1. 2 次 2. 3 次 3.; 5.3.2, 10min, 40%
QUESTIONS = ["矿灯最少要能用多久？", "高瓦斯矿井每班查几次甲烷？", "反风要在几分钟内完成？"]
CONTEXTS = [LAMP, GAS, [CLAUSES["c-fan"]]]
GREEDY = {"temperature": 0, "max_new_tokens": 24, "batch_size": 3}


def test_token_rules_close_open_and_decimal_runs() -> None:
    allowed = frozenset({"11", "0.75", "3", "6.2.1"})
    prefixes = frozenset(n[:k] for n in allowed for k in range(1, len(n) + 1))
    ok = lambda text, piece: token_allowed(text, piece, allowed, prefixes)
    assert ok("至少", "1") and ok("至少1", "1") and ok("至少11", "h")
    assert not ok("至少1", "2")  # 12: not a clause number
    assert not ok("至少", "2")  # no allowed number begins with 2
    assert ok("浓度", "0") and ok("浓度0", ".") and ok("浓度0.", "7") and ok("浓度0.7", "5") and ok("浓度0.75", "%")
    assert not ok("浓度0.7", "%")  # 0.7 closed: not a clause number
    assert ok("每班3", ".") and ok("按", "6") and ok("按6.2", ".") and not ok("按6.2", "，")
    assert not ok("第", "18日") and ok("第", "11日")  # a token holding digits and text: the run it closes is checked
    assert frozenset(number_tokens("风量３０ｍ３／ｓ，见6.2.1。")) == {"30", "3", "6.2.1"}


def test_clause_numbers_are_those_the_prompt_shows_without_the_question() -> None:
    fmt = PromptFormat(clause_chars=0)
    assert clause_numbers(fmt, LAMP) == {"1", "11"}  # [1] and 11h; 第四百七十一条 is written in Chinese numerals
    assert clause_numbers(fmt, None) is None and clause_numbers(fmt, []) is None
    both = clause_numbers(fmt, GAS)
    assert {"2", "3", "5.3.2", "10", "40"} <= both and "12" not in both


def _digit_lover(base: Path, out: Path) -> Path:
    """Save the tiny Qwen2 with every output row but the ten digits' zeroed: it writes digits, freely."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[digits] = torch.randn(10, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 3
    model.lm_head = head
    model.config.tie_word_embeddings = False
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, tiny_qwen2_dir):
    """The digit lover, prompted in the plain format (R1's chat template opens a <think> block it would never close)."""
    import dataclasses

    model = load_model(model_name_or_path=str(_digit_lover(tiny_qwen2_dir, tmp_path_factory.mktemp("digit-lover"))),
                       use_adapter=False, dtype="float32")
    return dataclasses.replace(model, fmt=PromptFormat(template="plain"))


def _runs(text: str) -> set[str]:
    import unicodedata

    return set(NUMBER_TOKEN.findall(unicodedata.normalize("NFKC", text)))


@pytest.mark.slow
def test_grounded_answers_write_only_their_clauses_numbers_batched_one_by_one_and_streamed(loaded) -> None:
    free = answer(loaded, QUESTIONS, AskConfig(**GREEDY, numbers_from_clauses=False), progress=False, contexts=CONTEXTS)
    allowed = [clause_numbers(loaded.fmt, c) for c in CONTEXTS]
    assert all(_runs(r["answer"]) - a for r, a in zip(free, allowed)), [r["answer"] for r in free]  # left free: invents
    cfg = AskConfig(**GREEDY)
    assert cfg.numbers_from_clauses  # the default
    held = answer(loaded, QUESTIONS, cfg, progress=False, contexts=CONTEXTS)
    for r, a in zip(held, allowed):
        assert r["answer"] and _runs(r["answer"]) and _runs(r["answer"]) <= a, (r["answer"], a)
    one_by_one = [answer(loaded, [q], cfg.model_copy(update={"batch_size": 1}), progress=False, contexts=[c])[0]
                  for q, c in zip(QUESTIONS, CONTEXTS)]
    assert [r["answer"] for r in one_by_one] == [r["answer"] for r in held]
    stream = stream_answer(loaded, QUESTIONS[1], cfg, context=CONTEXTS[1])
    assert "".join(stream) == held[1]["answer"] == stream.result()["answer"]
    plain = answer(loaded, QUESTIONS[:1], cfg, progress=False)[0]  # no clauses: nothing to hold it to
    assert _runs(plain["answer"]) - {"1", "11"}


@pytest.mark.slow
def test_answer_grounded_holds_numbers_to_the_cited_clauses(loaded, small_index) -> None:
    index = load_index(small_index)
    q = "灯房发给下井人员的矿灯，最少要保证能连续正常使用多长时间？"
    cfg = AskConfig(temperature=0, max_new_tokens=24, min_score=1.0, context_k=1)
    held = answer_grounded(loaded, index, [q], cfg, progress=False)[0]
    free = answer_grounded(loaded, index, [q], cfg.model_copy(update={"numbers_from_clauses": False}), progress=False)[0]
    assert held["citations"][0]["chunk_id"] == free["citations"][0]["chunk_id"] == "c-lamp"
    assert free["unsupported_numbers"], free["answer"]  # the number check catches what the free model invents
    assert _runs(held["answer"]) and _runs(held["answer"]) <= {"1", "11"}, held["answer"]
    assert held["unsupported_numbers"] == []


@pytest.mark.slow
def test_serve_engine_holds_numbers_to_the_clauses_as_coalqa_ask_does(loaded) -> None:
    import asyncio

    from coalqa.serve.config import ServeConfig
    from coalqa.serve.engine import LocalEngine
    from coalqa.serve.protocol import Turn

    cfg = AskConfig(**GREEDY)
    want = [r["answer"] for r in answer(loaded, QUESTIONS, cfg, progress=False, contexts=CONTEXTS)]
    engine = LocalEngine(loaded, ServeConfig(batch_size=3, batch_window_ms=200))

    async def ask_all() -> list[str]:
        gens = [await engine.submit(Turn(question=q, temperature=0, max_tokens=GREEDY["max_new_tokens"]), context=c)
                for q, c in zip(QUESTIONS, CONTEXTS)]
        answers = []
        for gen in gens:
            while (event := await gen.events.get())[0] != "done":
                assert event[0] == "delta", event
            answers.append(event[1].answer)
        return answers

    engine.start()
    try:
        got = asyncio.run(ask_all())
    finally:
        engine.close()
    assert got == want and all(_runs(a) <= clause_numbers(loaded.fmt, c) for a, c in zip(got, CONTEXTS))


def test_reasoning_is_free_and_the_answer_after_think_is_held(r1_tokenizer) -> None:
    import torch

    from coalqa.ask.constrain import NumbersFromClauses

    tok = r1_tokenizer
    prompt = tok("问题？", add_special_tokens=False)["input_ids"]
    one, two = tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")
    comma = tok("，", add_special_tokens=False)["input_ids"][0]

    def scores_after(generated: str, opens_think: bool):
        ids = torch.tensor([prompt + tok(generated, add_special_tokens=False)["input_ids"]])
        proc = NumbersFromClauses(tok, [frozenset({"11"})], len(prompt), opens_think=opens_think)
        return proc(ids, torch.zeros(1, len(tok)))[0]

    free = scores_after("先想一想，矿灯用1", opens_think=True)  # still reasoning: nothing banned
    assert torch.isfinite(free).all()
    held = scores_after("先想一想，矿灯用1", opens_think=False)  # the answer itself: 1 must become 11
    assert held[one] == 0 and held[two] == float("-inf") and held[comma] == float("-inf")
    after = scores_after("想到了12小时\n</think>\n\n矿灯用1", opens_think=True)  # past </think>: held
    assert after[one] == 0 and after[two] == float("-inf") and after[comma] == float("-inf")
    started = scores_after("想到了\n</think>\n\n矿灯用", opens_think=True)
    assert started[one] == 0 and started[two] == float("-inf") and started[comma] == 0
