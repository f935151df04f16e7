"""Corpus stage: readers (formats, encodings, cleaning), structure-aware chunking, CLI, real corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coalqa.corpus import (
    Chunk,
    Document,
    clean_text,
    load_documents,
    read_chunks,
    read_document,
    split_into_chunks,
    write_chunks,
)
from coalqa.corpus.command import corpus
from coalqa.errors import CoalqaError

LAW = (
    "煤矿防治水规定\\n\r\n"
    "第一章　总则\\n\r\n\r\n\r\n"
    "第一条为加强煤矿的防治水工作，制定本规定。\\n\r\n"
    "第二条煤矿企业的防治水工作，适用本规定。\\n\r\n"
    "第二章排水\r\n"
    "第五十八条工作水泵的能力，应当能在20h内排出矿井24h的正常涌水量（包括充填水及其他用水）。\\n\r\n"
    "第五十九条矿井必须建立检查制度，并遵守下列规定:\\n\r\n"
    "(一)矿长下井时，必须携带便携式甲烷检测报警仪。\\n\r\n"
    "(二)所有采掘工作面都应当纳入检查范围。\\n\r\n"
    "第六十条本规定自发布之日起施行。\\n"
)
STANDARD = (
    "1总则1.0.1为提高设计水平，制定本规范。\\n\n"
    "1.0.2本规范适用于新建矿井。\\n\n"
    "2术语\n"
    "2.0.1瓦斯抽采gasdrainage用专用设备抽出煤层中的瓦斯。\\n\n"
    "6瓦斯防治\n"
    "6.2.2瓦斯防治\n"
    "6.2.2.8掘进工作面回风巷风流中瓦斯浓度超过1.0%时，必须停止工作。\\n\n"
    "6.2.2.9爆破地点附近20m以内风流中瓦斯浓度达到1.0％时，严禁爆破。\\n\n"
)


def nonspace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def doc_of(text: str, source: str = "law.txt") -> Document:
    return Document(source=source, path=Path(source), title="T", text=clean_text(text))


def cli_app() -> typer.Typer:
    """A two-level app like ``coalqa`` (a callback keeps ``corpus`` a subcommand)."""
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("corpus")(corpus)
    return app


def run_cli(*args: str):
    return CliRunner().invoke(cli_app(), ["corpus", *args])


# ---------------------------------------------------------------- readers


def test_clean_text_normalises_layout_only() -> None:
    raw = "第一条\u3000为加强\t工作，\\n\r\n\r\n\r\n第二条\u00a0适用\\r\\n本规定。\\n"
    cleaned = clean_text(raw)
    assert cleaned == "第一条 为加强 工作，\n第二条 适用\n本规定。"
    assert nonspace(cleaned) == nonspace(raw.replace("\\r", "").replace("\\n", ""))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16", "utf-16-le", "utf-16-be"])
def test_text_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"law-{encoding}.txt"
    path.write_bytes(LAW.encode(encoding))
    doc = read_document(path)
    assert doc.text == clean_text(LAW)
    assert doc.title == "煤矿防治水规定"
    assert "\\n" not in doc.text and "\r" not in doc.text and "\u3000" not in doc.text


def test_docx_with_table_in_document_order(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_heading("矿井排水规定", level=0)
    d.add_heading("第一章总则", level=1)
    d.add_paragraph("第一条水泵能力应满足下表要求。")
    table = d.add_table(rows=2, cols=3)
    table.cell(0, 0).text, table.cell(0, 1).text, table.cell(0, 2).text = "项目", "要求", "备注"
    table.cell(1, 0).text, table.cell(1, 1).text = "排水时间", "20h内排出24h涌水量"
    table.cell(1, 1).merge(table.cell(1, 2))
    d.add_paragraph("第二条表后条文。")
    path = tmp_path / "drain.docx"
    d.save(str(path))
    doc = read_document(path)
    assert doc.title == "矿井排水规定"
    assert doc.text.split("\n") == [
        "矿井排水规定",
        "第一章总则",
        "第一条水泵能力应满足下表要求。",
        "项目 | 要求 | 备注",
        "项目：排水时间；要求、备注：20h内排出24h涌水量",  # each row names its columns; a merged cell once
        "第二条表后条文。",
    ]
    chunks = split_into_chunks(doc)
    assert "20h内排出24h涌水量" in chunks[0].text
    assert chunks[0].heading == "第一章总则"


def test_docx_named_doc_is_read_by_content(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_paragraph("第一条矿井必须有两个安全出口。")
    path = tmp_path / "renamed.doc"
    d.save(str(path))
    doc = read_document(path)
    assert doc.text == "第一条矿井必须有两个安全出口。"
    assert any("docx" in w for w in doc.warnings)


def test_pdf_with_chinese_text(tmp_path: Path) -> None:
    pytest.importorskip("reportlab")
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    path = tmp_path / "rule.pdf"
    c = canvas.Canvas(str(path))
    c.setFont("STSong-Light", 12)
    c.drawString(72, 750, "第五十八条工作水泵的能力，应当能在20h内排出矿井24h的正常涌水量。")
    c.drawString(72, 730, "第五十九条水仓应当定期清理。")
    c.save()
    doc = read_document(path)
    assert "第五十八条工作水泵的能力，应当能在20h内排出矿井24h的正常涌水量。" in doc.text
    assert [ch.locator for ch in split_into_chunks(doc)] == ["第五十八条–第五十九条"]


def test_bad_files_are_skipped_with_reason_and_run_continues(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)  # no LibreOffice
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\u3000\n", encoding="utf-8")
    (tmp_path / "image.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "legacy.doc").write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 600)
    (tmp_path / "good.txt").write_text("第一条有效条文。", encoding="utf-8")
    docs, skipped = load_documents([tmp_path, tmp_path / "missing.txt"])
    assert [d.source for d in docs] == ["good.txt"]
    reasons = {p.name: r for p, r in skipped}
    assert reasons["empty.txt"] == "empty file"
    assert "only whitespace" in reasons["blank.md"] or reasons["blank.md"] == "empty file"
    assert "binary" in reasons["image.txt"]
    assert "LibreOffice" in reasons["legacy.doc"] and ".docx" in reasons["legacy.doc"]
    assert reasons["missing.txt"] == "no such file or folder"


def test_cli_fails_only_when_nothing_readable(tmp_path: Path) -> None:
    docs = tmp_path / "docs"  # the output may not lie in the folder read (coalqa.paths)
    docs.mkdir()
    (docs / "empty.txt").write_bytes(b"")
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out))
    assert isinstance(result.exception, CoalqaError) and "nothing could be read" in str(result.exception)
    assert not out.exists()
    (docs / "law.txt").write_text(LAW, encoding="gb18030")
    result = run_cli(str(docs), "-o", str(out), "--max_chars", "200")
    assert result.exit_code == 0, result.output
    assert "empty.txt: empty file" in result.output  # warning names file and reason
    assert "1 read, 1 skipped" in result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(list(r)[:6] == ["id", "source", "title", "locator", "text", "chars"] for r in rows)


# ---------------------------------------------------------------- chunking


def test_law_articles_chapters_and_merging() -> None:
    doc = doc_of(LAW)
    chunks = split_into_chunks(doc, max_chars=1500)
    assert [(c.locator, c.heading) for c in chunks] == [
        ("第一条–第二条", "第一章 总则"),  # chapters are never merged across
        ("第五十八条–第六十条", "第二章排水"),
    ]
    assert chunks[0].text.startswith("煤矿防治水规定\n第一章 总则\n第一条")
    assert nonspace("".join(c.text for c in chunks)) == nonspace(doc.text)


def test_oversize_article_splits_at_sentences_with_item_locators() -> None:
    items = "".join(f"({n})第{n}项要求：设备必须完好，记录必须齐全，检查必须到位。\n" for n in "一二三四五六七八")
    doc = doc_of(f"第八十条矿井必须遵守下列规定：\n{items}第八十一条下一条。")
    chunks = split_into_chunks(doc, max_chars=100)
    assert all(c.chars <= 100 for c in chunks)
    assert chunks[0].locator == "第八十条"
    assert chunks[1].locator.startswith("第八十条(") and "–第八十条(" in chunks[1].locator
    assert chunks[-1].locator == "第八十一条"
    assert all(re.search(r"[。：；]$", c.text) for c in chunks)  # cut only at sentence ends
    assert nonspace("".join(c.text for c in chunks)) == nonspace(doc.text)


def test_long_line_splits_at_sentence_then_semicolon_and_warns_on_hard_cut() -> None:
    sentence = "采掘工作面的空气温度超过30℃时，必须停止作业；机电设备硐室超过34℃时，必须停止作业。"
    doc = doc_of("第九条" + sentence * 6 + "\n第十条" + "无标点长句" * 40)
    chunks = split_into_chunks(doc, max_chars=100)
    assert all(c.chars <= 100 for c in chunks)
    ninth = [c for c in chunks if c.locator == "第九条"]
    assert len(ninth) >= 2 and all(c.text.endswith(("。", "；")) for c in ninth)
    assert nonspace("".join(c.text for c in chunks)) == nonspace(doc.text)
    assert any("without punctuation was cut" in w for w in doc.warnings)


def test_standard_clauses_and_section_headings() -> None:
    doc = doc_of(STANDARD, "std.txt")
    chunks = split_into_chunks(doc, max_chars=1500)
    assert [(c.locator, c.heading) for c in chunks] == [
        ("1.0.1–1.0.2", "1总则"),
        ("2.0.1", "2术语"),
        ("6.2.2.8–6.2.2.9", "6瓦斯防治 / 6.2.2瓦斯防治"),
    ]
    assert chunks[0].text.startswith("1总则\n1.0.1为提高")


def test_repeated_article_prefix_stays_one_article() -> None:
    text = "第一百八十条矿井必须建立检查制度:\n(一)甲。\n第一百八十条(二)乙。\n第一百八十条通风日报必须审阅。\n第一百八十一条下一条。"
    chunks = split_into_chunks(doc_of(text), max_chars=30)
    assert [c.locator for c in chunks][:2] == ["第一百八十条", "第一百八十条"]
    assert chunks[-1].locator == "第一百八十一条"


def test_ids_stable_and_unique_and_jsonl_roundtrip(tmp_path: Path) -> None:
    a = split_into_chunks(doc_of(LAW), max_chars=120)
    b = split_into_chunks(doc_of(LAW), max_chars=120)
    assert [c.id for c in a] == [c.id for c in b] and len({c.id for c in a}) == len(a)
    path = tmp_path / "c.jsonl"
    write_chunks(a, path)
    assert read_chunks(path) == a


def test_read_chunks_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = {"id": "x", "source": "s", "title": "t", "locator": "第一条", "text": "文", "chars": 1}
    path.write_text(json.dumps(good) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"c\.jsonl:2: not valid JSON"):
        read_chunks(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "locator"}) + "\n", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"c\.jsonl:1: missing key\(s\) locator"):
        read_chunks(path)
    with pytest.raises(CoalqaError, match="not found"):
        read_chunks(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- real corpus

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def cn_to_int(s: str) -> int:
    total, num = 0, 0
    for ch in s:
        if ch in CN_DIGITS:
            num = CN_DIGITS[ch]
        else:
            total += (num or 1) * {"十": 10, "百": 100, "千": 1000}[ch]
            num = 0
    return total + num


def unit_key(label: str) -> tuple[int, ...]:
    m = re.match(r"第(.+?)条", label)
    return (cn_to_int(m.group(1)),) if m else tuple(int(x) for x in re.match(r"[\d.]+", label).group().split("."))


def covers(locator: str, cited: str) -> bool:
    """Does ``locator`` (``第五十七条–第六十五条`` / ``6.2.2.3–6.2.2.11``) include unit ``cited``?"""
    first, _, last = locator.partition("–")
    return unit_key(first) <= unit_key(cited) <= unit_key(last or first)


@pytest.fixture(scope="module")
def real_run(corpus_dir: Path, tmp_path_factory) -> tuple[list[Chunk], str]:
    out = tmp_path_factory.mktemp("corpus") / "chunks.jsonl"
    result = run_cli(str(corpus_dir), "-o", str(out))
    assert result.exit_code == 0, result.output
    return read_chunks(out), result.output


def test_real_corpus_every_file_chunked_within_limit(real_run, corpus_dir: Path) -> None:
    chunks, output = real_run
    assert {c.source for c in chunks} == {p.name for p in corpus_dir.iterdir()}
    assert max(c.chars for c in chunks) <= 1500
    assert all(c.chars == len(c.text) and c.text.strip() and c.locator and c.title for c in chunks)
    assert not any("\\n" in c.text for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    assert "40 read, 0 skipped" in output


def test_real_corpus_coverage_and_wording_kept(real_run, corpus_dir: Path) -> None:
    chunks, _ = real_run
    docs, skipped = load_documents([corpus_dir])
    assert not skipped
    for doc in docs:
        joined = nonspace("".join(c.text for c in chunks if c.source == doc.source))
        assert joined == nonspace(doc.text), doc.source  # 100% coverage, order kept, nothing doubled
        if doc.source.endswith(".txt"):  # cleaning removed only layout: literal \n and whitespace
            raw = doc.path.read_text(encoding="utf-8")
            assert nonspace(doc.text) == nonspace(raw.replace("\\n", "")), doc.source


@pytest.mark.parametrize(
    ("source", "cited", "fact"),
    [
        ("10-煤矿防治水规定.txt", "第五十八条", "应当能在20h内排出矿井24h的正常涌水量"),
        ("2-煤矿建设安全规程.txt", "第一百八十条", "2.高瓦斯矿井，每班至少3次；"),
        ("2-煤矿建设安全规程.txt", "第四百七十一条", "发出的矿灯，最低应当能连续正常使用11h。"),
        ("25-防治煤与瓦斯突出细则.txt", "第一百一十八条", "必须设置至少2道牢固可靠的反向风门"),
        ("8-煤矿安全生产事故报告及调查处理规定.txt", "第十条", "应当于1小时内报告事故发生地县级以上人民政府"),
        ("3-《煤矿建设安全规范》.txt", "6.2.2.8", "掘进工作面回风巷风流中瓦斯浓度超过1.0%或二氧化碳浓度超过1.5%时"),
        ("5-爆破安全规程.txt", "5.3.7.5", "延期时间不应超过130ms"),
        ("9-煤矿的井工开采通风技术条件.txt", "4.2.3", "机电设备硐室的空气温度超过34℃时，必须停止作业"),
        ("62-煤矿注浆防灭火技术规范.txt", "10.2", "出浆口距工作面的距离应不小于15m"),
    ],
)
def test_real_corpus_locators_checked_by_hand(real_run, source: str, cited: str, fact: str) -> None:
    chunks, _ = real_run
    holding = [c for c in chunks if c.source == source and fact in c.text]
    assert len(holding) == 1, (source, fact)
    assert covers(holding[0].locator, cited), (holding[0].locator, cited)
