"""Numbers with units in Chinese regulation text: finding them, and telling whether two texts state the same ones.

A wrong number in a safety answer can hurt someone, so several stages check numbers against their source:
``coalqa generate`` rejects a QA pair whose answer states a number its chunk does not, ``coalqa eval`` matches
key facts written another way (``11小时`` = ``11h``), grounded answers flag numbers no cited clause holds, and
``coalqa corpus`` counts the numbers a document loses on the way to its chunks. They all use this module.

Reading rules (each covered by ``tests/test_numbers.py``):

* Text is NFKC-normalised first, so full-width ``３０ｍ３／ｓ``, ``％`` and ``㎡`` read like ``30m3/s``, ``%``, ``m2``.
* A quantity is a number (``0.75``, ``-5``, a Chinese numeral such as ``三``/``二十``/``两``, ``百分之二十``,
  ``千分之三``) with an optional unit from :data:`UNITS`, a compound unit (``m3/min``, ``立方米每分钟``), a scale
  word (``3万元``) and ranges (``1～2m`` is 1 m and 2 m). Chinese numerals count only with a unit or measure word (``三次``), never
  alone (``一定``, ``一律``).
* Not quantities: ordinals and references (``第3条``, ``第三章``), clause numbers (``6.2.2.8``), list markers at
  the start of a line or after punctuation (``1．``, ``（2）``, ``3、``), bracketed markers anywhere (``（2）``, and
  ``[1]``/``【1】``: an answer citing the clauses numbered in its prompt), identifiers and formulas where digits
  are glued to Latin letters (``GB50471-2008``, ``CH4``, ``ST12``) and unit exponents (``m3``, ``m/s2``).
* Equal values compare equal whatever the writing: ``1`` = ``1.0``, ``11小时`` = ``11h`` = ``660min``
  (units of one dimension are scaled to a base unit: m, s, g, Pa, L, m2, W, V, A), ``30摄氏度`` = ``30℃`` = ``30°C``;
  a mine's capacity ``1.2Mt/a`` = ``120万t/a`` = ``120万吨/年`` (``a`` after ``/`` is a year, not an ampere).
* ``瓦`` and ``安`` are units only where they do not begin a word: ``5.2瓦斯`` is a number before 瓦斯 (not 5.2 W),
  ``2安全出口`` not 2 A.

The unit table (:data:`UNITS`) is the documented source of every alias; it is printed in eval reports.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache

# canonical unit → (aliases as written after NFKC + casefold, base unit, factor to the base unit).
# Units of one dimension share a base so that 1h = 60min = 3600s; counts are their own base.
UNITS: dict[str, tuple[tuple[str, ...], str, Decimal]] = {
    # length
    "mm": (("mm", "毫米"), "m", Decimal("0.001")),
    "cm": (("cm", "厘米", "公分"), "m", Decimal("0.01")),
    "m": (("m", "米", "公尺"), "m", Decimal(1)),
    "km": (("km", "千米", "公里"), "m", Decimal(1000)),
    # area, volume
    "m2": (("m2", "m^2", "平方米", "平米"), "m2", Decimal(1)),
    "cm2": (("cm2", "平方厘米"), "m2", Decimal("0.0001")),
    "km2": (("km2", "平方千米", "平方公里"), "m2", Decimal(1000000)),
    "m3": (("m3", "m^3", "立方米", "立方"), "L", Decimal(1000)),
    "L": (("l", "升", "公升"), "L", Decimal(1)),
    "mL": (("ml", "毫升"), "L", Decimal("0.001")),
    # time (months and years are not a fixed number of days: own units)
    "s": (("s", "sec", "秒钟", "秒"), "s", Decimal(1)),
    "s2": (("s2", "s^2", "平方秒"), "s2", Decimal(1)),  # only as a denominator: m/s2
    "min": (("min", "mins", "分钟"), "s", Decimal(60)),
    "h": (("h", "hr", "hrs", "小时", "个小时", "钟头", "个钟头"), "s", Decimal(3600)),
    "d": (("d", "天", "日", "昼夜"), "s", Decimal(86400)),
    "week": (("周", "星期", "个星期", "个周"), "s", Decimal(604800)),
    "month": (("个月", "月"), "month", Decimal(1)),
    "year": (("年",), "year", Decimal(1)),
    # temperature; 度 alone is read as the same unit (a slope in 度 and a temperature in ℃ are both "°")
    "℃": (("°c", "摄氏度", "度", "°"), "℃", Decimal(1)),
    # mass
    "mg": (("mg", "毫克"), "g", Decimal("0.001")),
    "g": (("g", "克"), "g", Decimal(1)),
    "kg": (("kg", "千克", "公斤"), "g", Decimal(1000)),
    "t": (("t", "吨"), "g", Decimal(1000000)),
    "kt": (("kt", "千吨"), "g", Decimal(10) ** 9),
    "Mt": (("mt", "兆吨", "百万吨"), "g", Decimal(10) ** 12),  # mine capacity: 1.2Mt/a = 120万t/a
    # pressure
    "Pa": (("pa", "帕", "帕斯卡"), "Pa", Decimal(1)),
    "kPa": (("kpa", "千帕"), "Pa", Decimal(1000)),
    "MPa": (("mpa", "兆帕"), "Pa", Decimal(1000000)),
    # electricity, power, sound
    "V": (("v", "伏", "伏特"), "V", Decimal(1)),
    "kV": (("kv", "千伏"), "V", Decimal(1000)),
    "mV": (("mv", "毫伏"), "V", Decimal("0.001")),
    "A": (("a", "安", "安培"), "A", Decimal(1)),
    "mA": (("ma", "毫安"), "A", Decimal("0.001")),
    "W": (("w", "瓦"), "W", Decimal(1)),
    "kW": (("kw", "千瓦"), "W", Decimal(1000)),
    "MW": (("mw", "兆瓦"), "W", Decimal(1000000)),
    "Hz": (("hz", "赫兹"), "Hz", Decimal(1)),
    "dB": (("db(a)", "db", "分贝"), "dB", Decimal(1)),
    "lx": (("lx", "勒克斯"), "lx", Decimal(1)),
    "ppm": (("ppm",), "ppm", Decimal(1)),
    # ratios
    "%": (("%",), "%", Decimal(1)),
    "‰": (("‰",), "‰", Decimal(1)),
    "倍": (("倍",), "倍", Decimal(1)),
    # money
    "元": (("元",), "元", Decimal(1)),
    # counts and measure words: their own units (人 = 名)
    "次": (("次",), "次", Decimal(1)),
    "人": (("人", "名"), "人", Decimal(1)),
    "个": (("个",), "个", Decimal(1)),
    "级": (("级",), "级", Decimal(1)),
    "班": (("班",), "班", Decimal(1)),
    "台": (("台",), "台", Decimal(1)),
    "处": (("处",), "处", Decimal(1)),
    "道": (("道",), "道", Decimal(1)),
    "层": (("层",), "层", Decimal(1)),
    "根": (("根",), "根", Decimal(1)),
    "组": (("组",), "组", Decimal(1)),
    "套": (("套",), "套", Decimal(1)),
    "条": (("条",), "条", Decimal(1)),
    "项": (("项",), "项", Decimal(1)),
    "种": (("种",), "种", Decimal(1)),
    "部": (("部",), "部", Decimal(1)),
    "孔": (("孔",), "孔", Decimal(1)),
    "段": (("段",), "段", Decimal(1)),
    "块": (("块",), "块", Decimal(1)),
    "排": (("排",), "排", Decimal(1)),
    "趟": (("趟",), "次", Decimal(1)),
    "遍": (("遍",), "次", Decimal(1)),
}
# Counts and measure words (个 is the generic one: 3个班 and 三班 state the same count).
COUNT_UNITS = {"次", "人", "个", "级", "班", "台", "处", "道", "层", "根", "组", "套", "条", "项", "种", "部", "孔", "段", "块", "排"}
_ALIAS: dict[str, str] = {alias: unit for unit, (aliases, _, _) in UNITS.items() for alias in aliases}
# Scale words between a number and its unit: 3万元, 2千米 reads as 2 km (the unit table has 千米 first).
_SCALE = {"万": Decimal(10000), "亿": Decimal(100000000)}
_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_MULT = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN = "零〇一二三四五六七八九两十百千万"


# One-character Chinese units that also begin words a number can stand before: 5.2瓦斯抽采 (a clause number and
# 瓦斯, not 5.2 W), 2安全出口 (not 2 A).
_WORD_STARTS = {"瓦": "斯", "安": "全装设置排"}


def _unit_regex() -> str:
    aliases = sorted(_ALIAS, key=len, reverse=True)  # longest first: mm before m, min before m, 个月 before 个
    parts = []
    for a in aliases:
        body = re.escape(a)
        if a[-1].isascii() and a[-1].isalpha():
            body += r"(?![a-z])"  # 5ms is not 5 m; 5m3 is m3 (listed), 5mpa is MPa
        if a in _WORD_STARTS:
            body += f"(?![{_WORD_STARTS[a]}])"
        parts.append(body)
    return "|".join(parts)


_UNIT = _unit_regex()
_NUM = r"-?\d+(?:\.\d+)?"
_RANGE_SEP = r"[~〜\-—–至到或、]"
_QUANTITY = re.compile(
    rf"(?P<pct>百分之(?P<pct_num>{_NUM}|[{_CN}]+))"
    rf"|(?P<pml>千分之(?P<pml_num>{_NUM}|[{_CN}]+))"
    rf"|(?P<num>{_NUM}|[{_CN}]+)"
    rf"(?:\s*(?P<sep>{_RANGE_SEP})\s*(?P<num2>{_NUM}|[{_CN}]+))?"
    rf"\s*(?P<scale>[万亿](?=\s*(?:{_UNIT})))?"
    rf"\s*(?P<unit>(?:{_UNIT})(?:\s*(?:/|每)\s*(?:{_UNIT}))?)?"
)
# Runs that are never quantities, matched at the same position before a quantity is tried.
_NOT_QUANTITY = re.compile(
    r"第\s*(?:\d+|[零〇一二三四五六七八九十百千两]+)"  # ordinals: 第3条, 第三章
    r"|[a-z]+[\d.\-/]*\d"  # identifiers and formulas: gb50471-2008, ch4, st12
    r"|\d+(?:\.\d+){2,}"  # clause numbers: 6.2.2.8
)
# Where a quantity may start: a digit, a minus, a Chinese numeral, 第 (to skip ordinals) or a Latin letter (identifiers).
_START = re.compile(r"[\d\-第a-z零〇一二三四五六七八九两十百千万]")
# 一 with a count word is mostly an article ("一个矿井", "一名瓦斯检查工"), not a number the answer states.
_ARTICLE_UNITS = {"个", "种", "项", "条", "人", "部", "台", "套", "组", "块", "段", "处", "道", "层", "根", "排", "孔"}
_LIST_MARKER = re.compile(r"(?:^|(?<=[\n。；;：:，,！？!?]))\s*(?:\(\s*\d+\s*\)|\d+\s*[.、)](?!\d))")
# (2), and the references [1] 【1】 an answer makes to the clauses numbered in its prompt (coalqa.template)
_PAREN_MARKER = re.compile(r"[(\[【]\s*(?:\d+|[一二三四五六七八九十]+)\s*[)\]】]")


# Punctuation that closes a phrase: a number right before it ends a quantity ("不得低于" / "20。").
# Not ）、. : "1）", "1、", "1." are list markers.
CLOSING_PUNCT = "。，,；;：:！？!?”’」』】"
# Units a clause number is never directly followed by: Latin and symbol units, Chinese ones of two or more
# characters and 米 (one-character Chinese units such as 安/台/度 also begin words: 安全, 台阶, 度汛; counts
# such as 个/条 begin words too).
MEASURE_ALIASES = tuple(
    a for a in sorted(_ALIAS, key=len, reverse=True)
    if _ALIAS[a] not in COUNT_UNITS and (a.isascii() or len(a) >= 2 or a == "米" or not "\u4e00" <= a[0] <= "\u9fff")
)


def alias_regex(aliases: Iterable[str]) -> str:
    """An alternation of unit ``aliases`` (as in :data:`UNITS`, lower case); a Latin one must not run on into
    another letter (``5ms`` is not ``5m``)."""
    return "|".join(re.escape(a) + (r"(?![a-z])" if a[-1].isascii() and a[-1].isalpha() else "") for a in aliases)


MEASURE_UNIT = alias_regex(MEASURE_ALIASES)
_LEADING_QUANTITY = re.compile(
    rf"\d+(?:\.\d+)?(?![\d.])(?:(?:{MEASURE_UNIT})(?:\s*(?:/|每)\s*(?:{_UNIT}))?|[{re.escape(CLOSING_PUNCT)}])"
)


def starts_with_quantity(line: str) -> bool:
    """Does ``line`` open with a quantity: a number directly followed by a unit of measure (:data:`MEASURE_UNIT`)
    or by closing punctuation (``2.2m。``, ``10m³/min``, ``30%，``, ``24h内``, ``20。``)?

    Such a line continues the sentence above it (a hard wrap before a number that would not fit); a clause or
    list number is never written that way (``6.2.1``, ``1.``, ``1、`` and ``1）`` do not match).
    """
    return _LEADING_QUANTITY.match(nfkc_casefold(line.lstrip())) is not None


@dataclass(frozen=True)
class Quantity:
    """One number as stated in a text.

    Attributes:
        value: the number in ``unit`` (``Decimal``; ``1.0`` and ``1`` are equal).
        unit: canonical unit from :data:`UNITS` (compound ``m3/min``), ``""`` for a bare number.
        text: the quantity as written (after NFKC), e.g. ``"11小时"``.
    """

    value: Decimal
    unit: str
    text: str

    @cached_property
    def base(self) -> tuple[Decimal, str]:
        """``(value, unit)`` in base units (``11h`` → ``(39600, "s")``); comparable across writings."""
        if not self.unit:
            return self.value, ""
        num, _, den = self.unit.partition("/")
        _, base_num, f_num = UNITS[num]
        value, unit = self.value * f_num, base_num
        if den:
            _, base_den, f_den = UNITS[den]
            value, unit = value / f_den, f"{base_num}/{base_den}"
        return value.normalize(), unit

    def __str__(self) -> str:
        return f"{_plain(self.value)}{self.unit}"


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_chinese_number(text: str) -> int | None:
    """``"二十"`` → 20, ``"一百零五"`` → 105, ``"两"`` → 2, ``"三千"`` → 3000; ``None`` when not a numeral."""
    if not text or any(c not in _CN for c in text):
        return None
    if all(c in _CN_DIGIT for c in text) and len(text) > 1:  # digit by digit: 二〇〇八
        return int("".join(str(_CN_DIGIT[c]) for c in text))
    total, section, digit = 0, 0, None
    for c in text:
        if c in _CN_DIGIT:
            digit = _CN_DIGIT[c]
        elif c == "万":
            section = (section + (digit or 0)) or 1
            total += section * 10000
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * _CN_MULT[c]
            digit = None
    return total + section + (digit or 0)


def _number(text: str) -> Decimal | None:
    if text[0].isdigit() or text[0] == "-":
        try:
            return Decimal(text)
        except InvalidOperation:
            return None
    n = parse_chinese_number(text)
    return None if n is None else Decimal(n)


def _canonical_unit(written: str) -> str:
    if not written:
        return ""
    parts = re.split(r"\s*(?:/|每)\s*", written, maxsplit=1)
    units = [_ALIAS[p] for p in parts]
    if len(units) == 2 and parts[1] == "a":  # per annum, not per ampere: 90万t/a = 90万吨/年
        units[1] = "year"
    return "/".join(units)


def nfkc_casefold(text: str) -> str:
    """NFKC + casefold, the form every match in this module works on (``"３０ｍ３／ｓ"`` → ``"30m3/s"``)."""
    return unicodedata.normalize("NFKC", text or "").casefold()


def _iter_quantities(norm: str):
    """Yield ``(start, end, [Quantity, ...])`` for every quantity run in normalised text."""
    pos, n = 0, len(norm)
    masked = _mask(norm)
    while pos < n:
        start = _START.search(masked, pos)
        if not start:
            return
        pos = start.start()
        skip = _NOT_QUANTITY.match(masked, pos)
        if skip:
            pos = skip.end()
            continue
        m = _QUANTITY.match(masked, pos)
        if not m or not m.group(0).strip() or (pos > 0 and masked[pos - 1].isdigit()) or _glued_letter(masked, pos):
            pos += 1
            continue
        found = _read(m, norm)
        if found is None:
            pos += 1
            continue
        yield m.start(), m.end(), found
        pos = m.end()


def _glued_letter(text: str, pos: int) -> bool:
    """A digit right after a Latin letter or a dot belongs to something else (m3, CH4, .5 of 6.2.5)."""
    return pos > 0 and (text[pos - 1] == "." or (text[pos - 1].isascii() and text[pos - 1].isalpha()))


def _mask(norm: str) -> str:
    """``norm`` with list markers blanked out (same length), so their numbers are never read."""
    out = list(norm)
    for rx in (_LIST_MARKER, _PAREN_MARKER):
        for m in rx.finditer(norm):
            for i in range(m.start(), m.end()):
                if not out[i].isspace():
                    out[i] = "\x00"
    return "".join(out)


def _read(m: re.Match[str], norm: str) -> list[Quantity] | None:
    text = norm[m.start() : m.end()].strip()
    for group, unit in (("pct", "%"), ("pml", "‰")):
        if m.group(group):
            value = _number(m.group(f"{group}_num"))
            return None if value is None else [Quantity(value, unit, text)]
    unit = _canonical_unit(m.group("unit") or "")
    first, second = m.group("num"), m.group("num2")
    chinese = not (first[0].isdigit() or first[0] == "-")
    if chinese and (not unit or (first == "一" and unit in _ARTICLE_UNITS)):
        return None  # 一定, 一律, 三者, 一个: a Chinese numeral counts only with a unit, 一 not as an article
    if second is not None and not unit and m.group("sep") in "、或至到":
        second = None  # "1、2" lists, "3或4" without a unit: read the first number only
    values = [_number(first)] + ([_number(second)] if second is not None else [])
    if any(v is None for v in values):
        return None
    scale = _SCALE.get(m.group("scale") or "", Decimal(1))
    return [Quantity(v * scale, unit, text) for v in values]


@lru_cache(maxsize=4096)
def find_quantities(text: str) -> tuple[Quantity, ...]:
    """Every quantity ``text`` states, in order (repeats kept). See the module docstring for the rules.

    Example: ``"高瓦斯矿井每班至少3次，风速不得超过4m/s，第十条"`` → ``(3次, 4m/s)``.
    """
    norm = nfkc_casefold(text)
    return tuple(q for _, _, qs in _iter_quantities(norm) for q in qs)


NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)*")  # a digit run: number_tokens, and what constrained decoding allows (coalqa.ask.constrain)


def number_tokens(text: str) -> list[str]:
    """Every number written in ``text``, as digit runs after NFKC, in order, repeats kept.

    Unlike :func:`find_quantities` nothing is skipped: clause numbers, ordinals, list markers,
    identifiers and unit exponents count too, because a document → chunk check must account for every
    digit: ``"６．２．１ 风量３０ｍ３／ｓ，GB50471-2008"`` → ``["6.2.1", "30", "3", "50471", "2008"]``.
    A trailing or lone dot is not part of a number (``"1."`` → ``["1"]``). Chinese numerals are not
    listed (they are words; a lost one shows in the character count).
    """
    return NUMBER_TOKEN.findall(nfkc_casefold(text))


def same_quantity(a: Quantity, b: Quantity) -> bool:
    """Equal values in compatible units: same base unit, either one bare (``3`` matches ``3次``), or the
    generic measure word 个 against any count (``3个班`` matches ``三班``)."""
    (va, ua), (vb, ub) = a.base, b.base
    if "个" in (ua, ub) and {ua, ub} <= COUNT_UNITS:
        return a.value == b.value
    if ua and ub and ua != ub:
        return False
    if not ua or not ub:  # a bare number matches the same value written in any unit
        return a.value == b.value
    return va == vb


def unsupported_quantities(text: str, sources: Iterable[str]) -> list[Quantity]:
    """The quantities of ``text`` that none of ``sources`` states (each reported once, in order).

    Used to check a generated answer against its chunk and a model's answer against the clauses it cites.
    """
    pool = [q for s in sources for q in find_quantities(s)]
    exact = {p.base for p in pool}  # fast path: the same value in the same base unit
    out: dict[tuple[Decimal, str], Quantity] = {}
    for q in find_quantities(text):
        if q.base not in out and q.base not in exact and not any(same_quantity(q, p) for p in pool):
            out[q.base] = q
    return list(out.values())


def canonical_text(text: str) -> str:
    """``text`` NFKC-normalised, casefolded, whitespace removed, every quantity rewritten in base units.

    Two texts that state the same quantities in different writings become equal where they state them:
    ``"每班11小时"`` and ``"每班 11h"`` → ``"每班39600s"``; ``"30摄氏度"`` → ``"30℃"``; ``"三次"`` → ``"3次"``;
    ``"1.0%"`` → ``"1%"``. Used for key-fact matching in ``coalqa eval``.
    """
    norm = nfkc_casefold(text)
    out, last = [], 0
    for start, end, qs in _iter_quantities(norm):
        out.append(norm[last:start])
        out.append("~".join(_plain(q.base[0]) + q.base[1].casefold() for q in qs))
        last = end
    out.append(norm[last:])
    return re.sub(r"\s+", "", "".join(out))


def unit_table_markdown() -> str:
    """The unit aliases as a Markdown table (printed in eval reports so readers know what matched)."""
    rows = ["| unit | written as | base |", "|---|---|---|"]
    for unit, (aliases, base, factor) in UNITS.items():
        scale = "" if factor == 1 and base == unit else f" = {_plain(factor)} {base}"
        rows.append(f"| {unit} | {'、'.join(aliases)} | {base}{scale} |")
    return "\n".join(rows)


@lru_cache(maxsize=4096)
def quantity_spans(text: str) -> tuple[tuple[int, int, tuple[Quantity, ...]], ...]:
    """Where ``text`` states each quantity: ``((start, end, quantities), ...)``, indices into ``text`` itself.

    The same quantities as :func:`find_quantities` (a range ``1～2m`` is one span holding two), found on the
    normalised text and mapped back character by character, so a page can highlight them in the original
    (``"风速４ｍ／ｓ"`` → ``[(2, 6, (4m/s,))]``).
    """
    norm_parts, starts = [], []
    for i, ch in enumerate(text):
        n = nfkc_casefold(ch)
        norm_parts.append(n)
        starts.extend([i] * len(n))
    starts.append(len(text))
    norm = "".join(norm_parts)
    out = []
    for start, end, qs in _iter_quantities(norm):
        while end > start and norm[end - 1].isspace():
            end -= 1
        while start < end and norm[start].isspace():
            start += 1
        a = starts[start]
        b = starts[end - 1] + 1 if end > start else a
        out.append((a, b, tuple(qs)))
    return tuple(out)
