"""OCR accuracy and speed on pages of the real corpus, through `coalqa corpus` (issue 23).

Text whose truth we know (chunks of ../shared/corpus/coal-safety, every k-th one that states a number) is typeset
onto A4 pages (10.5 pt WenQuanYi Zen Hei, 2.5 cm margins, first lines indented two characters, a number with its
unit never broken across lines) and saved as two image-only PDFs:

* ``clean-200dpi.pdf``: a clean 200-dpi bitonal-looking grey page;
* ``scan-150dpi.pdf``: a poorer scan: drawn at 300 dpi, downsampled to 150 dpi grey, rotated by up to ±0.5°,
  grey paper, Gaussian noise (σ 12), slightly blurred.

Each is read with ``coalqa corpus DIR -o out.jsonl`` (default ``--ocr auto``) under ``nice -n 10`` and compared
with the truth (whitespace removed):

* character accuracy: 1 − (edits / truth characters), edits from difflib's alignment (replace = max of both
  lengths, insert, delete), on NFKC-folded text (``（`` = ``(``: the width of a bracket is not read from a scan);
* numbers exact: the truth's number tokens (``coalqa.numbers.number_tokens``, after NFKC and the OCR reader's
  unit-case fix) matched in order by the OCR text's tokens;
* flagged: every truth number not recovered exactly whose place in the OCR text lies on a line the fidelity report
  lists (confidence under the threshold, or holding a suspect number); ``unflagged`` must be 0;
* seconds per page: wall time of the whole `coalqa corpus` run (engine start included) / pages, with the load
  average before and after (the machine may be shared), and CPU seconds per page (user + system of the run and its
  worker processes): with pages OCR'd in parallel, an idle 2-core machine needs about half of that in wall time.

Usage: .venv/bin/python bench/ocr.py [--pages 6] [--render_dpi 150 200 300] [--out /tmp/coalqa-bench-ocr]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "coal-safety"
FONT = next((p for p in ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc")
             if Path(p).is_file()), None)
A4 = (8.27, 11.69)  # inches
MARGIN = 25 / 25.4  # 2.5 cm
SIZE = 10.5  # pt
LEADING = 1.6


def truth_paragraphs(pages: int) -> list[str]:
    """Paragraphs of real chunks (every 7th chunk that states a number), about ``pages`` A4 pages' worth."""
    from coalqa.corpus import load_documents, split_into_chunks

    docs, _ = load_documents([CORPUS])
    chunks = [c for d in docs for c in split_into_chunks(d)]
    picked = [c for c in chunks[::7] if re.search(r"\d", c.text)]
    random.Random(0).shuffle(picked)
    per_page = 1300  # characters an A4 page holds at 10.5 pt
    out, total = [], 0
    for c in picked:
        for line in c.text.split("\n"):
            if total >= pages * per_page:
                return out
            if " | " in line:
                continue  # old-style table rows: typeset tables are a different test
            out.append(line)
            total += len(line) + 10
    return out


def typeset(paragraphs: list[str], dpi: int) -> list:
    """Pages (PIL grey images) at ``dpi`` holding ``paragraphs``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, round(SIZE / 72 * dpi))
    width, height = round(A4[0] * dpi), round(A4[1] * dpi)
    left, top = round(MARGIN * dpi), round(MARGIN * dpi)
    usable = width - 2 * left
    step = round(SIZE / 72 * dpi * LEADING)
    pages, img, draw, y = [], None, None, 0

    def new_page():
        nonlocal img, draw, y
        img = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(img)
        pages.append(img)
        y = top

    new_page()
    for para in paragraphs:
        words = re.findall(r"[0-9A-Za-z.%/~～\-]+[。，；、）)%]?|.", para)
        indent = round(2 * SIZE / 72 * dpi)
        line = ""
        for w in words + [None]:
            if w is not None and draw.textlength(line + w, font=font) <= usable - indent:
                line += w
                continue
            if y + step > height - top:
                new_page()
            draw.text((left + indent, y), line, font=font, fill=0)
            y += step
            indent, line = 0, (w or "")
    return pages


def degrade(page, dpi: int, seed: int):
    """A poorer grey scan of a 2×``dpi`` page: downsampled, rotated ±0.5°, grey paper, noise, slight blur."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    small = page.resize((page.width // 2, page.height // 2), Image.LANCZOS)
    small = small.rotate(rng.uniform(-0.5, 0.5), resample=Image.BICUBIC, fillcolor=255)
    a = np.asarray(small).astype(np.float32)
    a = 30 + a * (235 - 30) / 255  # ink 30, paper 235
    a += np.random.default_rng(seed).normal(0, 12, a.shape)
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    return out.filter(ImageFilter.GaussianBlur(0.4))


def strip(text: str) -> str:
    """Whitespace removed and NFKC-folded: full- and half-width forms of one character (（ and (, ： and :) are
    the same character to a reader, and to the number check."""
    import unicodedata

    return unicodedata.normalize("NFKC", re.sub(r"\s+", "", text))


def compare(truth: str, got: str, flagged_spans: list[tuple[int, int]]) -> dict:
    from coalqa.corpus.ocr import fix_unit_case
    from coalqa.numbers import number_tokens

    truth, got = strip(fix_unit_case(truth)), strip(got)
    sm = difflib.SequenceMatcher(None, truth, got, autojunk=False)
    edits = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal")
    # numbers: positions of each truth token, and whether the same token sits at the aligned place in the OCR text
    tokens = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"\d+(?:\.\d+)*", truth)]
    assert [t for t, _, _ in tokens] == number_tokens(truth)
    blocks = sm.get_matching_blocks()

    def mapped(i: int) -> int:
        for a, b, n in blocks:
            if a <= i < a + n:
                return b + (i - a)
        prev = [b + n for a, b, n in blocks if a + n <= i]
        return prev[-1] if prev else 0

    exact, missed = 0, []
    for tok, s, e in tokens:
        inside = all(any(a <= i < a + n for a, b, n in blocks) for i in range(s, e))
        j = mapped(s)
        around = got[max(0, j - 1): j + len(tok) + 1]
        whole = inside and re.search(rf"(?<![\d.]){re.escape(tok)}(?![\d])", got[max(0, j - 2): j + len(tok) + 2])
        if whole:
            exact += 1
        else:
            flagged = any(a - 2 <= j <= b + 2 for a, b in flagged_spans)
            missed.append({"truth": tok, "ocr": around, "flagged": flagged})
    return {"chars": len(truth), "edits": edits, "char_accuracy": 1 - edits / max(1, len(truth)),
            "numbers": len(tokens), "numbers_exact": exact, "not_exact": missed}


def run_variant(name: str, pages, dpi: int, truth: str, out: Path, render_dpi: int = 200) -> dict:
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pdf = folder / f"{name}.pdf"
    pages[0].save(pdf, "PDF", resolution=dpi, save_all=True, append_images=pages[1:])
    chunks = out / f"{name}.jsonl"
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(["nice", "-n", "10", str(Path(sys.executable).parent / "coalqa"), "corpus", str(folder),
                           "-o", str(chunks), "--ocr_dpi", str(render_dpi)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    load_after = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"coalqa corpus failed on {name}:\n{proc.stdout}\n{proc.stderr}")
    rows = [json.loads(line) for line in chunks.read_text(encoding="utf-8").splitlines()]
    got = "\n".join(r["text"] for r in rows)
    report = json.loads(chunks.with_name(f"{name}.report.json").read_text(encoding="utf-8"))
    ocr = report["documents"][0]["ocr"]
    flag_texts = [x["text"] for x in ocr["low_confidence"]] + [x["text"] for x in ocr["suspect_numbers"]]
    stripped = strip(got)
    spans = []
    for text in flag_texts:
        s = strip(text)
        for m in re.finditer(re.escape(s), stripped):
            spans.append((m.start(), m.end()))
    result = compare(truth, got, spans)
    result.update({
        "variant": name, "render_dpi": render_dpi, "pages": len(pages), "seconds": seconds, "seconds_per_page": seconds / len(pages),
        "cpu_seconds_per_page": cpu / len(pages),
        "load_before": load_before, "load_after": load_after, "min_confidence": ocr["min_confidence"],
        "low_confidence_lines": len(ocr["low_confidence"]), "suspect_numbers": len(ocr["suspect_numbers"]),
        "all_chunks_marked_ocr": all(r.get("ocr") for r in rows),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/coalqa-bench-ocr"))
    parser.add_argument("--render_dpi", type=int, nargs="+", default=[200],
                        help="resolutions `coalqa corpus --ocr_dpi` renders at (several: one run each)")
    args = parser.parse_args()
    if FONT is None:
        raise SystemExit("needs fonts-wqy-zenhei (apt-get install fonts-wqy-zenhei)")
    if not CORPUS.is_dir():
        raise SystemExit(f"needs the real corpus at {CORPUS}")
    paragraphs = truth_paragraphs(args.pages)
    truth = "\n".join(paragraphs)
    clean = typeset(paragraphs, 200)
    scan = [degrade(p, 150, k) for k, p in enumerate(typeset(paragraphs, 300))]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "truth.txt").write_text(truth, encoding="utf-8")
    print(f"cores: {len(os.sched_getaffinity(0))}; {len(clean)} A4 pages of {len(strip(truth)):,} characters from "
          f"{CORPUS.name}; OCR through `coalqa corpus` under nice -n 10")
    results = [run_variant(name, pages, dpi, truth, args.out, render)
               for render in args.render_dpi for name, pages, dpi in (("clean-200dpi", clean, 200), ("scan-150dpi", scan, 150))]
    print(f"{'render':>6} {'variant':<14}{'chars':>8}{'char acc':>10}{'numbers':>9}{'exact':>8}{'not exact':>10}{'unflagged':>10}"
          f"{'suspect':>8}{'low-conf':>9}{'s/page':>8}{'cpu s/page':>11}  load 1-min before→after")
    for r in results:
        unflagged = sum(1 for m in r["not_exact"] if not m["flagged"])
        print(f"{r['render_dpi']:>6} {r['variant']:<14}{r['chars']:>8,}{r['char_accuracy']:>10.2%}{r['numbers']:>9}"
              f"{r['numbers_exact'] / max(1, r['numbers']):>8.2%}{len(r['not_exact']):>10}{unflagged:>10}"
              f"{r['suspect_numbers']:>8}{r['low_confidence_lines']:>9}{r['seconds_per_page']:>8.1f}"
              f"{r['cpu_seconds_per_page']:>11.1f}"
              f"  {r['load_before'][0]:.1f}→{r['load_after'][0]:.1f}")
        for m in r["not_exact"][:12]:
            print(f"    {'flagged  ' if m['flagged'] else 'UNFLAGGED'} truth {m['truth']!r} → OCR {m['ocr']!r}")
    (args.out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"details: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
