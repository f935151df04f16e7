"""``coalqa review``: the review app, and its status and export commands.

::

    coalqa review QAdata_all.json --chunks chunks.jsonl          # http://127.0.0.1:8765/
    coalqa review status QAdata_all.json --chunks chunks.jsonl   # counts, no browser
    coalqa review export QAdata_all.json --chunks chunks.jsonl -o reviewed.json
    coalqa review export QAdata_all.json --chunks chunks.jsonl --as_eval --doc 2-煤矿建设安全规程.txt -o my_eval.jsonl
    COALQA_REVIEW_TOKEN=… coalqa review QAdata_all.json --host 0.0.0.0 --reviewer 张工

``--chunks`` may be left out when ``coalqa generate`` wrote the QA file (its ``*.summary.json`` names the chunks file).
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from coalqa.errors import CoalqaError
from coalqa.web import is_loopback

ENV_TOKEN = "COALQA_REVIEW_TOKEN"


class _OpenByDefault(TyperGroup):
    """``coalqa review QA.json …`` runs ``open``; ``status``/``export`` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["open", *args]
        return super().parse_args(ctx, args)


review_app = typer.Typer(cls=_OpenByDefault, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                         help="Review QA pairs beside their clauses before training. `coalqa review QA.json --chunks CHUNKS.jsonl` "
                         "starts the web app (options: --host --port --token --reviewer --feedback DIR; see `coalqa "
                         "review open --help`); `status` and `export` work without a browser.")

QA_ARG = typer.Argument(help="QA file (`coalqa generate` output) to review; optional with --feedback",
                        show_default=False)
CHUNKS_OPT = typer.Option("--chunks", help="chunks.jsonl the pairs were made from (a re-chunked one marks changed "
                          "clauses stale); default: the one named in the QA file's *.summary.json", show_default=False)
FEEDBACK_OPT = typer.Option("--feedback", help="folder of `coalqa serve --feedback_dir`: review the answers users "
                            "marked, beside their cited clauses", show_default=False)


def _chunks_for(qa: Path | None, chunks: Path | None) -> Path:
    if chunks is not None:
        return chunks
    if qa is not None:
        stem = qa.with_suffix("") if qa.suffix == ".json" else qa
        summary = Path(f"{stem}.summary.json")
        if summary.is_file():
            try:
                path = (json.loads(summary.read_text(encoding="utf-8")).get("chunks_file") or {}).get("path")
            except (OSError, ValueError, AttributeError):
                path = None
            if path and Path(path).is_file():
                return Path(path)
    raise CoalqaError("give --chunks CHUNKS.jsonl (the chunks file the QA pairs were generated from)")


def load_set(qa: Path | None, chunks: Path | None, feedback: Path | None = None, quiet: bool = False,
             flags: bool = True):
    """The :class:`~coalqa.review.pairs.ReviewSet` of the command-line arguments (log beside the QA file, or in the
    feedback folder when there is no QA file); ``flags=False`` skips the automatic flags (status and export)."""
    from coalqa.review.feedback import feedback_pairs
    from coalqa.review.log import ReviewLog, log_path_for
    from coalqa.review.pairs import ReviewSet

    if qa is None and feedback is None:
        raise CoalqaError("give the QA file to review (or --feedback DIR)")
    if qa is not None and not qa.is_file():
        raise CoalqaError(f"QA file not found: {qa}")
    chunks = _chunks_for(qa, chunks)
    log_path = log_path_for(qa) if qa is not None else feedback / "review.jsonl"
    log = ReviewLog.open(log_path)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    started = time.perf_counter()
    items = None
    if feedback is not None:
        from coalqa.review.pairs import read_chunk_table

        items = feedback_pairs(feedback, read_chunk_table(chunks))
    rs = ReviewSet(qa, chunks, log, feedback=items, flags=flags)
    if not quiet:
        err.print(f"{len(rs.pairs)} pairs, {len(rs.chunks)} chunks, {len(log.records)} decisions in {log_path} "
                  f"(loaded in {time.perf_counter() - started:.1f} s)", style="dim", markup=False)
        for line, size in log.torn + ([log.torn_tail] if log.torn_tail else []):
            err.print(f"[yellow]note:[/] {escape(str(log_path))} line {line}: an unfinished line ({size} bytes) left by "
                      "a crash in mid-write; it was never acknowledged and is skipped")
    return rs


@review_app.command("open")
def open_app(
    qa: Annotated[Path | None, QA_ARG] = None,
    chunks: Annotated[Path | None, CHUNKS_OPT] = None,
    feedback: Annotated[Path | None, FEEDBACK_OPT] = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on; other than 127.0.0.1 needs --token "
                                      "and --reviewer")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free one)")] = 8765,
    token: Annotated[str | None, typer.Option("--token", help=f"require this token on every route (default: "
                                              f"${ENV_TOKEN}; prefer the variable: a flag shows in the process list)",
                                              show_default=False)] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="your name, recorded with every decision "
                                                 "(default: the login name; required off 127.0.0.1)",
                                                 show_default=False)] = None,
    max_body_bytes: Annotated[int, typer.Option("--max_body_bytes", help="largest request body")] = 65536,
) -> None:
    """Start the review web app (split pane: pair | clause; keyboard first)."""
    token = token or os.environ.get(ENV_TOKEN) or None
    if not is_loopback(host):
        if token is None:
            raise CoalqaError(f"--host {host} makes the review app reachable from other machines: set a token "
                              f"(${ENV_TOKEN}, e.g. `export {ENV_TOKEN}=$(python -c 'import secrets; "
                              "print(secrets.token_urlsafe())')`) and give --reviewer NAME")
        if not reviewer:
            raise CoalqaError(f"--host {host}: give --reviewer NAME (who signs off the decisions made here)")
    reviewer = reviewer or getpass.getuser()
    port = _check_bind(host, port)  # before the load (seconds on a large set): a wrong --host fails at once
    rs = load_set(qa, chunks, feedback)
    import uvicorn

    from coalqa.review.app import create_app

    app = create_app(rs, reviewer=reviewer, token=token, max_body_bytes=max_body_bytes)
    query = "?token=" + token if token else ""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"reviewer {reviewer} · review page {page_urls(host, port, query)[0]}"
                  f"{' (token required on every route)' if token else ''} · Ctrl-C to stop: every saved decision is "
                  "already on disk", markup=False)
    for url in page_urls(host, port, query)[1:]:
        console.print(f"  also: {url}", markup=False)
    if host in ("0.0.0.0", "::", ""):
        console.print(f"  ({host or 'all addresses'} means every address of this machine: colleagues open one of the "
                      "addresses above; if none is reachable from their network, replace it with the address they "
                      "reach this machine by)", markup=False)
    # uvicorn binds itself: handing it a socket made here loses TCP_NODELAY on its connections (40 ms per answer)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which first finished every request in flight;
        # its idle worker threads stop with the event loop: wait for them so nothing reports them as requests
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join(timeout=5)
        console.print("review server stopped: no request was cut off; every saved decision is on disk", markup=False)
        raise
    if not server.started:
        raise CoalqaError(f"could not serve on {host}:{port} (see the error above)")


def _check_bind(host: str, port: int) -> int:
    """Bind ``host:port`` once and let go, so a wrong address or a busy port is reported before the set is loaded;
    returns the port (the free one ``--port 0`` gets). Raises CoalqaError naming the cause."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as e:
            raise CoalqaError(f"--host {host}: not a valid address or known host name ({e.strerror})") from e
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CoalqaError(f"cannot listen on {host}:{port}: the port is in use by another program; pick "
                                  "another --port, or --port 0 for any free one") from e
            if e.errno == errno.EADDRNOTAVAIL:
                mine = ", ".join(local_addresses()) or "none found"
                raise CoalqaError(f"--host {host} is not an address of this machine (its addresses: {mine}); use "
                                  "127.0.0.1 (this machine only), 0.0.0.0 (every address) or one of these") from e
            if e.errno == errno.EACCES:
                raise CoalqaError(f"cannot listen on {host}:{port}: permission denied (ports under 1024 need "
                                  "administrator rights; use e.g. --port 8765)") from e
            raise CoalqaError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        return probe.getsockname()[1]


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, best first (the one its default route uses), from the host
    name's resolution and a UDP socket "connected" to a private address (no packet is sent)."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(str(info[4][0]))
    except OSError:
        pass
    return [a for a in dict.fromkeys(found) if not a.startswith("127.") and a != "0.0.0.0"]


def page_urls(host: str, port: int, query: str = "") -> list[str]:
    """Addresses to open the page at: for a wildcard ``host`` (0.0.0.0, ::) the machine's host name and its
    addresses (:func:`local_addresses`) — ``http://0.0.0.0:…`` opens nowhere else —, else ``host`` itself."""
    if host not in ("0.0.0.0", "::", ""):
        shown = host if ":" not in host else f"[{host}]"
        return [f"http://{shown}:{port}/{query}"]
    names = [socket.gethostname(), *local_addresses()]
    return [f"http://{n}:{port}/{query}" for n in dict.fromkeys(n for n in names if n)] or \
        [f"http://127.0.0.1:{port}/{query}"]


@review_app.command("status")
def status(
    qa: Annotated[Path | None, QA_ARG] = None,
    chunks: Annotated[Path | None, CHUNKS_OPT] = None,
    feedback: Annotated[Path | None, FEEDBACK_OPT] = None,
    by_doc: Annotated[bool, typer.Option("--by_doc", help="also a row per document")] = False,
) -> None:
    """Print how many pairs are pending, approved, edited, rejected and stale (no browser)."""
    from coalqa.review.pairs import STATUSES

    rs = load_set(qa, chunks, feedback, flags=False)
    counts = rs.counts()
    table = Table(title=f"review of {qa or feedback}", title_justify="left")
    table.add_column("", overflow="fold")
    for s in STATUSES:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    table.add_row("all", *(str(counts["status"][s]) for s in STATUSES), str(counts["total"]))
    if by_doc:
        for doc, c in sorted(counts["docs"].items()):
            table.add_row(doc, *(str(c[s]) for s in STATUSES), str(sum(c.values())))
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    console.print(" · ".join(f"{s} {counts['status'][s]}" for s in STATUSES) + f" · total {counts['total']}",
                  markup=False)
    reviewers = rs.log.reviewers()
    console.print(f"log {rs.log.path}: {len(rs.log.records)} decision lines; reviewers: {', '.join(reviewers) or 'none'}"
                  + (f"; {len(rs.log.set_aside)} chunk(s) set aside for eval ({counts['set_aside_pairs']} pairs)"
                     if rs.log.set_aside else ""), markup=False)


@review_app.command("export")
def export(
    qa: Annotated[Path | None, QA_ARG] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write: reviewed pairs (JSON list, for "
                                         "`coalqa train --data`), or with --as_eval an eval set (JSON lines)")] = Path("reviewed.json"),
    chunks: Annotated[Path | None, CHUNKS_OPT] = None,
    feedback: Annotated[Path | None, FEEDBACK_OPT] = None,
    as_eval: Annotated[bool, typer.Option("--as_eval", help="write the approved pairs of --doc/--chunk as a "
                                          "`coalqa eval` reference set and keep those chunks out of training exports")] = False,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="with --as_eval: a document (source file name) to "
                                                  "set aside; repeatable")] = None,
    chunk: Annotated[list[str] | None, typer.Option("--chunk", help="with --as_eval: a chunk id to set aside; "
                                                    "repeatable")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="recorded with --as_eval's set-aside lines")] = None,
    exclude_unsupported: Annotated[bool, typer.Option("--exclude_unsupported", help="leave out approved/edited pairs "
                                                      "whose answer states a number its clause does not (listed "
                                                      "either way)")] = False,
) -> None:
    """Write the approved and edited pairs (edits applied, with review provenance), or an eval set (--as_eval)."""
    from coalqa.review.export import export_eval, export_training

    rs = load_set(qa, chunks, feedback, flags=False)
    console = Console(highlight=False, soft_wrap=True)
    if as_eval:
        res = export_eval(rs, output, docs=doc or [], chunk_ids=chunk or [], reviewer=reviewer or getpass.getuser())
        if res["no_key_facts"]:
            console.print(f"left out: {len(res['no_key_facts'])} approved pair(s) whose answer states no quantity "
                          "(a number with a unit) that its clause states in a sentence — only clause, heading or list "
                          "numbers, or none: a reference without key facts cannot check the numbers", markup=False)
        for u in res["unsupported"]:
            console.print(f"left out: pair {u['pair_id']} ({u['locator']}) states {'、'.join(u['numbers'])}, which its "
                          "clause does not: a reference answer must agree with its clause", markup=False)
        console.print(f"{res['references']} reference(s) → {output}; {res['chunks']} chunk(s) set aside in "
                      f"{rs.log.path}: training exports leave their pairs out. Score a model on them: coalqa eval "
                      f"--references {output} …", markup=False)
        return
    if doc or chunk:
        raise CoalqaError("--doc/--chunk choose what --as_eval sets aside; add --as_eval")
    counts = export_training(rs, output, exclude_unsupported=exclude_unsupported)
    console.print(f"{counts['approved'] + counts['edited']} reviewed pairs → {output} ({counts['approved']} approved, "
                  f"{counts['edited']} edited); left out: {counts['left']} not approved (pending, rejected or stale)"
                  + (f", {counts['set_aside']} pairs of chunks set aside for evaluation" if counts["set_aside"] else "")
                  + (f", {counts['excluded_unsupported']} with numbers their clause does not state (--exclude_unsupported)"
                     if counts["excluded_unsupported"] else ""),
                  markup=False)
    bad = counts["unsupported_pairs"]
    if bad:
        verb = "left out" if exclude_unsupported else "exported"
        console.print(f"[yellow]warning:[/] {len(bad)} reviewed pair(s) {'were ' if exclude_unsupported else ''}"
                      f"{verb} whose answer states numbers their clause does not state (approved by a reviewer"
                      + ("" if exclude_unsupported else "; they will be trained on — add --exclude_unsupported to "
                         "leave them out") + "):")
        for b in bad[:20]:
            console.print(f"  {b['pair_id']} {b['doc']} {b['locator']}: {'、'.join(b['numbers'])}", markup=False)
        if len(bad) > 20:
            console.print(f"  … and {len(bad) - 20} more (all listed in the .summary.json beside {output})",
                          markup=False)
