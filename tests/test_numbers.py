"""coalqa.numbers: quantities found the way a safety engineer reads them, and compared across writings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coalqa.numbers import (
    canonical_text,
    find_quantities,
    parse_chinese_number,
    same_quantity,
    unit_table_markdown,
    unsupported_quantities,
)


def written(text: str) -> list[str]:
    return [str(q) for q in find_quantities(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("高瓦斯矿井每班至少3次，风速不得超过4m/s，第十条", ["3次", "4m/s"]),
        ("主要通风机３０ｍ３／ｓ", ["30m3/s"]),  # full width, unit exponent
        ("每10天至少进行1次全面测风，20％", ["10d", "1次", "20%"]),
        ("1～2m的距离，GB50471-2008规定，CH4浓度1.0%", ["1m", "2m", "1%"]),  # range; identifiers and formulas skipped
        ("6.2.2.8 工作面\n1. 每班三次\n（2）二十人以上", ["3次", "20人"]),  # clause number, list markers
        ("百分之二十的风量", ["20%"]),
        ("根据条款[1]，每班至少3次；见【2】和[ 3 ]", ["3次"]),  # references to the prompt's numbered clauses
        ("可以处3万元以下的罚款", ["30000元"]),
        ("一个矿井一般每年至少一次", ["1次"]),  # 一个 is an article, 一般 no number
        ("加速度0.75m/s2", ["0.75m/s2"]),
        ("两个月内", ["2month"]),
        ("温度-5℃", ["-5℃"]),
        ("依照第二十条的规定", []),
        ("5.2瓦斯抽采，设2安全出口，灯功率5瓦、电流3安", ["5.2", "2", "5W", "3A"]),  # 瓦斯 and 安全 are words, not W and A
        ("设计生产能力4.0Mt/a，即400万吨/年", ["4Mt/year", "4000000t/year"]),  # t/a: tonnes per annum
    ],
)
def test_find_quantities(text, expected):
    assert written(text) == expected


def test_chinese_numerals():
    assert [parse_chinese_number(t) for t in ("二十", "十二", "一百零五", "两", "三千", "二〇〇八", "三万五千")] == [
        20, 12, 105, 2, 3000, 2008, 35000]
    assert parse_chinese_number("二十a") is None


@pytest.mark.parametrize(
    ("a", "b"),
    [("11小时", "11h"), ("11h", "660分钟"), ("30摄氏度", "30℃"), ("30℃", "30°C"), ("1%", "1.0%"), ("三次", "3次"),
     ("5立方米每分钟", "5m3/min"), ("2千米", "2000m"), ("20人", "二十名"), ("0.5MPa", "500kPa"),
     ("1.2Mt/a", "120万t/a"), ("90万t/a", "90万吨/年"), ("500kt", "0.5Mt")],
)
def test_same_quantity_across_writings(a, b):
    (qa,), (qb,) = find_quantities(a), find_quantities(b)
    assert same_quantity(qa, qb)
    assert canonical_text(a) == canonical_text(b)


@pytest.mark.parametrize(("a", "b"), [("10天", "15天"), ("20%", "18%"), ("3m", "3min"), ("30℃", "130℃"), ("1.2Mt/a", "1.2m"),
                                      ("2A", "2t/a")])
def test_different_quantities(a, b):
    (qa,), (qb,) = find_quantities(a), find_quantities(b)
    assert not same_quantity(qa, qb)


def test_bare_number_matches_any_unit_of_its_value():
    (bare,), (unit,) = find_quantities("至少3"), find_quantities("3次")
    assert same_quantity(bare, unit) and not same_quantity(bare, find_quantities("4次")[0])


def test_unsupported_quantities_names_each_wrong_number_once():
    chunk = "矿井必须建立测风制度，每10天至少进行1次全面测风，风量不低于20％。"
    bad = unsupported_quantities("每15天测风1次，每15天复查，风量18%", [chunk])
    assert [(q.text, q.value, q.unit) for q in bad] == [("15天", Decimal(15), "d"), ("18%", Decimal(18), "%")]
    assert unsupported_quantities("每10天测风一次，风量不低于20%", [chunk]) == []


def test_unit_table_lists_aliases():
    table = unit_table_markdown()
    assert "| h | h、hr、hrs、小时" in table and "| ℃ | °c、摄氏度" in table


def test_generic_measure_word_and_permille():
    # an LLM answer writes 3个班 for the chunk's 三班, 1‰ for 千分之一: the same numbers, not unsupported ones
    assert unsupported_quantities("每3个班检查一次，坡度不超过1‰", ["每三班检查一次，坡度不超过千分之一"]) == []
    assert written("千分之三") == ["3‰"]
    (months,) = unsupported_quantities("每3个月", ["每三班"])  # 个月 is a duration, not a count
    assert str(months) == "3month"
