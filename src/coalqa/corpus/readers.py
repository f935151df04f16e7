"""Read regulation files of any common format/encoding into clean text.

Formats are recognised by content, not by extension: a zip holding ``word/document.xml`` is a
docx (even when named ``.doc``), ``%PDF-`` is a PDF, the OLE2 signature is a legacy Word ``.doc``
(converted with LibreOffice when installed), a PNG/JPEG/TIFF signature is a scanned page (OCR'd, unless
``ocr="never"``), anything else must decode as text. Cleaning only
normalises layout (literal ``\\n``, line endings, odd spaces, blank lines); every visible
character of the regulation is kept.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from coalqa.corpus.pdffile import PdfError, PdfText, pdf_text
from coalqa.corpus.tables import TableLines
from coalqa.corpus.wordfile import docx_lines
from coalqa.textio import UndecodableText, decode_text

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")


class ReadError(Exception):
    """A file could not be turned into text; the message is the reason shown to the user."""


@dataclass
class Document:
    """One readable regulation file.

    Attributes:
        source: the file name (no folder), used as the chunks' ``source``.
        path: where it was read from.
        title: the document's own title (first title line / docx title, else the file name
            without its ``12-`` number prefix).
        text: cleaned text, one paragraph per line, no blank lines.
        headings: heading text -> level (1 = top) for lines styled as headings in the original
            (docx "Heading N"), so the splitter can recognise headings that carry no number.
        warnings: non-fatal problems met while reading or splitting.
        raw_text: the file's text as plainly read, before cleaning, numbering and re-flowing (text
            files: the decoded text; docx: every displayed ``w:t``; PDF: every extracted line); the
            fidelity report counts the source's numbers in it. ``""``: same as ``text``.
        removed: lines left out on purpose (PDF running headers/footers and page numbers).
        tables: the document's tables as lines (:class:`~coalqa.corpus.tables.TableLines`); their lines are
            in ``text``, one row per line.
        confidence: for a document with OCR'd pages, the lowest OCR confidence of each line of ``text``
            (``None``: from a text layer); ``[]`` when nothing was OCR'd.
        ocr_pages: 1-based numbers of the pages OCR'd; ``ocr_lines``: ``(page, text, confidence)`` of every
            line the OCR engine returned (the fidelity report lists the doubtful ones); ``ocr_dropped``: those
            OCR'd pages left out of ``text`` because their OCR is unusable.
        unread_pages: 1-based numbers of PDF pages without a text layer left unread (``ocr="never"``).
    """

    source: str
    path: Path
    title: str
    text: str
    headings: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    raw_text: str = ""
    removed: list[str] = field(default_factory=list)
    tables: list[TableLines] = field(default_factory=list)
    confidence: list[float | None] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)
    ocr_lines: list[tuple[int, str, float]] = field(default_factory=list)
    ocr_dropped: list[int] = field(default_factory=list)
    unread_pages: list[int] = field(default_factory=list)

    @property
    def ocr(self) -> bool:
        """Was any of the text OCR'd?"""
        return bool(self.ocr_pages)


def iter_files(paths: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively) into a sorted, de-duplicated file list.

    Returns ``(files, problems)``: files to read, and ``(path, reason)`` for paths that do not
    exist. Every file is tried, whatever its extension (its content decides how it is read);
    hidden files/folders and Office ``~$`` lock files inside folders are ignored.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(p).parts)
                if f.is_file() and not hidden and not f.name.startswith("~$"):
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            problems.append((p, "no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, problems


IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")


def sniff_format(data: bytes) -> str:
    """Return ``"docx"``, ``"pdf"``, ``"doc"`` (legacy OLE2 Word), ``"image"`` (PNG/JPEG/TIFF), ``"zip"`` (other
    zip) or ``"text"``."""
    if data.startswith(IMAGE_MAGIC):
        return "image"
    if data.startswith(b"PK\x03\x04"):
        try:
            import io

            with zipfile.ZipFile(io.BytesIO(data)) as z:
                return "docx" if "word/document.xml" in z.namelist() else "zip"
        except zipfile.BadZipFile:
            return "zip"
    if data.lstrip()[:5] == b"%PDF-":
        return "pdf"
    if data.startswith(OLE2_MAGIC):
        return "doc"
    return "text"


_LITERAL_NEWLINE = re.compile(r"\\r\\n|\\n|\\r")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline: tabs, full-width and no-break spaces
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def clean_text(text: str) -> str:
    """Normalise layout without touching wording or numbers.

    Literal backslash-n (and ``\\r\\n``) becomes a line break; CR/LF variants become ``\\n``;
    full-width/no-break spaces and tabs become one ASCII space; zero-width characters and other
    control characters are removed; lines are stripped and blank lines dropped.
    Returns the cleaned text (one paragraph per line); every other character is kept in order.
    """
    text = _LITERAL_NEWLINE.sub("\n", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _soffice(configured: str | None) -> str | None:
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return shutil.which("soffice") or shutil.which("libreoffice")


def _convert_doc(path: Path, soffice: str | None) -> tuple[list[str], str, dict[str, int], str, list[TableLines]]:
    exe = _soffice(soffice)
    if exe is None:
        raise ReadError(
            "legacy binary Word .doc needs LibreOffice to convert; install it "
            "(e.g. `apt-get install libreoffice-writer`) or re-save the file as .docx"
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [exe, "--headless", "--convert-to", "docx", "--outdir", tmp, str(path)],
                check=True, capture_output=True, timeout=180,
            )
        except (subprocess.SubprocessError, OSError) as e:
            raise ReadError(f"LibreOffice could not convert this .doc ({e})") from e
        out = Path(tmp) / (path.stem + ".docx")
        if not out.is_file():
            raise ReadError("LibreOffice produced no .docx for this .doc")
        return docx_lines(out)


_TITLE_BAD = re.compile(r"[。；;，,：:]|^第[零〇一二三四五六七八九十百千两\d]+[编章节条]|^\d")
# Metadata titles that name a file or a template, not the document: "Microsoft Word - 发文稿.doc", "untitled".
_JUNK_TITLE = re.compile(
    r"^(?:microsoft\s+(?:word|excel|powerpoint)\s*-|untitled|无标题|未命名|document\s*\d*$|文档\s*\d*$|新建|title$|标题$)"
    r"|\.(?:docx?|wps|pdf|txt|rtf|xlsx?)\s*$|^[\W\d_]*$",
    re.IGNORECASE,
)


def junk_title(title: str) -> bool:
    """Is a metadata title useless as the document's title (a file name, ``untitled``, ``Microsoft Word - …``)?"""
    return bool(_JUNK_TITLE.search(title.strip()))


def _guess_title(text: str, path: Path, given: str = "") -> str:
    """The document's title: ``given`` (docx/PDF metadata) if any and not junk (:func:`junk_title`), else its
    first line when that looks like a title and resembles a Chinese file name (so a cover letter's first line
    is not taken), else the file name without its ``12-`` number prefix."""
    if given and not junk_title(given):
        return " ".join(given.split())
    stem = re.sub(r"^\d+[-_.、 ]+", "", path.stem).strip("《》 ") or path.stem
    first = text.split("\n", 1)[0].strip() if text else ""
    if first and len(first) <= 50 and not _TITLE_BAD.search(first):
        named_in_chinese = re.search(r"[\u4e00-\u9fff]", stem) is not None
        if not named_in_chinese or stem in first or difflib.SequenceMatcher(None, first, stem).ratio() >= 0.5:
            return first
    return stem


def _is_json_data(text: str) -> bool:
    """Whether ``text`` is a JSON document or JSON Lines (its first line an object): data, never a regulation."""
    head = text.lstrip()
    if not head.startswith(("{", "[")):
        return False
    for candidate in (head, head.split("\n", 1)[0]):
        try:
            json.loads(candidate)
            return True
        except ValueError:
            continue
    return False


def read_document(
    path: str | Path, *, soffice: str | None = None, ocr: str = "auto", progress=None, ocr_dpi: int | None = None
) -> Document:
    """Read one file of any supported format into a :class:`Document` with cleaned text.

    ``ocr``: ``"auto"`` (OCR PDF pages without usable text, and image files), ``"always"`` (every PDF page) or
    ``"never"``; ``progress(done, total)`` is called after each OCR'd page; ``ocr_dpi``: render resolution
    (default :data:`coalqa.corpus.ocr.DPI`).

    Raises:
        ReadError: empty, unreadable, unsupported or binary file; the message is the reason.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ReadError(f"cannot open ({e.strerror or e})") from e
    if not data.strip():
        raise ReadError("empty file")
    kind = sniff_format(data)
    suffix = path.suffix.lower()
    # each reader returns the text before cleaning (``raw``), its ``lines`` and ``given_title``, and Document fields
    if kind in ("docx", "doc"):
        read = _read_word(path, kind, suffix, soffice)
    elif kind in ("pdf", "image"):
        read = _read_pages(path, kind, suffix, ocr, progress, ocr_dpi)
    elif kind == "zip":
        raise ReadError("a zip archive that is not a Word .docx; unsupported")
    else:
        read = _read_plain(data, suffix)
    raw, lines, given_title = read.pop("raw"), read.pop("lines", []), read.pop("given_title", "")
    confidence = read.pop("confidence", [])
    if confidence:  # clean line by line so each cleaned line keeps its confidence
        pairs = [(part, conf) for line, conf in zip(lines, confidence) for part in clean_text(line).split("\n") if part]
        text, confidence = "\n".join(p for p, _ in pairs), [c for _, c in pairs]
    else:
        text = clean_text(raw)
    if not text:
        raise ReadError("no text after cleaning (only whitespace)")
    return Document(source=path.name, path=path, title=_guess_title(text, path, given_title), text=text,
                    confidence=confidence, **read)


def _read_word(path: Path, kind: str, suffix: str, soffice: str | None) -> dict:
    """A .docx (or a .doc converted by LibreOffice) for :func:`read_document`."""
    try:
        lines, given_title, headings, source, tables = (
            docx_lines(path) if kind == "docx" else _convert_doc(path, soffice))
    except ReadError:
        raise
    except Exception as e:  # python-docx/lxml raise assorted errors on damaged files
        raise ReadError(f"unreadable Word file ({type(e).__name__}: {e})") from e
    warnings: list[str] = []
    if kind == "docx" and suffix != ".docx":
        warnings.append(f"named {suffix or 'without extension'} but is a Word .docx; read as docx")
    return {"raw": "\n".join(lines), "lines": lines, "given_title": given_title, "headings": headings,
            "warnings": warnings, "raw_text": source, "tables": tables}


def _read_pages(path: Path, kind: str, suffix: str, ocr: str, progress, ocr_dpi: int | None) -> dict:
    """A PDF (:func:`~coalqa.corpus.pdffile.pdf_text`) or a scanned page's image for :func:`read_document`."""
    try:
        read = (pdf_text(path, ocr=ocr, progress=progress, dpi=ocr_dpi) if kind == "pdf"
                else _image_text(path, ocr, progress))
    except PdfError as e:
        raise ReadError(str(e)) from e
    warnings: list[str] = []
    if read.removed:
        warnings.append(f"left out {len(read.removed)} page header/footer/page-number line(s)")
    if kind == "pdf" and suffix != ".pdf":
        warnings.append(f"named {suffix or 'without extension'} but is a PDF; read as PDF")
    return {"raw": "\n".join(read.lines), "lines": read.lines, "given_title": read.title, "warnings": warnings,
            "raw_text": read.raw, "removed": read.removed, "tables": read.tables,
            "confidence": read.confidence if read.ocr_pages else [], "ocr_pages": read.ocr_pages,
            "ocr_lines": read.ocr_lines, "ocr_dropped": read.ocr_dropped, "unread_pages": read.unread}


def _read_plain(data: bytes, suffix: str) -> dict:
    """A plain-text file in any encoding (:func:`coalqa.textio.decode_text`) for :func:`read_document`."""
    try:
        raw, encoding = decode_text(data)  # the one encoding detection, shared with every other text input
    except UndecodableText as e:
        raise ReadError(str(e)) from e
    if _is_json_data(raw):
        raise ReadError("JSON data (e.g. chunks or QA pairs written by coalqa), not a regulation text")
    warnings: list[str] = []
    if suffix not in TEXT_SUFFIXES:
        warnings.append(f"named {suffix or 'without extension'} but is plain text ({encoding}); read as text")
    return {"raw": raw, "warnings": warnings, "raw_text": raw}


def _image_text(path: Path, ocr: str, progress) -> PdfText:
    """A scanned page in an image file, OCR'd like a PDF page without text."""
    if ocr == "never":
        raise PdfError("an image (a scanned page?) and --ocr never: rerun with --ocr auto to OCR it")
    from coalqa.corpus.ocr import LOW_CONFIDENCE, OcrUnavailable, ocr_pages
    from coalqa.corpus.pdffile import _ocr_lines
    from coalqa.corpus.quality import ocr_page_verdict
    from coalqa.numbers import number_tokens

    try:
        found = ocr_pages(path, [0], image=True, progress=progress)
    except OcrUnavailable as e:
        raise PdfError(str(e)) from e
    except OSError as e:
        raise PdfError(f"unreadable image ({e})") from e
    lines = _ocr_lines(found[0], 0)
    if not lines:
        raise PdfError("no text recognised in the image")
    verdict, reasons = ocr_page_verdict([(ln.text, ln.confidence) for ln in lines], LOW_CONFIDENCE)
    if verdict == "unusable":
        numbers = [tok for ln in lines if ln.confidence < LOW_CONFIDENCE for tok in number_tokens(ln.text)]
        raise PdfError(f"OCR unusable ({'; '.join(reasons)}); nothing kept"
                       + (f"; numbers on its low-confidence lines: {', '.join(numbers)}" if numbers else "")
                       + "; rescan at 300 dpi or more, or type the text in")
    return PdfText([ln.text for ln in lines], "", "\n".join(ln.text for ln in lines), [],
                   confidence=[ln.confidence for ln in lines], ocr_pages=[1],
                   ocr_lines=[(1, ln.text, ln.confidence) for ln in lines])


def load_documents(
    paths: list[str | Path], *, soffice: str | None = None, exclude: list[str | Path] = (), ocr: str = "auto",
    progress=None, ocr_dpi: int | None = None,
) -> tuple[list[Document], list[tuple[Path, str]]]:
    """Read every supported file under ``paths`` (files or folders, recursive), except ``exclude``
    (``coalqa corpus`` passes its own output files, which may sit in the documents' folder).

    Returns ``(documents, skipped)``: the readable documents in path order, and
    ``(path, reason)`` for each file or path that could not be read (empty, binary,
    unsupported, legacy .doc without LibreOffice, encrypted or image-only PDF without OCR, missing). Never
    raises for bad files. ``progress(path)`` returns a per-page callback for OCR (or None); ``ocr`` as in
    :func:`read_document`.
    """
    files, skipped = iter_files(paths)
    skip = {Path(p).resolve() for p in exclude}
    files = [f for f in files if f.resolve() not in skip]
    documents: list[Document] = []
    for f in files:
        try:
            documents.append(read_document(f, soffice=soffice, ocr=ocr, ocr_dpi=ocr_dpi,
                                           progress=progress(f) if progress else None))
        except ReadError as e:
            skipped.append((f, str(e)))
        except Exception as e:  # noqa: BLE001 — a bug or an engine failure on one file must not lose the others: named, skipped
            skipped.append((f, f"failed while reading ({type(e).__name__}: {e})"))
    return documents, skipped
