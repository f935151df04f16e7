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
    from coalqa.corpus import Chunk, read_chunks, write_chunks
    from coalqa.grounding import finish, retrieve_support
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


# --- OCR'd text is judged, not trusted blindly (unreadable scans, misread article numbers, --ocr never) ---

BAD_SCAN = [
    "第五条主要通风机停止运转时，应当在130ms内发出报警信号。",
    "第六条采区进风巷的风速不得超过6m/s，回风巷不得超过8m/s。",
    "第七条井下爆破地点20m以内风流中瓦斯浓度达到1.0%时，严禁爆破。",
    "第八条局部通风机应当实行专用变压器供电，每隔15天试验一次。",
]


def degraded(image, dpi: int = 90, blur: float = 1.0, noise: float = 40, seed: int = 0):
    """``image`` (a 200-dpi page) as a poor scan: resampled to ``dpi``, Gaussian-blurred by ``blur`` px, with
    Gaussian grey noise of standard deviation ``noise`` (0-255 scale)."""
    import numpy as np
    from PIL import Image, ImageFilter

    small = image.resize((round(image.width * dpi / 200), round(image.height * dpi / 200)), Image.BILINEAR)
    small = small.filter(ImageFilter.GaussianBlur(blur))
    grey = np.asarray(small).astype(np.float32) + np.random.default_rng(seed).normal(0, noise, (small.height, small.width))
    return Image.fromarray(grey.clip(0, 255).astype(np.uint8))


@pytest.mark.slow  # five OCR runs of a page: ~27 s on 2 shared cores (load 7.5)
def test_unreadable_scanned_page_is_left_out_named_with_its_numbers_and_fails_strict(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    good = scanned_page(SCANNED)
    bad = degraded(scanned_page(BAD_SCAN)).resize(good.size)  # a 90-dpi scan, printed back on an A4 page
    good.save(docs / "scan.pdf", "PDF", resolution=200, save_all=True, append_images=[bad])
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    text = "\n".join(r["text"] for r in rows)
    assert number_tokens(text) == number_tokens("\n".join(SCANNED))  # page 1 only: page 2 left out
    report = json.loads((tmp_path / "chunks.report.json").read_text(encoding="utf-8"))
    doc = report["documents"][0]
    assert doc["ocr"]["pages"] == [1, 2] and doc["ocr"]["pages_left_out"] == [2]
    [bad_page] = doc["ocr"]["bad_pages"]
    assert bad_page["page"] == 2 and bad_page["verdict"] == "unusable" and bad_page["left_out"]
    warning = next(w for w in doc["warnings"] if w.startswith("page 2: OCR unusable"))
    assert "left out of the chunks" in warning and "median line confidence" in warning
    low_numbers = [tok for line in doc["ocr"]["low_confidence"] if line["page"] == 2 for tok in line["numbers"]]
    assert bad_page["low_confidence_numbers"] == low_numbers
    if low_numbers:
        assert "numbers on its low-confidence lines: " + ", ".join(low_numbers[:3]) in warning
    # no claim that OCR'd numbers were "kept": they are counted as recognised, with no ground truth
    assert doc["ocr"]["numbers_recognised"] == len(number_tokens("\n".join(SCANNED)))
    assert "numbers recognised" in result.output and "no ground truth" in result.output
    assert "numbers kept 0/0" in result.output and report["totals"]["ocr_pages_left_out"] == 1

    result = run_cli(str(docs), "-o", str(tmp_path / "strict.jsonl"), "--strict")
    assert result.exit_code != 0 and "page 2: OCR unusable" in str(result.exception)  # the CLI exits 2 on it
    assert not (tmp_path / "strict.jsonl").exists() and (tmp_path / "strict.report.json").exists()

    alone = tmp_path / "alone"  # a file whose only page is unusable: skipped with the reason and its numbers
    alone.mkdir()
    bad.save(alone / "bad.pdf", "PDF", resolution=200)
    (alone / "law.txt").write_text("第一条矿井必须有2个安全出口。", encoding="utf-8")
    result = run_cli(str(alone), "-o", str(tmp_path / "alone.jsonl"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "alone.report.json").read_text(encoding="utf-8"))
    [skipped] = report["skipped"]
    assert Path(skipped["path"]).name == "bad.pdf" and skipped["reason"].startswith("OCR unusable on every page")
    assert "page 1: median line confidence" in skipped["reason"] and "nothing kept" in skipped["reason"]


@pytest.mark.parametrize("confidences, verdict", [
    ([0.99, 0.98, 0.97, 0.95, 0.99], "ok"),
    ([0.99, 0.6, 0.97, 0.95, 0.99], "ok"),  # one doubtful line: listed in the report, not warned about
    ([0.99, 0.6, 0.97, 0.7, 0.99, 0.96, 0.98, 0.99, 0.97, 0.95], "doubtful"),
    ([0.99, 0.6, 0.5, 0.7, 0.95], "unusable"),
    ([0.8, 0.82, 0.84], "unusable"),
])
def test_ocr_page_verdict_from_line_confidences(confidences: list[float], verdict: str) -> None:
    from coalqa.corpus.quality import ocr_page_verdict

    lines = [(f"第{k}条风速不得超过4m/s。", c) for k, c in enumerate(confidences)]
    got, reasons = ocr_page_verdict(lines, 0.9)
    assert got == verdict and (reasons == []) == (verdict == "ok")


def test_doubtful_ocr_page_is_warned_with_its_numbers_and_kept() -> None:
    from coalqa.corpus import Document, split_into_chunks
    from coalqa.corpus.report import document_report

    lines = [(1, "第一条风速不得超过4m/s。", 0.99), (1, "第二条距离不得小于10m。", 0.7),
             (1, "第三条高度不低于2.2m。", 0.98), (1, "第四条每隔30m设一处。", 0.75),
             (1, "第五条每班检查一次。", 0.97), (1, "第六条每日检查2次。", 0.99),
             (1, "第七条每周检查1次。", 0.98)]
    doc = Document(source="scan.pdf", path=Path("scan.pdf"), title="T", text="\n".join(t for _, t, _ in lines),
                   confidence=[c for _, _, c in lines], ocr_pages=[1], ocr_lines=lines)
    report = document_report(doc, split_into_chunks(doc))
    assert report["ocr"]["numbers_recognised"] == 6 and report["ocr"]["numbers_low_confidence"] == 2
    [warning] = [w for w in report["warnings"] if w.startswith("page 1:")]
    assert "OCR doubtful" in warning and "kept" in warning and warning.endswith("low-confidence lines: 10, 30")


def _ocr_doc(texts: list[str], ocr: bool = True):
    from coalqa.corpus import Document

    return Document(source="scan.pdf", path=Path("scan.pdf"), title="T", text="\n".join(texts),
                    confidence=[0.99] * len(texts) if ocr else [], ocr_pages=[1] if ocr else [],
                    ocr_lines=[(1, t, 0.99) for t in texts] if ocr else [])


def test_misread_article_number_is_suspect_and_its_locator_marked_uncertain() -> None:
    from coalqa.corpus import split_into_chunks
    from coalqa.corpus.chunking import UNCERTAIN, suspect_headings
    from coalqa.corpus.report import document_report

    # the first article misread (第二十一条 → 第十条): it would label the chunk and every question made from it
    texts = ["第十条井下严禁使用灯泡取暖。", "第二十二条主要通风机必须装有反风设施。", "第二十三条每季度检查1次。"]
    doc = _ocr_doc(texts)
    assert [h["label"] for h in suspect_headings(doc)] == ["第十条"]
    chunks = split_into_chunks(doc, max_chars=20)
    assert [c.locator for c in chunks] == [f"第十条{UNCERTAIN}", "第二十二条", "第二十三条"]
    report = document_report(doc, chunks)
    assert any(w.startswith("suspect OCR'd article number 第十条 (before 第二十二条)") for w in report["warnings"])
    assert report["ocr"]["suspect_headings"][0]["text"] == texts[0]

    # one in the middle going backwards (第二十一条 → 第十条): its text is kept in the article above, marked
    texts = ["第二十条井下严禁使用灯泡取暖。", "第十条主要通风机必须装有反风设施。", "第二十二条每季度检查1次。"]
    doc = _ocr_doc(texts)
    assert [(h["label"], h["why"]) for h in suspect_headings(doc)] == [("第十条", "after 第二十条, before 第二十二条")]
    assert [c.locator for c in split_into_chunks(doc, max_chars=40)] == [f"第二十条{UNCERTAIN}", "第二十二条"]

    # a heading OCR did not see (a gap of 2), a text layer, and a numbering that restarts are not suspect
    assert suspect_headings(_ocr_doc(["第一条甲。", "第二条乙。", "第四条丙。", "第五条丁。"])) == []
    assert suspect_headings(_ocr_doc(texts, ocr=False)) == []
    assert suspect_headings(_ocr_doc(["第八条甲。", "第九条乙。", "第一条丙。", "第二条丁。"])) == []


def test_ocr_never_on_a_folder_of_scans_exits_2_and_still_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    docs = tmp_path / "docs"
    docs.mkdir()
    Image.new("L", (400, 300), 255).save(docs / "scan.pdf", "PDF", resolution=72)  # image only, no text layer
    out = tmp_path / "chunks.jsonl"
    result = run_cli(str(docs), "-o", str(out), "--ocr", "never")
    assert result.exit_code != 0 and "nothing could be read" in str(result.exception or result.output)
    assert not out.exists()
    report = json.loads((tmp_path / "chunks.report.json").read_text(encoding="utf-8"))
    assert report["failed"].startswith("nothing could be read")
    [skipped] = report["skipped"]
    assert Path(skipped["path"]).name == "scan.pdf" and "--ocr never" in skipped["reason"]
    assert report["totals"]["skipped"] == 1 and report["totals"]["documents"] == 0


def test_only_ocrd_headings_are_judged_in_a_partly_scanned_file() -> None:
    from coalqa.corpus import Document
    from coalqa.corpus.chunking import suspect_headings

    texts = ["第二十条甲。", "第十条乙。", "第二十二条丙。", "第十条丁。", "第二十四条戊。"]
    conf = [None, None, 0.99, 0.99, 0.99]  # the first two lines from the text layer, the rest OCR'd
    doc = Document(source="mixed.pdf", path=Path("mixed.pdf"), title="T", text="\n".join(texts), confidence=conf,
                   ocr_pages=[2], ocr_lines=[(2, t, 0.99) for t in texts[2:]])
    assert [h["text"] for h in suspect_headings(doc)] == ["第十条丁。"]  # the printed 第十条 is trusted


def test_ocr_always_keeps_a_good_text_layer_when_the_pages_ocr_is_unusable(tmp_path: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    pytest.importorskip("reportlab")
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    from coalqa.corpus.pdffile import pdf_text

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    path = tmp_path / "layer.pdf"
    c = canvas.Canvas(str(path), pagesize=(595, 842))
    c.setFont("STSong-Light", 12)
    for k, line in enumerate(SCANNED[1:4]):
        c.drawString(72, 760 - 20 * k, line)
    c.save()
    read = pdf_text(path, ocr="always", dpi=40)  # rendered too coarse: the OCR misreads (风这, 4ms, 24的)
    assert read.ocr_pages == [1] and read.ocr_dropped == [1]
    assert read.lines == SCANNED[1:4] and read.confidence == [None, None, None]  # the text layer, as printed


def test_scanned_article_number_out_of_order_fails_strict_and_its_locator_is_marked(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    misread = ["第二十条井下严禁使用灯泡取暖。", "第十条主要通风机必须装有反风设施。", "第二十二条每季度检查1次。",
               "第二十三条每班检查2次。"]  # as OCR read a scan of 第二十条…第二十三条, 第二十一条 misread as 第十条
    scanned_page(misread).save(docs / "scan.pdf", "PDF", resolution=200)
    result = run_cli(str(docs), "-o", str(tmp_path / "chunks.jsonl"), "--strict")
    assert result.exit_code != 0 and "suspect OCR'd article number 第十条" in str(result.exception)
    report = json.loads((tmp_path / "chunks.report.json").read_text(encoding="utf-8"))
    assert report["strict_failed"] and report["totals"]["ocr_suspect_headings"] == 1
    result = run_cli(str(docs), "-o", str(tmp_path / "chunks.jsonl"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    # one chunk: the 第十条 line sits in it, under 第二十条, so its whole locator is uncertain
    assert [r["locator"] for r in rows] == ["第二十条–第二十三条（OCR条号存疑）"]
