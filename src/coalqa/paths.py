"""Never let a stage's outputs overwrite its inputs: one check, called by every command before any work.

Every command calls :func:`check_outputs` once it knows all of its paths and before it reads or writes
anything substantial::

    check_outputs(
        "eval",
        inputs={"--references": refs, "--predictions": preds, "--config": config},
        outputs={"report (--output)": "report.json", "report (--output), Markdown": "report.md"},
    )

* ``inputs``: what the stage reads, by the name the user knows it under (a flag, an argument). A value may be
  a path, a list of paths or ``None`` (not given). A *folder* stands for everything under it (``coalqa
  corpus`` reads folders recursively; an adapter folder is read as a whole). Paths that do not exist are
  skipped: there is nothing to protect, and the stage's own reader reports them missing. Hub ids such as
  ``deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`` are therefore harmless to pass.
* ``outputs``: every file the stage writes, side files included (summary, rejects, checkpoint, ``.md``,
  ``.png``, settings), named so the user recognises them.
* ``output_dirs``: folders the stage fills with files of its own choosing (a training run, the demo's cache).

It raises :class:`~coalqa.errors.CoalqaError` (the CLI prints one red line and exits 2) when an output is one of
the inputs, lies inside an input folder, is an input's folder or one of its parents (output folders), or when
two outputs are the same file. Paths are compared after ``~`` expansion and symlink resolution, and existing
files also by inode (a hard link to an input is the input).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from coalqa.errors import CoalqaError

PathLike = str | os.PathLike[str]
PathArg = PathLike | Iterable[PathLike] | None


def _paths(value: PathArg) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    """``child`` is ``folder`` or lies somewhere under it."""
    c, f = _real(child), _real(folder)
    return c == f or f in c.parents


def check_outputs(
    stage: str,
    inputs: Mapping[str, PathArg],
    outputs: Mapping[str, PathArg] | None = None,
    output_dirs: Mapping[str, PathArg] | None = None,
) -> None:
    """Refuse to run ``coalqa <stage>`` when one of its outputs would overwrite or land among its inputs.

    Args:
        stage: the command's name, for the message (``"generate"``).
        inputs: name → path(s) read (files, or folders read as a whole); ``None`` and missing paths are skipped.
        outputs: name → file path(s) written, side files included.
        output_dirs: name → folder(s) the stage writes into.

    Raises:
        CoalqaError: naming the output and the input it collides with (or the two outputs), and how to fix it.
    """
    read = [(name, p) for name, value in inputs.items() for p in _paths(value) if p.expanduser().exists()]
    files = [(name, p) for name, value in (outputs or {}).items() for p in _paths(value)]
    dirs = [(name, p) for name, value in (output_dirs or {}).items() for p in _paths(value)]

    def refuse(what: str, fix: str = "choose an output path outside the inputs") -> None:
        raise CoalqaError(f"coalqa {stage}: {what}; nothing was done: {fix}")

    for out_name, out in files:
        for in_name, src in read:
            if _same(out, src):
                refuse(f"{out_name} {out} would overwrite the input {src} ({in_name})")
            if src.expanduser().is_dir() and _inside(out, src):
                refuse(f"{out_name} {out} would be written inside {src}, which {in_name} reads")
    for out_name, out in dirs:
        for in_name, src in read:
            if _inside(src, out):
                refuse(f"the output folder {out} ({out_name}) holds the input {src} ({in_name})")
            if src.expanduser().is_dir() and _inside(out, src):
                refuse(f"the output folder {out} ({out_name}) lies inside {src}, which {in_name} reads")
    seen: list[tuple[str, Path]] = []
    for out_name, out in files:
        for other_name, other in seen:
            if _same(out, other):
                refuse(f"{out_name} and {other_name} are the same file {out}", "give them different paths")
        seen.append((out_name, out))
