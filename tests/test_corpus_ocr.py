"""OCR of scanned regulations (issue 23): an image-only PDF and a .png made here (known Chinese text with numbers
drawn with a CJK font and rasterised) come out as chunks marked ``ocr: true`` with the right numbers; suspect
numbers, unit case, reading order; bad input named and skipped without losing the other files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coalqa.corpus.ocr import OcrLine, fix_unit_case, reading_order, suspect_numbers
from coalqa.numbers import number_tokens

FONT_PATHS = ["/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"]
SCANNED = [
    "煤矿通风管理规定",
    "第一条采煤工作面的风速不得低于0.25m/s，最高不得超过4m/s。",
    "第二条主要运输巷道净高不得低于2.2m，斜巷内每隔30m应当设置躲避洞。",
    "第三条工作水泵应当能在20h内排出矿井24h的正常涌水量。",
    "第四条瓦斯浓度达到1.0%时，必须停止工作，撤出人员。",
]


def run_cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from coalqa.corpus.command import corpus

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("corpus")(corpus)
    return CliRunner().invoke(app, ["corpus", *args])


def scanned_page(lines: list[str], dpi: int = 200):
    """A grey page image (PIL) with ``lines`` drawn in 12-pt WenQuanYi Zen Hei, one per line, at ``dpi``."""
    pytest.importorskip("rapidocr_onnxruntime")
    from PIL import Image, ImageDraw, ImageFont

    font_path = next((p for p in FONT_PATHS if Path(p).is_file()), None)
    if font_path is None:
        pytest.skip("needs fonts-wqy-zenhei (scripts/test-system-packages.sh installs it)")
    font = ImageFont.truetype(font_path, round(12 / 72 * dpi))
    img = Image.new("L", (round(8.27 * dpi), round(4 * dpi)), 255)  # the top of an A4 page
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        indent = 0.33 if line.startswith("第") else 0
        draw.text((round((1 + indent) * dpi), round((0.6 + 0.3 * k) * dpi)), line, font=font, fill=0)
    return img


def test_image_only_pdf_is_ocrd_into_marked_chunks_with_the_right_numbers(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned_page(SCANNED).save(docs / "scan.pdf", "PDF", resolution=200)  # image only: no text layer
    from coalqa.corpus.pdffile import PdfError, pdf_text

    with pytest.raises(PdfError, match=r"image-only PDF \(1 page\(s\) without a text layer\) and --ocr never"):
        pdf_text(docs / "scan.pdf", ocr="never")
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["ocr"] is True and 0.5 < r["ocr_confidence"] <= 1 for r in rows)
    text = "\n".join(r["text"] for r in rows)
    assert number_tokens(text) == number_tokens("\n".join(SCANNED))
    assert [r["locator"] for r in rows] == ["第一条–第四条"]
    assert "不得低于0.25m/s" in text and "24h的正常涌水量" in text
    report = json.loads((tmp_path / "chunks.report.json").read_text(encoding="utf-8"))
    doc = report["documents"][0]
    assert doc["ocr"]["pages"] == [1] and doc["ocr"]["lines"] == len(SCANNED)
    assert doc["ocr"]["suspect_numbers"] == [] and doc["numbers_missing_count"] == 0
    assert report["totals"]["ocr_pages"] == 1 and "1 by OCR" in result.output


def test_png_scan_is_ocrd_and_ocr_never_names_and_skips_it_keeping_the_others(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    scanned_page(SCANNED[:3]).save(docs / "page.png", dpi=(200, 200))
    scanned_page(SCANNED[3:]).save(docs / "scan.pdf", "PDF", resolution=200)
    (docs / "law.txt").write_text("第五条井下严禁使用灯泡取暖。", encoding="utf-8")
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out), "--ocr", "never")
    assert result.exit_code == 0, result.output
    assert "1 read, 2 skipped" in result.output
    assert "scan.pdf: image-only PDF (1 page(s) without a text layer) and --ocr never" in result.output
    assert "page.png: an image (a scanned page?) and --ocr never" in result.output
    assert [json.loads(line)["source"] for line in out.read_text(encoding="utf-8").splitlines()] == ["law.txt"]
    result = run_cli(str(docs), "-o", str(out))  # default --ocr auto
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    png = [r for r in rows if r["source"] == "page.png"]
    assert png and png[0]["ocr"] and "2.2m" in png[0]["text"]
    assert not any("ocr" in r for r in rows if r["source"] == "law.txt")


def test_encrypted_and_damaged_pdfs_are_named_skipped_and_counted(tmp_path: Path) -> None:
    pytest.importorskip("reportlab")
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    docs = tmp_path / "docs"
    docs.mkdir()
    c = canvas.Canvas(str(docs / "locked.pdf"), encrypt=pdfencrypt.StandardEncryption("secret", ownerPassword="o"))
    c.drawString(72, 700, "rule 12")
    c.save()
    (docs / "damaged.pdf").write_bytes(b"%PDF-1.4\ngarbage\n")
    (docs / "law.txt").write_text("第一条矿井必须有2个安全出口。", encoding="utf-8")
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "locked.pdf: encrypted PDF: save an unencrypted copy" in result.output
    assert "damaged.pdf: unreadable PDF" in result.output and "1 read, 2 skipped" in result.output
    report = json.loads((tmp_path / "chunks.report.json").read_text(encoding="utf-8"))
    assert report["totals"]["skipped"] == 2 and {Path(s["path"]).name for s in report["skipped"]} == {"locked.pdf", "damaged.pdf"}
    assert json.loads(out.read_text(encoding="utf-8"))["source"] == "law.txt"


@pytest.mark.parametrize("text, suspects", [
    ("风速不得超过S3m/s", ["S3m"]),
    ("浓度O.5%以下", ["O.5"]),
    ("距离不小于l0m", ["l0m"]),
    ("每1O天", ["1O"]),
    ("风速4m/s，5s内，CH4、CO2、O2浓度，GB50471-2008，AQ1020，10m3/min，0.5MPa", []),
])
def test_numbers_glued_to_lookalike_letters_are_suspect(text: str, suspects: list[str]) -> None:
    assert suspect_numbers(text) == suspects


def test_unit_case_is_normalised_like_the_number_check() -> None:
    assert fix_unit_case("最高不得超过4m/S，风量10m3/MIN") == "最高不得超过4m/s，风量10m3/min"
    assert fix_unit_case("CH4/S") == "CH4/S"  # not after a number with a unit


def test_reading_order_two_columns_then_full_width() -> None:
    def box(text, x0, x1, top):
        return OcrLine(text, x0, x1, top, top + 12, 0.99)

    boxes = [box("标题横跨两栏", 100, 500, 50),
             box("左一", 50, 280, 100), box("右一", 320, 550, 100),
             box("左二", 50, 280, 120), box("右二", 320, 550, 120),
             box("左三", 50, 280, 140), box("右三", 320, 550, 140),
             box("左四", 50, 200, 160), box("的后半", 205, 280, 161),  # one printed line in two boxes
             box("右四", 320, 550, 160),
             box("页脚横跨", 60, 540, 700)]
    assert [b.text for b in reading_order(boxes, 600)] == [
        "标题横跨两栏", "左一", "左二", "左三", "左四的后半", "右一", "右二", "右三", "右四", "页脚横跨"]


def test_grounded_citation_says_a_clause_came_from_ocr(tmp_path: Path) -> None:
    from coalqa.ask.config import AskConfig
    from coalqa.grounding import finish, retrieve_support
    from coalqa.corpus import Chunk, read_chunks, write_chunks
    from coalqa.retrieval import build_index, load_index

    chunks = [Chunk("a1", "scan.pdf", "煤矿通风管理规定", "第一条", SCANNED[1], len(SCANNED[1]), ocr=True, ocr_confidence=0.98),
              Chunk("b1", "law.txt", "排水规定", "第三条", SCANNED[3], len(SCANNED[3]))]
    path = tmp_path / "chunks.jsonl"
    write_chunks(chunks, path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["ocr"] is True and rows[0]["ocr_confidence"] == 0.98 and "ocr" not in rows[1]
    assert [c.ocr for c in read_chunks(path)] == [True, False]
    build_index([path], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    config = AskConfig(min_score=0.01)  # two clauses only: BM25 scores are small
    grounding = retrieve_support(index, "采煤工作面的风速不得低于多少？", config, 2)
    assert grounding.supporting
    result = finish(index, grounding, {"answer": "不得低于0.25m/s。"}, config)
    cited = {c["chunk_id"]: c for c in result["citations"]}
    assert cited["a1"]["ocr"] is True and "ocr" not in cited.get("b1", {})


def test_only_the_page_without_text_is_ocrd_and_only_its_chunk_is_marked(tmp_path: Path) -> None:
    pytest.importorskip("reportlab")
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    from coalqa.corpus import read_document, split_into_chunks

    image = scanned_page(SCANNED[3:])  # 第三条, 第四条 as a scan
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    path = tmp_path / "mixed.pdf"
    c = canvas.Canvas(str(path), pagesize=(595, 842))
    c.setFont("STSong-Light", 12)
    c.drawString(72, 760, SCANNED[1])  # page 1: a text layer
    c.drawString(72, 740, SCANNED[2])
    c.showPage()
    c.drawImage(ImageReader(image), 0, 842 - 288, width=595, height=288)  # page 2: an image only
    c.save()
    doc = read_document(path)
    assert doc.ocr_pages == [2] and doc.text.split("\n") == SCANNED[1:]
    assert doc.confidence[:2] == [None, None] and all(0.5 < x <= 1 for x in doc.confidence[2:])
    chunks = split_into_chunks(doc, max_chars=40)
    assert [(ch.locator, ch.ocr) for ch in chunks] == [("第一条", False), ("第二条", False), ("第三条", True), ("第四条", True)]


def test_report_lists_low_confidence_lines_with_their_numbers_and_warns_on_suspect_numbers() -> None:
    from coalqa.corpus import Document, split_into_chunks
    from coalqa.corpus.report import document_report

    lines = [(1, "第一条风速不得超过S3m/s。", 0.95), (1, "第二条距离不得小于10m，高度2.2m。", 0.62)]
    doc = Document(source="scan.pdf", path=Path("scan.pdf"), title="T", text="\n".join(t for _, t, _ in lines),
                   confidence=[c for _, _, c in lines], ocr_pages=[1], ocr_lines=lines)
    chunks = split_into_chunks(doc)
    assert all(ch.ocr and ch.ocr_confidence == 0.62 for ch in chunks)
    report = document_report(doc, chunks)
    assert report["ocr"]["low_confidence"] == [
        {"page": 1, "text": "第二条距离不得小于10m，高度2.2m。", "confidence": 0.62, "numbers": ["10", "2.2"]}]
    assert report["ocr"]["suspect_numbers"] == [{"page": 1, "number": "S3m", "text": "第一条风速不得超过S3m/s。"}]
    assert any("suspect number(s) in OCR'd text" in w and "S3m (page 1)" in w for w in report["warnings"])
