"""Generate stage, offline parts: reply parsing, validation, de-duplication, prompt, clause generator."""

from __future__ import annotations

import json

import pytest

from coalqa.errors import CoalqaError
from coalqa.generate import (
    GenerateConfig,
    check_pair,
    clause_pairs,
    fact_pairs,
    is_refusal,
    load_prompt,
    make_deduper,
    parse_pairs,
    quantities,
    render_prompt,
    split_text,
)
from coalqa.generate.prompt import BUILTIN

P1 = {"input": "煤矿企业应当建立哪些防治水制度？", "output": "应当建立水害防治岗位责任制等制度。"}
P2 = {"input": "防治水工作应坚持什么原则？", "output": "预测预报、有疑必探、先探后掘、先治后采。"}
GOOD = json.dumps([P1, P2], ensure_ascii=False)

REPLIES = {
    "plain": (GOOD, 2, []),
    "think": (f"<think>先想想……[\"不是答案\"]</think>\n{GOOD}", 2, []),
    "unopened_think": (f"用户要求问答对……</think>{GOOD}", 2, []),
    "only_think_cut": ("<think>思考到一半被截断", 0, ["unparseable"]),
    "fence": (f"```json\n{GOOD}\n```", 2, []),
    "prose": (f"好的，以下是生成的问答对：\n{GOOD}\n希望对您有帮助！", 2, []),
    "fence_and_prose": (f"以下是结果：\n```\n{GOOD}\n```\n以上。", 2, []),
    "trailing_comma_single_quotes": ("[{'input': '煤矿企业应当建立哪些防治水制度？', 'output': '应当建立制度。',},]", 1, []),
    "unescaped_quote": ('[{"input": "什么是"有疑必探"原则？", "output": "先探后掘。"}]', 1, []),
    "dict_wrapped": (json.dumps({"data": [P1, P2]}, ensure_ascii=False), 2, []),
    "single_pair_dict": (json.dumps(P1, ensure_ascii=False), 1, []),
    "parallel_lists": (json.dumps({"questions": [P1["input"], P2["input"]], "answers": [P1["output"], P2["output"]]},
                                  ensure_ascii=False), 2, []),
    "jsonl": (json.dumps(P1, ensure_ascii=False) + "\n" + json.dumps(P2, ensure_ascii=False), 2, []),
    "aliases": (json.dumps([{"question": "q1问题内容", "answer": "a1"}, {"instruction": "q2问题内容", "output": "a2"},
                            {"Q": "q3问题内容", "A": "a3"}, {"问题": "q4问题内容", "答案": "a4"}], ensure_ascii=False), 4, []),
    "truncated_mid_pair": (GOOD[:-1] + ', {"input": "被截断的问题", "output": "答案写到一半', 2, ["truncated"]),
    "truncated_mid_string": (GOOD[: GOOD.index("预测预报")], 1, ["truncated"]),
    "truncated_jsonl": (json.dumps(P1, ensure_ascii=False) + '\n{"input": "半', 1, ["truncated"]),
    "missing_and_non_object": (json.dumps([P1, {"input": "只有问题"}, "字符串"], ensure_ascii=False), 1,
                               ["missing_fields", "not_an_object"]),
    "full_width_syntax": (("以下是问答对：\n［\n｛“input”：“煤矿企业应当建立哪些防治水制度？”，“output”：“应当建立水害防治岗位责任制等制度。”｝，\n"
                          "｛“input”：“防治水工作应坚持什么原则？”，“output”：“预测预报、有疑必探、先探后掘、先治后采。”｝\n］"), 2, []),
    "full_width_colon_and_comma": (('[{"input"："煤矿企业应当建立哪些防治水制度？"，"output"："应当建立水害防治岗位责任制等制度。"}，'
                                   '{"input"："防治水工作应坚持什么原则？"，"output"："预测预报、有疑必探、先探后掘、先治后采。"}]'), 2, []),
    "no_json": ("抱歉，我无法根据该文本生成问答对。", 0, ["unparseable"]),
    "empty": ("", 0, ["unparseable"]),
}


@pytest.mark.parametrize("name", REPLIES)
def test_parse_recovers_what_is_there(name: str) -> None:
    reply, n_pairs, reasons = REPLIES[name]
    pairs, problems = parse_pairs(reply)
    assert len(pairs) == n_pairs, (pairs, problems)
    assert [p["reason"] for p in problems] == reasons
    assert all(set(p) == {"input", "output"} for p in pairs)
    if name in ("plain", "think", "fence", "prose", "jsonl", "dict_wrapped", "parallel_lists", "full_width_syntax",
                "full_width_colon_and_comma"):
        assert pairs == [P1, P2]


def test_alpaca_instruction_with_context_and_truncation_keeps_only_complete_pairs() -> None:
    pairs, _ = parse_pairs('[{"instruction": "解释条款", "input": "第三条", "output": "答"}]')
    assert pairs == [{"input": "解释条款\n第三条", "output": "答"}]
    pairs, problems = parse_pairs(GOOD[:-1] + ', {"input": "被截断的问题", "output": "答案写到一半')
    assert "答案写到一半" not in json.dumps(pairs, ensure_ascii=False) and "答案写到一半" in problems[0]["detail"]


def test_full_width_syntax_outside_strings_only() -> None:
    from coalqa.generate.parse import ascii_json_syntax

    # the values keep their full-width commas, colons and quotes; only the syntax between them changes
    reply = '［｛“input”：“什么是“一通三防”？”，“output”：“通风、防瓦斯：即“三防”，见第二条。”｝］'
    assert json.loads(ascii_json_syntax(reply)) == [{"input": "什么是“一通三防”？", "output": "通风、防瓦斯：即“三防”，见第二条。"}]
    assert ascii_json_syntax(GOOD) == GOOD  # valid JSON is left as it is
    assert parse_pairs(reply) == ([{"input": "什么是“一通三防”？", "output": "通风、防瓦斯：即“三防”，见第二条。"}], [])


def test_unfaithful_pairs_are_rejected_with_their_reason() -> None:
    from coalqa.generate.validate import check_faithful, text_language

    chunk = "矿井应当每10天至少进行1次全面测风，风量不得低于设计的20%；温度超过30摄氏度时应当停止作业。"
    cfg = GenerateConfig()
    faithful = [
        "每10天至少1次全面测风。",
        "温度超过30℃时应停止作业，风量不低于百分之二十。",  # other writings of the same numbers
        "应当每十天进行一次全面测风。",
    ]
    for answer in faithful:
        assert check_faithful({"input": "问", "output": answer}, chunk, cfg) is None, answer
    assert check_faithful({"input": "问", "output": "每15天测风1次，风量不得低于18%。"}, chunk, cfg) == (
        "number_not_in_chunk", "15天, 18%")
    assert check_faithful({"input": "问", "output": "温度超过130℃时应当停止作业。"}, chunk, cfg) == ("number_not_in_chunk", "130°c")
    english = {"input": "How often?", "output": "The mine must measure the air flow at least once every 10 days."}
    assert check_faithful(english, chunk, cfg) == ("language", "answer en, chunk zh")
    # (numbers are named as read: NFKC, casefolded); a derived number within the configured allowance; the language check can be turned off
    assert check_faithful({"input": "问", "output": "每10天1次，即每月约3次。"}, chunk, cfg) == ("number_not_in_chunk", "3次")
    assert check_faithful({"input": "问", "output": "每10天1次，即每月约3次。"}, chunk,
                          GenerateConfig(max_numbers_not_in_chunk=1)) is None
    assert check_faithful(english, chunk, GenerateConfig(check_language=False)) is None
    assert (text_language("CH4浓度达到1.0%时必须停止工作"), text_language("4m/s"), text_language("Every 10 days")) == (
        "zh", None, "en")


def test_validation_reasons() -> None:
    cfg = GenerateConfig(max_question_chars=20, max_answer_chars=30, min_answer_chars=3)
    ok = {"input": "防治水工作应坚持什么原则？", "output": "预测预报、有疑必探。"}
    assert check_pair(ok, cfg) is None
    cases = {
        "not_string": {"input": "防治水工作应坚持什么原则？", "output": ["列表"]},
        "empty_question": {"input": "  ", "output": "答案答案"},
        "empty_answer": {"input": "防治水工作应坚持什么原则？", "output": ""},
        "question_too_short": {"input": "问", "output": "答案答案"},
        "question_too_long": {"input": "问" * 21, "output": "答案答案"},
        "answer_too_short": {"input": "防治水工作应坚持什么原则？", "output": "是"},
        "answer_too_long": {"input": "防治水工作应坚持什么原则？", "output": "答" * 31},
        "refusal": {"input": "防治水工作应坚持什么原则？", "output": "抱歉，文本中没有提及。"},
    }
    for reason, pair in cases.items():
        assert check_pair(pair, cfg) == reason


@pytest.mark.parametrize("answer", ["很抱歉，我无法回答这个问题。", "作为一个AI语言模型，我不能……", "I'm sorry, I cannot help.",
                                    "原文中未提及该内容。"])
def test_refusals(answer: str) -> None:
    assert is_refusal(answer)


def test_regulation_wording_is_not_a_refusal() -> None:
    assert not is_refusal("人员无法撤离时，必须立即进入避难硐室，并及时汇报。")


def test_dedup_exact_near_and_numbered_clauses() -> None:
    seen = make_deduper(0.8)
    assert seen("煤矿企业应当建立哪些防治水制度？") is None
    assert seen("煤矿企业应当建立哪些防治水制度?") == "duplicate_exact"  # punctuation/width normalised
    assert seen("煤矿企业应建立哪些防治水制度？") == "duplicate_near"
    assert seen("《煤矿防治水规定》第五十八条是如何规定的？") is None
    assert seen("《煤矿防治水规定》第五十九条是如何规定的？") is None  # another clause, not a duplicate
    assert seen("《瓦斯抽采工程设计规范》6.2.2是如何规定的？") is None
    assert seen("《瓦斯抽采工程设计规范》6.2.3是如何规定的？") is None
    assert seen("井下爆破作业必须遵守哪些规定？") is None
    # one character apart but answered with different numbers: two facts, both kept
    assert seen("根据《煤矿建设安全规程》第一百八十条，低瓦斯矿井，每班至少多少次？", "低瓦斯矿井，每班至少2次。") is None
    assert seen("根据《煤矿建设安全规程》第一百八十条，高瓦斯矿井，每班至少多少次？", "高瓦斯矿井，每班至少3次。") is None
    assert seen("根据《煤矿建设安全规程》第一百八十条，高瓦斯矿井每个班至少多少次？", "高瓦斯矿井，每班至少3次。") == "duplicate_near"


def test_builtin_prompt_renders_with_literal_braces(tmp_path) -> None:
    prompt = load_prompt()
    assert prompt.name == "qa_v1" and prompt.version.startswith("qa_v1@") and len(prompt.version) == 18
    text = "第一条 {text} 与 {max_pairs} 原样保留"
    out = render_prompt(prompt, text, max_question_chars=120, max_answer_chars=1024, min_pairs=10, max_pairs=20)
    assert f"######\n{text}\n######" in out and "10-20条" in out and "不超过120字" in out and "少于1024字" in out
    assert '"input": "请提供新建矿井立井井筒冻结法施工的具体要求。"' in out and "{\n" in out
    custom = tmp_path / "mine.txt"
    custom.write_text(BUILTIN.read_text(encoding="utf-8") + "\n11. 只用简体中文。", encoding="utf-8")
    assert load_prompt(custom).version != prompt.version
    (tmp_path / "bad.txt").write_text("no placeholder", encoding="utf-8")
    with pytest.raises(CoalqaError, match="placeholder"):
        load_prompt(tmp_path / "bad.txt")


def test_clause_pairs_verbatim_deterministic_and_split_at_sentences() -> None:
    chunk = {"id": "c1", "title": "《煤矿防治水规定》", "locator": "第五条", "heading": "第一章 总则",
             "text": "第五条煤矿企业应当配备防治水专业技术人员。水文地质条件复杂的，还应当设立专门机构。"}
    pairs = clause_pairs(chunk, 1024)
    assert pairs == clause_pairs(dict(chunk), 1024)
    assert [p["input"] for p in pairs] == ["《煤矿防治水规定》第五条是如何规定的？", "根据《煤矿防治水规定》，第一章 总则中第五条的内容是什么？"]
    assert all(p["output"] == chunk["text"] for p in pairs)
    long = chunk | {"text": "".join(f"第{i}句规定必须遵守，不得违反。" for i in range(40))}
    parts = split_text(long["text"], 100)
    assert "".join(parts) == long["text"] and all(len(p) <= 100 and p.endswith("。") for p in parts)
    pairs = clause_pairs(long, 100)
    assert len(pairs) == 2 * len(parts) and "（第1部分，共" in pairs[0]["input"]
    assert len({p["input"] for p in pairs}) == len(pairs)
    assert split_text("甲" * 250, 100) == ["甲" * 100, "甲" * 100, "甲" * 50]  # no punctuation at all: hard split, nothing lost
    again = clause_pairs(chunk, 1024, occurrence=1)  # same locator reused later (e.g. explanatory notes)
    assert again[0]["input"] != pairs[0]["input"] and "第五条煤矿企业应当配备防治水专业技术人员" in again[0]["input"]


FACT_CHUNK = {
    "id": "c3", "title": "煤矿建设安全规程", "locator": "第一百八十条",
    "text": "第一百八十条(三)采掘工作面的甲烷浓度检查次数如下:\n1.低瓦斯矿井，每班至少2次；\n2.高瓦斯矿井，每班至少3次；\n"
            "(四)发出的矿灯，最低应当能连续正常使用11h。高瓦斯矿井应使用安全等级不低于三级的煤矿许用炸药。"
            "瓦斯含量应降到8m3/t以下。按第3条执行。本规定自公布之日起施行。",
}


def test_fact_pairs_ask_for_each_number_and_answer_with_the_sentence() -> None:
    pairs = fact_pairs(FACT_CHUNK, 150)
    assert pairs == fact_pairs(dict(FACT_CHUNK), 150)
    by_answer: dict[str, list[str]] = {}
    for p in pairs:
        by_answer.setdefault(p["output"], []).append(p["input"])
    assert list(by_answer) == [  # list items carry the sentence that introduced the list; no ordinals, no dates
        "采掘工作面的甲烷浓度检查次数如下：低瓦斯矿井，每班至少2次。",
        "采掘工作面的甲烷浓度检查次数如下：高瓦斯矿井，每班至少3次。",
        "发出的矿灯，最低应当能连续正常使用11h。",
        "高瓦斯矿井应使用安全等级不低于三级的煤矿许用炸药。",
        "瓦斯含量应降到8m3/t以下。",
    ]
    assert by_answer["发出的矿灯，最低应当能连续正常使用11h。"] == [
        "根据《煤矿建设安全规程》第一百八十条，发出的矿灯，最低应当能连续正常使用多少h？",
        "《煤矿建设安全规程》第一百八十条关于“发出的矿灯”有什么规定？",
    ]
    assert by_answer["采掘工作面的甲烷浓度检查次数如下：高瓦斯矿井，每班至少3次。"][0].endswith("高瓦斯矿井，每班至少多少次？")
    assert "不低于几级" in by_answer["高瓦斯矿井应使用安全等级不低于三级的煤矿许用炸药。"][0]
    assert "降到多少m3/t以下" in by_answer["瓦斯含量应降到8m3/t以下。"][0]  # the 3 of m3 is a unit, not asked for
    for answer, questions in by_answer.items():  # each piece of an answer is the regulation's own text
        assert all(piece in FACT_CHUNK["text"] for piece in answer.rstrip("。").split("："))
        assert all("多少" in q or "几" in q or "有什么规定" in q for q in questions)
    # the article pairs come first, then the fact pairs; unknown kinds are refused
    both = clause_pairs(FACT_CHUNK, 150, kinds=("article", "fact"))
    assert both[: len(both) - len(pairs)] == clause_pairs(FACT_CHUNK, 150) and both[len(both) - len(pairs):] == pairs
    assert clause_pairs(FACT_CHUNK, 150, kinds=("fact",)) == pairs
    with pytest.raises(ValueError, match="unknown clause pair kind"):
        clause_pairs(FACT_CHUNK, 150, kinds=("facts",))
    # long sentences are cut at commas so that questions fit; nothing without a number is asked
    short = fact_pairs(FACT_CHUNK | {"text": "井下" + "，".join(["作业人员必须佩戴自救器"] * 6) + "，每班检查不少于2次。"}, 60, 60)
    assert short and all(len(p["input"]) <= 60 and len(p["output"]) <= 60 for p in short)
    assert fact_pairs(FACT_CHUNK | {"text": "本规定自公布之日起施行。"}, 150) == []


def test_quantities_are_the_numbers_a_text_states() -> None:
    text = "工作水泵应当能在20h内排出矿井24h的涌水量，备用水泵不小于70％，瓦斯含量降到8m3/t以下，按第3条：1．不低于三级，稳定一个月以上，20h。"
    assert quantities(text) == ["20", "24", "70", "8", "三级", "一个月"]
    assert quantities("本规定自公布之日起施行。") == []
