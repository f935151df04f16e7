"""``coalqa ask``: chat with, ask, or batch-query the fine-tuned model.

Three modes, with the original design's flags::

    coalqa ask --peft_model DIR                                   # interactive chat (streams)
    coalqa ask --peft_model DIR --question "…"                    # one question
    coalqa ask --peft_model DIR --questions_file q.json --output_file results.json   # batch

Add ``--index INDEX_DIR`` (from ``coalqa index``) to any mode for grounded answers: the retrieved clauses go into
the prompt, and each answer shows its citations (《title》locator), the clauses' best-matching sentences as
evidence, and a warning for numbers no cited clause states (:mod:`coalqa.grounding`).
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from coalqa.ask.batch import (
    load_results,
    read_questions,
    row_keys,
    settings_differences,
    settings_path,
)
from coalqa.ask.config import AskConfig
from coalqa.config import config_options, load_config
from coalqa.env import library_versions
from coalqa.errors import CoalqaError, StopRequested
from coalqa.jsonio import write_json_atomic
from coalqa.paths import check_outputs
from coalqa.template import (
    THINK_CLOSE,
    THINK_OPEN,
    encode_prompt,
    knows_think,
    prompt_opens_think,
    split_reasoning,
    split_reasoning_so_far,
)

if TYPE_CHECKING:
    from coalqa.chat_model import ChatModel


@config_options(AskConfig, bool_style="flag")
def ask(
    peft_model: Annotated[
        Path | None, typer.Option("--peft_model", help="LoRA adapter folder written by `coalqa train`.")
    ] = None,
    question: Annotated[str | None, typer.Option("--question", help="Answer this one question and exit.")] = None,
    questions_file: Annotated[
        Path | None,
        typer.Option("--questions_file", help="Batch: JSON list (strings or objects with input/question), JSON Lines, or text lines."),
    ] = None,
    output_file: Annotated[
        Path | None, typer.Option("--output_file", help="Batch: results JSON (rerun to resume); settings beside it.")
    ] = None,
    adapter: Annotated[
        bool, typer.Option("--adapter/--no-adapter", help="--no-adapter: the base model alone, same prompt format (for comparison).")
    ] = True,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with AskConfig settings.")] = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Answer coal-mine-safety questions with a fine-tuned adapter: chat, one question, or a batch file.

    The prompt format, base model and 4-bit loading come from the adapter's train_config.yaml.
    Reasoning (<think>) is hidden unless --show_think.
    """
    cfg = load_config(AskConfig, config, overrides)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if question is not None and questions_file is not None:
        raise CoalqaError("give either --question or --questions_file, not both")
    if output_file is not None and questions_file is None:
        raise CoalqaError("--output_file needs --questions_file (batch mode)")
    if questions_file is not None and output_file is None:
        raise CoalqaError("--questions_file needs --output_file (where the answers are written)")
    if question is not None and not question.strip():
        raise CoalqaError("--question is empty")
    if peft_model is None and cfg.model_name_or_path is None:
        raise CoalqaError("give --peft_model DIR (the output folder of `coalqa train`), or --model_name_or_path with --no-adapter")
    check_outputs(
        "ask",
        inputs={"--questions_file": questions_file, "--peft_model": peft_model,
                "--model_name_or_path": cfg.model_name_or_path, "--config": config, "--index": cfg.index},
        outputs={"--output_file": output_file, "the settings file": output_file and settings_path(output_file)},
    )
    rows = read_questions(questions_file) if questions_file is not None else None
    existing = load_results(output_file) if output_file is not None else []
    from coalqa.chat_model import start_model

    model = start_model(peft_model, cfg, use_adapter=adapter, console=err)
    err.print(
        model.summary(template=True) + " · "
        + (f"temperature {cfg.temperature}, top_p {cfg.top_p}" if cfg.sampling else "greedy")
        + f" · max_new_tokens {cfg.max_new_tokens}",
        style="dim",
        markup=False,
    )
    if rows is not None:
        _batch(model, rows, existing, output_file, questions_file, cfg, err)
    elif question is not None:
        result = _stream_turn(model, question.strip(), cfg, [], err)
        if result.get("interrupted"):
            raise typer.Exit(130)
    else:
        _chat(model, cfg, err)


# ----------------------------------------------------------------------------------------- chat


def show_grounding(result: dict, out: Console) -> None:
    """Print a grounded answer's citations (《title》locator lines), evidence and unsupported-number warning
    (:func:`coalqa.grounding.render.provenance_lines`)."""
    from coalqa.grounding.render import provenance_lines

    for line in provenance_lines(result):
        out.print(line)


class _Shown:
    """What of a streamed answer the terminal has printed: the reasoning (``--show_think``) and the answer, as split by
    :func:`coalqa.template.split_reasoning_so_far` (the server's splitter), each printed as it grows."""

    def __init__(self, opens_think: bool, may_think: bool, cfg: AskConfig, out: Console, err: Console) -> None:
        self.opens_think, self.may_think, self.cfg, self.out, self.err = opens_think, may_think, cfg, out, err
        self.reasoning = self.answer = ""
        self.phase = "start"

    def update(self, buf: str, final: bool = False) -> None:
        """Print what ``buf`` (the output so far; ``final``: all of it) adds to what was printed."""
        if final:
            reasoning, answer, _ = split_reasoning(buf, self.opens_think)
        else:
            reasoning, answer = split_reasoning_so_far(buf, self.opens_think, self.may_think)
        thinking = self.opens_think or buf.lstrip().startswith(THINK_OPEN) or bool(reasoning)
        if thinking and self.phase == "start":
            self.phase = "thinking"
            if self.cfg.show_think:
                self.out.out(THINK_OPEN, style="dim")
            else:
                self.err.print("(思考中 / thinking …)", style="dim")
        if self.cfg.show_think and reasoning.startswith(self.reasoning) and reasoning[len(self.reasoning):]:
            self.out.out(reasoning[len(self.reasoning):], style="dim", end="")
            self.reasoning = reasoning
        if answer.startswith(self.answer) and answer[len(self.answer):]:
            if self.phase == "thinking" and self.cfg.show_think:
                self.out.out(f"\n{THINK_CLOSE}\n", style="dim")
            self.phase = "answer"
            self.out.out(answer[len(self.answer):], end="")
            self.answer = answer
        self.out.file.flush()


def _stream_turn(model: ChatModel, question: str, cfg: AskConfig, history: list[tuple[str, str]], err: Console) -> dict:
    """Stream one answer to stdout (reasoning only with --show_think); Ctrl-C stops it. Returns the result.

    With an index: the supporting clauses go into the prompt and the answer is followed by its citations,
    evidence and unsupported-number warning; with no supporting clause it abstains (``cfg.abstain``)."""
    from coalqa.ask.inference import stream_answer

    loaded, index = model.loaded, model.index
    out = Console(highlight=False, soft_wrap=True)
    grounding = None
    if index is not None:
        from coalqa.grounding import abstention, context_k, retrieve_support

        grounding = retrieve_support(index, question, cfg, context_k(loaded, cfg), loaded.fmt.clause_chars)
        if not grounding.supporting and cfg.abstain:
            result = abstention(grounding)
            show_grounding(result, out)
            return result | {"interrupted": False}
    opens_think = prompt_opens_think(loaded.tokenizer, loaded.fmt)
    stream = stream_answer(loaded, question, cfg, history, grounding.context if grounding else None)
    shown = _Shown(opens_think, not opens_think and knows_think(loaded.tokenizer), cfg, out, err)
    buf, interrupted = "", False
    pieces = iter(stream)
    while True:
        try:
            piece = next(pieces)
            if not interrupted:
                buf += piece
                shown.update(buf)
        except StopIteration:
            break
        except StopRequested:  # SIGTERM: stop generating, let the generation thread end, and leave
            stream.stop()
            stream.result()
            raise
        except KeyboardInterrupt:
            stream.stop()
            interrupted = True
    shown.update(buf, final=True)
    result = stream.result()
    out.out("")
    if grounding is not None and not result["interrupted"]:
        from coalqa.grounding import finish

        result = finish(index, grounding, result, cfg)
        show_grounding(result, out)
    if result["interrupted"]:
        err.print("(已停止 / stopped)", style="yellow")
    elif not result["finished_reasoning"]:
        hint = "" if cfg.show_think else " or look with --show_think"
        err.print(f"(推理在 {cfg.max_new_tokens} 个 token 处被截断，没有答案 / reasoning cut at max_new_tokens: "
                  f"no answer; raise --max_new_tokens{hint})", style="yellow")
    elif result.get("cut"):
        err.print(f"(回答在 {cfg.max_new_tokens} 个 token 处被截断，末尾可能是半句话或半个数 / answer cut at max_new_tokens: "
                  "it may end mid-sentence or mid-number; raise --max_new_tokens)", style="yellow")
    err.print(
        f"[prompt {len(stream.prompt_ids)} tokens · generated {result['tokens']} tokens · {result['seconds']:.1f} s]",
        style="dim",
        markup=False,
    )
    return result


def _chat(model: ChatModel, cfg: AskConfig, err: Console) -> None:
    """Interactive loop: keeps the conversation; /clear forgets it, /exit (or Ctrl-D) quits, Ctrl-C stops an answer."""
    if cfg.sampling and cfg.seed is not None:
        from transformers import set_seed

        set_seed(cfg.seed)
    err.print("煤矿安全问答 · /clear 清空对话 · /exit 退出 · Ctrl-C 停止当前回答\n"
              "coal-safety QA · /clear forget the conversation · /exit quit · Ctrl-C stop the current answer",
              style="bold")
    history: list[tuple[str, str]] = []
    loaded = model.loaded
    limit = getattr(loaded.model.config, "max_position_embeddings", None) or 1 << 30
    while True:
        try:
            line = input("\n问> ")
        except EOFError:
            break
        except StopRequested:
            raise
        except KeyboardInterrupt:
            err.print("\n(/exit 退出 / to quit)", style="dim")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/clear":
            history.clear()
            err.print("(对话已清空 / conversation cleared)", style="dim")
            continue
        dropped = 0
        while history and len(encode_prompt(loaded.tokenizer, text, loaded.fmt, history)) + cfg.max_new_tokens > limit:
            history.pop(0)
            dropped += 1
        if dropped:
            err.print(f"(最早的 {dropped} 轮对话已移出上下文 / {dropped} oldest turn(s) dropped to fit the "
                      f"{limit}-token context)", style="dim")
        result = _stream_turn(model, text, cfg, history, err)
        if not result["interrupted"] and not result.get("abstained"):  # a stopped answer is dropped; a cut one (answer "") keeps its question
            history.append((text, result["answer"]))


# ---------------------------------------------------------------------------------------- batch


def _batch(model: ChatModel, rows: list[dict], existing: list[dict], output_file: Path, questions_file: Path,
           cfg: AskConfig, err: Console) -> None:
    """Answer the rows not yet in ``output_file``; rewrite it atomically after every batch."""
    loaded, index = model.loaded, model.index
    model_info = loaded.describe()
    if model_info["adapter"]:
        model_info["adapter"] = str(Path(model_info["adapter"]).resolve())
    settings = {
        "model": model_info,
        "generation": cfg.generation_settings(),
        "grounding": cfg.grounding_settings() | ({"index_fingerprint": index.fingerprint} if index is not None else {}),
        "ask_config": cfg.model_dump(mode="json"),
        "questions_file": str(questions_file),
        "output_file": str(output_file),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(loaded.model.device),
        "host": platform.node(),
        "versions": library_versions(("coalqa", "torch", "transformers", "peft", "bitsandbytes")),
    }
    sfile = settings_path(output_file)
    if existing and sfile.is_file():
        try:
            old = json.loads(sfile.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CoalqaError(f"{sfile}: not readable JSON ({e}); cannot tell how {output_file} was made") from e
        diffs = settings_differences(old, settings)
        if diffs:
            raise CoalqaError(
                f"{output_file} holds answers made with other settings ({'; '.join(diffs)}); "
                "rerun with the same settings to resume, or pick another --output_file"
            )
    elif existing:
        err.print(f"warning: no {sfile.name} beside {output_file}: assuming its answers used these settings",
                  style="yellow", markup=False)

    keys = row_keys(rows)
    done = dict(zip(row_keys(existing), existing))
    wanted = set(keys)
    orphans = [r for k, r in done.items() if k not in wanted]
    if orphans:
        err.print(f"warning: {len(orphans)} result(s) in {output_file} match no question of {questions_file}; "
                  "kept at the end", style="yellow", markup=False)
    todo = [i for i, k in enumerate(keys) if k not in done]
    err.print(f"{len(rows)} questions, {len(rows) - len(todo)} already answered in {output_file}, "
              f"{len(todo)} to go", markup=False)
    write_json_atomic(sfile, settings)

    def save(indices: list[int], results: list[dict]) -> None:
        for i, r in zip(indices, results):
            extras = {k: v for k, v in rows[todo[i]].items() if k != "question"}
            done[keys[todo[i]]] = {**extras, **r}
        write_json_atomic(output_file, [done[k] for k in keys if k in done] + orphans)

    t0 = time.perf_counter()
    try:
        results = model.answer([rows[i]["question"] for i in todo], cfg, on_batch=save)
    except KeyboardInterrupt:
        answered = sum(k in done for k in keys)
        err.print(f"interrupted: {answered}/{len(rows)} answers saved in {output_file}; "
                  "rerun the same command to continue", style="yellow", markup=False)
        raise typer.Exit(130) from None
    seconds = time.perf_counter() - t0
    if not todo:
        write_json_atomic(output_file, [done[k] for k in keys if k in done] + orphans)
    if index is not None:
        abstained = sum(bool(r.get("abstained")) for r in results)
        flagged = sum(bool(r.get("unsupported_numbers")) for r in results)
        err.print(f"grounded: {len(results) - abstained} answered with citations, {abstained} abstained (no supporting "
                  f"clause), {flagged} with numbers no cited clause states", markup=False)
    tokens = sum(r["tokens"] for r in results)
    settings["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomic(sfile, settings)
    rate = f", {len(results) / seconds:.2f} questions/s, {tokens / seconds:.1f} tokens/s" if results and seconds > 0 else ""
    err.print(f"answered {len(results)} in {seconds:.1f} s{rate} → {output_file} (settings: {sfile})", markup=False)
    _warn_cut(results, cfg.max_new_tokens, err)


def _warn_cut(results: list[dict], max_new_tokens: int, err: Console) -> None:
    """Count the answers the token limit ended: inside ``<think>`` (no answer at all) and after it (``cut``: the
    answer may stop mid-sentence or mid-number)."""
    in_think = sum(not r["finished_reasoning"] for r in results)
    if in_think:
        err.print(f"warning: {in_think} answer(s) cut at max_new_tokens={max_new_tokens} inside <think>: "
                  "empty answer", style="yellow", markup=False)
    ended = sum(bool(r.get("cut")) and r["finished_reasoning"] for r in results)
    if ended:
        err.print(f"warning: {ended} answer(s) cut at max_new_tokens={max_new_tokens}: they may end mid-sentence or "
                  "mid-number (field cut); raise --max_new_tokens", style="yellow", markup=False)
