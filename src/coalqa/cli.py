"""The ``coalqa`` command: one subcommand per pipeline stage.

Each stage keeps its command in ``coalqa/<stage>/command.py`` and imports heavy libraries
(torch, transformers) inside the command body, so ``coalqa --help`` and ``coalqa corpus`` start fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import typer
from rich.console import Console

from coalqa.errors import CoalqaError, StopRequested

app = typer.Typer(
    name="coalqa",
    help="煤矿安全规程问答模型工具链 / Coal-mine-safety regulations → QA pairs → fine-tuned QA model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # `--max-chars` and `--max_chars` are the same option: option names are matched with '-' read as '_'.
    context_settings={"token_normalize_func": lambda name: name.replace("-", "_")},
)


@app.callback()
def _root() -> None:
    """煤矿安全规程问答模型工具链 / Coal-mine-safety regulations → QA pairs → fine-tuned QA model."""
    # An explicit callback keeps `coalqa <stage>` a subcommand even while only one stage is registered.


# Stage commands, in pipeline order. Each module imports torch/transformers inside the command body.
from coalqa.ask.command import ask
from coalqa.corpus.command import corpus
from coalqa.demo import demo
from coalqa.env import env_command
from coalqa.eval.command import eval_command
from coalqa.export.command import export
from coalqa.generate.command import generate
from coalqa.retrieval.command import index, retrieve
from coalqa.review.command import review_app
from coalqa.serve.command import serve
from coalqa.train.command import train

app.command("corpus")(corpus)
app.command("generate")(generate)
app.command("index")(index)
app.command("retrieve")(retrieve)
app.add_typer(review_app, name="review")
app.command("train")(train)
app.command("ask")(ask)
app.command("eval")(eval_command)
app.command("export")(export)
app.command("serve")(serve)
app.command("demo")(demo)
app.command("env")(env_command)


def _terminate(signum, frame) -> None:
    raise StopRequested(signal.Signals(signum).name)


def main() -> None:
    """Entry point: user errors (:class:`CoalqaError`) print one red line and exit 2; Ctrl-C exits 130.

    SIGTERM (``kill``, a job scheduler, ``docker stop``) is handled like Ctrl-C: it raises
    :class:`~coalqa.errors.StopRequested`, a ``KeyboardInterrupt``, so every stage saves its partial work the same
    way (training installs its own handler that finishes the step and saves a checkpoint), and exits 130.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except CoalqaError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        _leave(130)
    except SystemExit as e:  # typer turns a KeyboardInterrupt inside a command into exit 130
        if e.code == 130:
            _leave(130)
        raise


def _leave(code: int) -> None:
    """Exit with ``code``; when worker threads are still busy (LLM requests in flight), leave without waiting.

    Python waits for non-daemon threads at exit, which after a stop request could mean minutes of silence. Every
    stage has saved its finished work before the interrupt reaches here, so those threads' work is abandoned.
    """
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if busy:
        Console(stderr=True).print(f"[yellow]stopping now[/]: {len(busy)} request(s) in flight abandoned; finished work is saved")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

if __name__ == "__main__":
    main()
