"""Document fidelity (issue 14): every kind of document that used to lose or change numbers on the way to a
chunk, built here as a small fixture, read and chunked with exact texts and locators; the fidelity report;
cross-references and numbering order on the real corpus."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from coalqa.corpus import Document, clean_text, load_documents, read_document, split_into_chunks
from coalqa.corpus.chunking import FRONT, label_key
from coalqa.corpus.report import document_report
from coalqa.numbers import number_tokens

W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" ' \
       'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'


def run_cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from coalqa.corpus.command import corpus

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("corpus")(corpus)
    return CliRunner().invoke(app, ["corpus", *args])


def all_numbers_kept(source: str, chunks) -> None:
    """Every number token of ``source`` is in the chunks, as often as in the source."""
    missing = Counter(number_tokens(source)) - Counter(number_tokens("\n".join(c.text for c in chunks)))
    assert not missing, missing


def doc_of(text: str, source: str = "law.txt") -> Document:
    return Document(source=source, path=Path(source), title="T", text=clean_text(text), raw_text=text)


# ---------------------------------------------------------------- docx: runs wherever they are nested


def _body_paragraph(d, inner_xml: str) -> None:
    from docx.oxml import parse_xml

    p = parse_xml(f"<w:p {W_NS}>{inner_xml}</w:p>")
    d.element.body.insert(len(d.element.body) - 1, p)  # before sectPr


def _r(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def test_docx_runs_in_insertions_hyperlinks_fields_and_controls_are_read_deletions_are_not(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    from docx.oxml import parse_xml

    d = docx.Document()
    d.core_properties.title = "煤矿通风安全规定"
    rid = d.part.relate_to("http://example.invalid/rule", docx.opc.constants.RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
    # 第一条: the number typed with change tracking on; an old number deleted
    _body_paragraph(d, _r("第一条矿井必须建立测风制度，每")
                    + f'<w:ins w:id="1" w:author="a">{_r("10")}</w:ins>'
                    + '<w:del w:id="2" w:author="a"><w:r><w:delText>7</w:delText></w:r></w:del>'
                    + _r("天至少进行1次全面测风。"))
    # 第二条: a hyperlink and a simple field holding numbers
    _body_paragraph(d, _r("第二条依照")
                    + f'<w:hyperlink r:id="{rid}">{_r("《煤矿安全规程》第一百三十六条")}</w:hyperlink>'
                    + _r("，风速不得低于")
                    + '<w:fldSimple w:instr=" = 0.25 "><w:r><w:t>0.25</w:t></w:r></w:fldSimple>'
                    + _r("m/s。"))
    # 第三条: a complex field (code hidden, result shown), an inline content control, a smart tag
    _body_paragraph(d, _r("第三条局部通风机距回风口不得小于")
                    + '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
                    + '<w:r><w:instrText xml:space="preserve"> QUOTE 99 </w:instrText></w:r>'
                    + '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
                    + _r("10")
                    + '<w:r><w:fldChar w:fldCharType="end"/></w:r>'
                    + _r("m，吸入风量不得超过")
                    + f'<w:sdt><w:sdtPr><w:alias w:val="风量"/></w:sdtPr><w:sdtContent>{_r("70%")}</w:sdtContent></w:sdt>'
                    + f'<w:smartTag w:uri="u" w:element="e">{_r("。")}</w:smartTag>')
    # 第四条: a whole paragraph inside a block-level content control; a deleted paragraph after it
    d.element.body.insert(len(d.element.body) - 1, parse_xml(
        f'<w:sdt {W_NS}><w:sdtPr/><w:sdtContent><w:p>{_r("第四条每班至少检查3次。")}</w:p></w:sdtContent></w:sdt>'))
    _body_paragraph(d, '<w:del w:id="3" w:author="a"><w:r><w:delText>第五条已删除的条文8次。</w:delText></w:r></w:del>')
    path = tmp_path / "vent.docx"
    d.save(str(path))

    doc = read_document(path)
    assert doc.text.split("\n") == [
        "第一条矿井必须建立测风制度，每10天至少进行1次全面测风。",
        "第二条依照《煤矿安全规程》第一百三十六条，风速不得低于0.25m/s。",
        "第三条局部通风机距回风口不得小于10m，吸入风量不得超过70%。",
        "第四条每班至少检查3次。",
    ]
    chunks = split_into_chunks(doc, max_chars=40)
    assert [c.locator for c in chunks] == ["第一条", "第二条", "第三条", "第四条"]
    assert chunks[0].text == "第一条矿井必须建立测风制度，每10天至少进行1次全面测风。"
    report = document_report(doc, chunks)
    assert report["numbers_missing_count"] == 0 and report["chars_lost"] == 0 and not report["warnings"]
    assert number_tokens(doc.text) == ["10", "1", "0.25", "10", "70", "3"]  # not the deleted 7 and 8, nor the code's 99
    assert report["numbers_in"] == 6
    assert "99" not in doc.text and "已删除" not in doc.text


# ---------------------------------------------------------------- docx: automatic list numbering


NUMBERING = """
<w:abstractNum {ns} w:abstractNumId="90">
  <w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="chineseCounting"/><w:lvlText w:val="第%1章"/><w:suff w:val="space"/></w:lvl>
  <w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="chineseCounting"/><w:lvlRestart w:val="0"/><w:lvlText w:val="第%2条"/><w:suff w:val="nothing"/></w:lvl>
  <w:lvl w:ilvl="2"><w:start w:val="1"/><w:numFmt w:val="chineseCounting"/><w:lvlText w:val="（%3）"/><w:suff w:val="nothing"/></w:lvl>
</w:abstractNum>
<w:abstractNum {ns} w:abstractNumId="91">
  <w:lvl w:ilvl="0"><w:start w:val="4"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1"/></w:lvl>
  <w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1.%2"/></w:lvl>
  <w:lvl w:ilvl="2"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1.%2.%3"/></w:lvl>
</w:abstractNum>
"""


def test_docx_list_numbering_is_rendered_chinese_and_arabic_with_restarts(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    from docx.oxml import parse_xml

    d = docx.Document()
    numbering = d.part.numbering_part.element
    first_num = numbering.find("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}num")
    for xml in re.findall(r"<w:abstractNum .*?</w:abstractNum>", NUMBERING.format(ns=W_NS), re.DOTALL):
        (first_num.addprevious if first_num is not None else numbering.append)(parse_xml(xml))
    numbering.append(parse_xml(f'<w:num {W_NS} w:numId="90"><w:abstractNumId w:val="90"/></w:num>'))
    numbering.append(parse_xml(f'<w:num {W_NS} w:numId="91"><w:abstractNumId w:val="91"/></w:num>'))

    def item(num: int, level: int, text: str) -> None:
        _body_paragraph(d, f'<w:pPr><w:numPr><w:ilvl w:val="{level}"/><w:numId w:val="{num}"/></w:numPr></w:pPr>{_r(text)}')

    _body_paragraph(d, _r("煤矿通风安全规定"))
    item(90, 0, "总则")
    item(90, 1, "为了加强煤矿通风管理，制定本规定。")
    item(90, 1, "矿井必须建立测风制度：")
    item(90, 2, "每10天至少进行1次全面测风；")
    item(90, 2, "采掘工作面每班测风1次。")
    item(90, 0, "风量")
    item(90, 1, "采掘工作面风速不得低于0.25m/s。")  # articles run on across chapters (lvlRestart 0)
    item(90, 2, "进风井口以下的空气温度必须在2℃以上。")  # item numbers restart under a new article
    item(91, 0, "主要通风机")  # a standard's clauses: 4 / 4.1 / 4.1.1, restarting per level
    item(91, 1, "一般规定")
    item(91, 2, "主要通风机必须安装在地面，风量不得小于30m3/s。")
    item(91, 2, "装有主要通风机的出风井口应当安装防爆门。")
    item(91, 1, "反风")
    item(91, 2, "反风后10min内必须改变巷道中的风流方向。")
    path = tmp_path / "numbered.docx"
    d.save(str(path))

    doc = read_document(path)
    assert doc.text.split("\n") == [
        "煤矿通风安全规定",
        "第一章 总则",
        "第一条为了加强煤矿通风管理，制定本规定。",
        "第二条矿井必须建立测风制度：",
        "（一）每10天至少进行1次全面测风；",
        "（二）采掘工作面每班测风1次。",
        "第二章 风量",
        "第三条采掘工作面风速不得低于0.25m/s。",
        "（一）进风井口以下的空气温度必须在2℃以上。",
        "4 主要通风机",
        "4.1 一般规定",
        "4.1.1 主要通风机必须安装在地面，风量不得小于30m3/s。",
        "4.1.2 装有主要通风机的出风井口应当安装防爆门。",
        "4.2 反风",
        "4.2.1 反风后10min内必须改变巷道中的风流方向。",
    ]
    chunks = split_into_chunks(doc)
    assert [(c.locator, c.heading) for c in chunks] == [
        ("第一条–第二条", "第一章 总则"),
        ("第三条", "第二章 风量"),
        ("4.1.1–4.2.1", "4 主要通风机 / 4.1 一般规定"),
    ]
    assert chunks[0].title == "煤矿通风安全规定"
    all_numbers_kept(doc.raw_text, chunks)


# ---------------------------------------------------------------- PDFs


def _canvas(path: Path, title: str | None = None):
    pytest.importorskip("reportlab")
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path), pagesize=(420, 595))
    if title is not None:
        c.setTitle(title)
    return c


def _glyphs(c, x: float, y: float, text: str, size: float = 12) -> None:
    """Draw ``text`` one glyph at a time, each in its own text object at its own position."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    for ch in text:
        c.setFont("STSong-Light", size)
        c.drawString(x, y, ch)
        x += stringWidth(ch, "STSong-Light", size)


PER_GLYPH = ["煤矿安全规定", "第一条矿井必须有2个安全出口。", "第二条每班至少检查3次，风速0.25m/s。"]


def test_pdf_placed_glyph_by_glyph_reads_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "glyphs.pdf"
    c = _canvas(path)
    for n, line in enumerate(PER_GLYPH):
        _glyphs(c, 40, 540 - 24 * n, line)
    c.save()
    doc = read_document(path)
    assert doc.text.split("\n") == PER_GLYPH
    chunks = split_into_chunks(doc)
    assert [c.locator for c in chunks] == ["第一条–第二条"]
    assert chunks[0].text == "\n".join(PER_GLYPH)
    report = document_report(doc, chunks)
    assert not report["suspicious"] and not report["warnings"]
    all_numbers_kept("\n".join(PER_GLYPH), chunks)


WRAPPED = [  # paragraphs of the original; the PDF wraps them at 20 characters a line, indenting each first line
    "第五条人行道的宽度不得低于0.8m，车辆最突出部分与巷道两帮之间的距离均不得小于1.5m，人行道宽度不得小于0.8m。",
    "第六条巷道净高不得低于1.85m，其中倾角大于15°的巷道，应当设置扶手、台阶或者梯道。",
    "第七条斜巷内每隔30m至40m应当设置躲避硐。",
]


def test_pdf_hard_wraps_reflowed_headers_and_page_numbers_removed_junk_title_ignored(tmp_path: Path) -> None:
    path = tmp_path / "3-巷道安全规定.pdf"
    c = _canvas(path, title="Microsoft Word - 发文稿.doc")
    from reportlab.pdfbase.pdfmetrics import stringWidth

    size, width, x0 = 12, 240, 40
    lines = []  # wrapped by width like a layout engine: each line as full as the next character allows
    for para in WRAPPED:
        indent, line = 2 * size, ""
        for ch in para:
            if stringWidth(line + ch, "STSong-Light", size) > width - indent:
                lines.append((x0 + indent, line))
                indent, line = 0, ""
            line += ch
        lines.append((x0 + indent, line))
    per_page = 5
    pages = [lines[k : k + per_page] for k in range(0, len(lines), per_page)]
    for n, page in enumerate(pages, 1):
        c.setFont("STSong-Light", 9)
        c.drawString(x0, 570, "巷道安全规定（2024年版）")  # running header
        c.drawCentredString(210, 20, f"- {n} -")  # page number
        c.setFont("STSong-Light", size)
        for k, (x, text) in enumerate(page):
            c.drawString(x, 520 - 20 * k, text)
        c.showPage()
    c.save()
    assert len(pages) >= 2 and lines[2][1].startswith("1.5m，")  # a wrapped line starts with a number

    doc = read_document(path)
    assert doc.text.split("\n") == WRAPPED
    assert doc.title == "巷道安全规定"  # not "Microsoft Word - 发文稿.doc"
    assert sorted(doc.removed) == sorted(["巷道安全规定（2024年版）"] * len(pages) + [f"- {n} -" for n in range(1, len(pages) + 1)])
    chunks = split_into_chunks(doc, max_chars=60)
    assert [c.locator for c in chunks] == ["第五条", "第六条", "第七条"]
    assert [c.text for c in chunks] == WRAPPED
    report = document_report(doc, chunks)
    assert report["removed_lines"] == 2 * len(pages) and report["numbers_missing_count"] == 0 and not report["warnings"]
    all_numbers_kept("\n".join(WRAPPED), chunks)


@pytest.mark.parametrize("title", ["untitled", "Microsoft Word - 发文稿.doc", "文档1", "rule.pdf"])
def test_junk_metadata_title_falls_back_to_the_file_name(tmp_path: Path, title: str) -> None:
    path = tmp_path / "12-矿井防火规定.pdf"
    c = _canvas(path, title=title)
    c.setFont("STSong-Light", 12)
    c.drawString(40, 500, "第一条井下严禁使用灯泡取暖。")
    c.save()
    assert read_document(path).title == "矿井防火规定"


def test_damaged_and_encrypted_pdfs_are_skipped_with_reason(tmp_path: Path) -> None:
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    (tmp_path / "damaged.pdf").write_bytes(b"%PDF-1.4\ngarbage\n")
    c = canvas.Canvas(str(tmp_path / "locked.pdf"), encrypt=pdfencrypt.StandardEncryption("secret", ownerPassword="o"))
    c.drawString(72, 700, "rule 12")
    c.save()
    docs, skipped = load_documents([tmp_path])
    reasons = {p.name: r for p, r in skipped}
    assert not docs and reasons["damaged.pdf"].startswith("unreadable PDF")
    assert reasons["locked.pdf"] == "encrypted PDF: save an unencrypted copy"


def test_garbled_extraction_is_flagged() -> None:
    doc = doc_of("\n".join("煤矿安全规程第一条矿井必须有两个安全出口" * 4), "glyph.txt")
    report = document_report(doc, split_into_chunks(doc))
    assert any("median line length 1" in s for s in report["suspicious"])
    assert any("no sentence punctuation" in s for s in report["suspicious"])
    bad = doc_of("第一条风速不得超过4m/s\ufffd\ufffd。" * 3, "bad.txt")
    assert document_report(bad, split_into_chunks(bad))["suspicious"] == [
        "6 replacement character(s) (unmapped glyphs or a wrong encoding)"]


# ---------------------------------------------------------------- plain text: one line, cross-references, width

ONE_LINE = ("煤矿通风安全规定 第一章 总则 第一条 为了加强煤矿通风管理，制定本规定。 第二条 矿井必须建立测风制度，"
            "每10天至少进行1次全面测风。 第二章 风量 第三条 采掘工作面的进风流中，氧气浓度不低于20%，"
            "二氧化碳浓度不超过0.5%。 第四条 违反第二条的规定的，依照第三条处理。")


def test_one_line_law_is_split_into_chapters_and_articles() -> None:
    doc = doc_of(ONE_LINE)
    chunks = split_into_chunks(doc, max_chars=60)
    assert [(c.locator, c.heading) for c in chunks] == [
        ("第一条", "第一章 总则"),
        ("第二条", "第一章 总则"),
        ("第三条", "第二章 风量"),
        ("第四条", "第二章 风量"),
    ]
    assert [c.text for c in chunks] == [
        "煤矿通风安全规定\n第一章 总则\n第一条 为了加强煤矿通风管理，制定本规定。",
        "第二条 矿井必须建立测风制度，每10天至少进行1次全面测风。",
        "第二章 风量\n第三条 采掘工作面的进风流中，氧气浓度不低于20%，二氧化碳浓度不超过0.5%。",
        "第四条 违反第二条的规定的，依照第三条处理。",
    ]
    assert FRONT not in [c.locator for c in chunks]
    all_numbers_kept(ONE_LINE, chunks)


CROSS_REF_STANDARD = (
    "11.5.14 护套试验\n"
    "11.5.14.1 ST12外护套应进行热冲击试验，试验温度150℃，持续1h。\n"
    "11.5.14.2的试验适用于ST12外护套。\n"
    "11.5.14.2 ST13外护套应进行低温冲击试验，试验温度-15℃。\n"
    "11.5.14.3 按11.5.14.1所述方法试验3次。\n"
)
CROSS_REF_LAW = (
    "第十九条 未按规定测风的，责令限期改正，处2万元以上5万元以下的罚款；\n"
    "情节严重的，依照本规定\n"
    "第二十条的规定予以处罚。\n"
    "第二十条 违反第十九条规定的，处10万元以下的罚款。\n"
    "第十九条规定的罚款由煤矿安全监察机构决定。\n"
    "第二十一条 本规定自发布之日起施行。\n"
)


def test_cross_references_at_line_start_are_not_headings() -> None:
    std = split_into_chunks(doc_of(CROSS_REF_STANDARD, "std.txt"), max_chars=60)
    assert [(c.locator, c.text) for c in std] == [  # 11.5.14.1 is split in two pieces at max_chars 60
        ("11.5.14.1", "11.5.14 护套试验\n11.5.14.1 ST12外护套应进行热冲击试验，试验温度150℃，持续1h。"),
        ("11.5.14.1", "11.5.14.2的试验适用于ST12外护套。"),
        ("11.5.14.2", "11.5.14.2 ST13外护套应进行低温冲击试验，试验温度-15℃。"),
        ("11.5.14.3", "11.5.14.3 按11.5.14.1所述方法试验3次。"),
    ]
    law = split_into_chunks(doc_of(CROSS_REF_LAW), max_chars=65)
    assert [c.locator for c in law] == ["第十九条", "第二十条", "第二十一条"]
    assert law[0].text.endswith("情节严重的，依照本规定\n第二十条的规定予以处罚。")
    assert law[1].text.endswith("第十九条规定的罚款由煤矿安全监察机构决定。")
    all_numbers_kept(CROSS_REF_STANDARD, std)
    all_numbers_kept(CROSS_REF_LAW, law)


def test_numbering_restart_never_makes_a_backwards_range() -> None:
    text = ("第一条 甲规定。\n第二条 乙规定。\n附件 实施细则\n第一条 细则甲。\n第二条 细则乙。\n"
            "1 总则\n1.0.1 第一款。\n1.0.2 第二款。\n条文说明\n1.0.1 说明一。\n1.0.2 说明二。")
    chunks = split_into_chunks(doc_of(text), max_chars=1500)
    assert [c.locator for c in chunks] == ["第一条–第二条", "第一条–第二条", "1.0.1–1.0.2", "1.0.1–1.0.2"]


FULL_WIDTH = (
    "５　通风\n"
    "５．２　主要通风机\n"
    "５．２．１　主要通风机的风量不得小于３０ｍ３／ｓ，风压不超过２９４０Ｐａ。\n"
    "５．２．２　主要通风机停止运转时，必须在１０ｍｉｎ内启动备用通风机。\n"
)


def test_full_width_clause_numbers_are_found_and_kept_as_written() -> None:
    chunks = split_into_chunks(doc_of(FULL_WIDTH, "fw.txt"), max_chars=60)
    assert [(c.locator, c.heading) for c in chunks] == [
        ("5.2.1", "５ 通风 / ５．２ 主要通风机"),
        ("5.2.2", "５ 通风 / ５．２ 主要通风机"),
    ]
    assert chunks[0].text == "５ 通风\n５．２ 主要通风机\n５．２．１ 主要通风机的风量不得小于３０ｍ３／ｓ，风压不超过２９４０Ｐａ。"
    all_numbers_kept(FULL_WIDTH, chunks)

    from coalqa.generate.clause import fact_pairs

    pairs = fact_pairs({"text": chunks[0].text, "title": "通风规范", "locator": chunks[0].locator}, 1024)
    assert pairs[0] == {"input": "根据《通风规范》5.2.1，主要通风机的风量不得小于多少ｍ３／ｓ，风压不超过多少Ｐａ？",
                        "output": "主要通风机的风量不得小于３０ｍ３／ｓ，风压不超过２９４０Ｐａ。"}


def test_number_tokens_list_every_digit_run() -> None:
    assert number_tokens("６．２．１ 风量３０ｍ３／ｓ，GB50471-2008，第3条，1．") == ["6.2.1", "30", "3", "50471", "2008", "3", "1"]
    assert number_tokens("无数字") == []


# ---------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def real_docs(corpus_dir: Path):
    docs, skipped = load_documents([corpus_dir])
    assert not skipped
    return docs


def test_real_corpus_keeps_every_sentence_and_number(real_docs) -> None:
    assert len(real_docs) == 40
    for doc in real_docs:
        chunks = split_into_chunks(doc)
        report = document_report(doc, chunks)
        assert report["numbers_missing_count"] == 0 and report["chars_lost"] == 0, (doc.source, report["warnings"])
        assert not report["warnings"], (doc.source, report["warnings"])
        joined = re.sub(r"\s+", "", "".join(c.text for c in chunks))
        sentences = [s for s in re.split(r"(?<=[。！？；])", re.sub(r"\s+", "", doc.text)) if s]
        assert all(s in joined for s in sentences), doc.source
        assert report["numbers_in"] == len(number_tokens(clean_text(doc.raw_text or doc.text)))


def test_real_corpus_no_backwards_locator_range(real_docs) -> None:
    for doc in real_docs:
        for max_chars in (300, 1500):
            for c in split_into_chunks(doc, max_chars):
                first, _, last = c.locator.partition("–")
                a, b = label_key(re.sub(r"\(.*", "", first)), label_key(re.sub(r"\(.*", "", last or first))
                assert not (a and b and a[0] == b[0] and b < a), (doc.source, c.locator)


def test_real_corpus_cross_references_in_files_32_and_38(real_docs) -> None:
    by_source = {d.source: d for d in real_docs}
    law = split_into_chunks(by_source["32-中华人民共和国矿山资源法.txt"], max_chars=100)
    ref = [c for c in law if "第四十四条规定的行政处罚,由省" in c.text]
    assert [c.locator for c in ref] == ["第四十五条"]  # continues 第四十五条, not a second 第四十四条
    assert [c.locator for c in law if c.text.startswith("第四十四条违反本法规定")] == ["第四十四条"]
    assert [c.locator for c in law].count("第四十四条") == 1
    std = split_into_chunks(by_source["38-煤矿井下瓦斯压力的直接测定方法.txt"], max_chars=200)
    ref = [c for c in std if "8.3.2的规定，如压力变化在3d内小于0.015MPa" in c.text]
    assert [c.locator for c in ref] == ["8.4.1–8.4.4"]  # under 8.4, not a clause 8.3.2
    assert [c.locator for c in std if "观测时间的确定应遵循以下原则" in c.text] == ["8.3.2"]


def test_real_corpus_glued_and_full_width_clause_numbers(real_docs) -> None:
    by_source = {d.source: d for d in real_docs}
    std = split_into_chunks(by_source["3-《煤矿建设安全规范》.txt"], max_chars=200)
    assert [c.locator for c in std if c.text.startswith("7.2.4.42台以上挖掘机")] == ["7.2.4.4–7.2.4.5"]  # not 7.2.4.42
    fw = split_into_chunks(by_source["81-矿山环境地质分类.txt"], max_chars=1500)
    assert "3.1.1–3.2.4" in [c.locator for c in fw]  # written ３.1.1 … in the file
    assert any("３煤矿区环境地质类型的确定" in c.text for c in fw)  # text keeps its full-width digits


def test_corpus_cli_report_file_and_strict(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "law.txt").write_text("第一条 每10天至少进行1次全面测风。\n第二条 风速不得低于0.25m/s。", encoding="utf-8")
    (docs / "glyph.txt").write_text("\n".join("煤矿安全规程第一条矿井必须有两个安全出口" * 4), encoding="utf-8")
    out = tmp_path / "out" / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "chunks.report.json").read_text(encoding="utf-8"))
    by_source = {d["source"]: d for d in report["documents"]}
    assert by_source["law.txt"]["numbers_in"] == by_source["law.txt"]["numbers_out"] == 3
    assert by_source["law.txt"]["warnings"] == []
    assert "glyph.txt: suspicious extraction: median line length 1" in result.output
    assert report["totals"]["warnings"] == len(by_source["glyph.txt"]["warnings"]) >= 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all(len(r["sha"]) == 16 for r in rows)

    out.unlink()
    result = run_cli(str(docs), "-o", str(out), "--strict")
    assert result.exit_code != 0 and "--strict" in str(result.exception) and "glyph.txt" in str(result.exception)
    assert not out.exists()  # chunks not written; the report is
    assert json.loads((tmp_path / "out" / "chunks.report.json").read_text(encoding="utf-8"))["strict_failed"] is True
    (docs / "glyph.txt").unlink()
    assert run_cli(str(docs), "-o", str(out), "--strict").exit_code == 0 and out.exists()
