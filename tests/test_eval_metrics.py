"""Metric unit tests: Chinese ROUGE-L/BLEU-4 (identical, empty, partial), NFKC key facts, reasoning excluded."""

from __future__ import annotations

import pytest

from coalqa.eval.data import answer_text
from coalqa.eval.metrics import bleu4, find_key_facts, key_fact_recall, rouge_l, score_answer, tokenize

REF = "高瓦斯矿井采掘工作面的甲烷浓度每班至少3次检查；低瓦斯矿井每班至少2次。"


@pytest.mark.parametrize("tokenization", ["char", "jieba"])
def test_identical_chinese_scores_one_and_empty_scores_zero(tokenization):
    assert rouge_l(REF, REF, tokenization) == pytest.approx(1.0)
    assert bleu4(REF, REF, tokenization) == pytest.approx(1.0)
    assert rouge_l("", REF, tokenization) == 0.0
    assert bleu4("", REF, tokenization) == 0.0
    assert rouge_l("   ", REF, tokenization) == 0.0


def test_hugging_face_default_rouge_would_drop_chinese_but_ours_does_not():
    from rouge_score import rouge_scorer

    chinese = "必须停止工作撤出人员"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(chinese, chinese)["rougeL"].fmeasure
    assert default == 0.0  # the trap: its tokenizer keeps only [a-z0-9]
    assert rouge_l(chinese, chinese) == pytest.approx(1.0)
    assert rouge_l("低瓦斯矿井每班至少2次", REF) > 0.4


def test_identical_short_answers_score_one():
    assert bleu4("11h", "11h") == pytest.approx(1.0)
    assert rouge_l("是", "是") == pytest.approx(1.0)


def test_partial_answer_scores_between_and_by_character():
    part = "高瓦斯矿井每班至少3次"
    r, b = rouge_l(part, REF), bleu4(part, REF)
    assert 0 < b < r < 1
    # LCS over characters: every character of `part` appears in order in REF
    n_part, n_ref = len(part), len(tokenize(REF))
    assert r == pytest.approx(2 * n_part / (n_part + n_ref))
    assert rouge_l("完全无关的英文 unrelated", REF) < 0.1


def test_char_tokens_are_nfkc_and_whitespace_free():
    assert tokenize("１１ Ｈ\n％") == ["1", "1", "h", "%"]
    assert rouge_l("每班至少３次", "每班 至少3次") == pytest.approx(1.0)


def test_key_facts_match_after_nfkc():
    answer = "回风流中甲烷浓度超过１．０％时必须停止工作；瓦斯涌出量 2 m³/min ，矿灯连续使用１１ｈ"
    found, missed = find_key_facts(answer, ["1.0%", "2m3/min", "11h", "1.5%"])
    assert found == ["1.0%", "2m3/min", "11h"]
    assert missed == ["1.5%"]
    assert key_fact_recall(answer, ["1.0%", "2m³/min", "11h", "1.5%"]) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("answer", "fact"),
    [
        ("发出的矿灯，最低应当能连续正常使用11h。", "11小时"),
        ("矿灯连续使用11小时", "11h"),
        ("矿灯连续使用660分钟", "11h"),
        ("气温不得超过30℃", "30摄氏度"),
        ("气温不得超过30°C", "30℃"),
        ("甲烷浓度达到1%时", "1.0%"),
        ("每班至少检查三次", "3次"),
        ("每5年至少1次", "五年"),
        ("风量不低于百分之二十", "20%"),
    ],
)
def test_key_facts_written_another_way_are_found(answer, fact):
    assert find_key_facts(answer, [fact]) == ([fact], [])


@pytest.mark.parametrize(
    ("answer", "fact", "expected"),
    [
        ("温度不得超过130℃", "30℃", False),
        ("温度不得超过130摄氏度", "30℃", False),  # whole numbers in the unit-normalised form too
        ("矿灯连续使用111小时", "11h", False),
        ("浓度超过11.0%", "1%", False),
        ("每班至少检查十三次", "3次", False),
        ("浓度超过11.0%", "1.0%", False),
        ("压力0.745MPa", "0.74MPa", False),
        ("距离不得小于4m", "4m", True),
        ("距离不小于24m", "4m", False),
        ("不超过30℃。", "30℃", True),
        ("每班至少3次", "每班至少3次", True),
        ("至少2道反向风门", "至少2道", True),
    ],
)
def test_numbers_in_key_facts_match_whole(answer, fact, expected):
    assert bool(find_key_facts(answer, [fact])[0]) is expected


def test_no_key_facts_gives_none():
    assert key_fact_recall("任何回答", []) is None
    scores = score_answer("任何回答", REF, None)
    assert scores["key_fact_recall"] is None and scores["facts_found"] is None


def test_reasoning_is_excluded():
    pred = {"answer": "我不确定。", "reasoning": "规程规定每班至少3次"}
    answer, reasoning = answer_text(pred)
    assert answer == "我不确定。" and "3次" in reasoning
    assert score_answer(answer, REF, ["每班至少3次"])["key_fact_recall"] == 0.0

    raw = {"answer": "<think>\n好像是每班至少3次\n</think>\n\n每班检查2次。"}
    answer, reasoning = answer_text(raw)
    assert answer == "每班检查2次。" and "每班至少3次" in reasoning
    assert key_fact_recall(answer, ["每班至少3次"]) == 0.0
