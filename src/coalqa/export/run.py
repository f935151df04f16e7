"""The export stage as one function, :func:`export_model`, behind ``coalqa export``.

Layout of the output folder::

    OUT/merged/                 safetensors + config + tokenizer/chat template + generation_config.json
    OUT/gguf/NAME-f16.gguf      llama.cpp's converter (or NAME-q8_0.gguf)
    OUT/gguf/Modelfile          `ollama create NAME -f OUT/gguf/Modelfile`
    OUT/vllm/serve.sh           `vllm serve BASE --enable-lora --lora-modules NAME=…/adapter --max-lora-rank R …`
    OUT/vllm/adapter/           copy of the adapter (weights, config, training records)
    OUT/export_report.json|md   what was written, how, and the measured differences

Order: every check that can fail without loading a model comes first (adapter folder, output folder, converter
source, vLLM compatibility, disk space); then the merge and its comparison; then the GGUF and the Modelfile.
Each artefact is written under a temporary name and renamed when complete; the adapter folder is only read, and
an output folder inside or around an input is refused before anything is read (:func:`coalqa.paths.check_outputs`).
"""

from __future__ import annotations

import platform
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.ask.inference import TRAIN_CONFIG, read_adapter_folder
from coalqa.env import library_versions
from coalqa.errors import CoalqaError
from coalqa.export import llamacpp, ollama, vllm
from coalqa.export.config import FORMATS, ExportConfig
from coalqa.export.merge import SERVING_TEMPERATURE, SERVING_TOP_P
from coalqa.jsonio import file_sha256, share_saved_weights, write_json_atomic, write_text_atomic
from coalqa.paths import check_outputs
from coalqa.template import PromptFormat, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPORT_JSON, REPORT_MD = "export_report.json", "export_report.md"
NEEDS = {"merged": ["merged"], "gguf": ["merged", "gguf"], "ollama": ["merged", "gguf", "ollama"], "vllm": ["vllm"],
         "all": list(FORMATS)}
MARGIN_BYTES = 256 << 20  # tokenizer files, headers, temporary copies


def formats_for(choice: str) -> list[str]:
    """What ``--format`` writes, prerequisites included (a GGUF is converted from ``merged/``)."""
    return NEEDS[choice]


def check_empty(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (then the export's own files in it are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CoalqaError(f"-o {out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise CoalqaError(f"output folder {out_dir} is not empty; pass --overwrite to replace the export's files in it "
                          "(other files are left alone), or choose another -o")


def check_disk(folder: Path, need: int, what: str) -> None:
    """Raise unless the file system holding ``folder`` (or its nearest existing parent) has ``need`` bytes free.

    Raises:
        CoalqaError: saying how much is needed and free, in GB.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + MARGIN_BYTES:
        raise CoalqaError(f"not enough disk space for {what} in {folder}: needs about {(need + MARGIN_BYTES) / 1e9:.1f} GB, "
                          f"{free / 1e9:.1f} GB free; free some space or choose another -o")


def base_config(base: str, adapter_dir: Path):
    """The base's ``config.json`` (no weights), for its model type, dtype and parameter count.

    Raises:
        CoalqaError: the base cannot be found (names where it was recorded and how to point elsewhere).
    """
    from transformers import AutoConfig

    from coalqa.modeling import check_model_location

    try:
        check_model_location(base)
        return AutoConfig.from_pretrained(base)
    except (CoalqaError, OSError, ValueError) as e:
        raise CoalqaError(f"base model {base!r} (recorded in {adapter_dir}) not found or unreadable: {e}. "
                          "Pass --model_name_or_path with a local copy of it") from e


def count_parameters(config) -> int:
    """Parameters of a model built from ``config`` on the meta device (no memory, no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _tensor_names(adapter_dir: Path) -> list[str]:
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        return []
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _prompt_format(train_cfg: dict) -> PromptFormat:
    return PromptFormat.model_validate({k: train_cfg[k] for k in PromptFormat.model_fields if k in train_cfg})


def export_vllm(adapter_dir: Path, adapter_cfg: dict, train_cfg: dict, base: str, model_type: str,
                cfg: ExportConfig, out_dir: Path) -> dict:
    """Check vLLM compatibility, copy the adapter to ``OUT/vllm/adapter`` and write ``OUT/vllm/serve.sh``.

    Raises:
        CoalqaError: vLLM would refuse the adapter (each reason listed).
    """
    facts, problems = vllm.check_adapter(adapter_cfg, _tensor_names(adapter_dir), model_type)
    if problems:
        raise CoalqaError(f"vLLM cannot serve adapter {adapter_dir}: {'; '.join(problems)}. "
                          "Export --format merged or gguf instead (a merged model has no such limits)")
    quantize = bool(train_cfg.get("use_4bit", False)) if cfg.vllm_4bit is None else cfg.vllm_4bit
    fmt = _prompt_format(train_cfg)
    folder = out_dir / "vllm"
    partial = out_dir / ".vllm.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "adapter").mkdir(parents=True)
    for f in vllm.adapter_files(adapter_dir):
        shutil.copy2(f, partial / "adapter" / f.name)
    share_saved_weights(partial)  # an adapter trained before coalqa fixed the mode may still be 0o600
    header = (f"written by coalqa export from {adapter_dir.resolve()}\n"
              f"adapter r={facts['rank']} → --max-lora-rank {facts['max_lora_rank']}; base {base}"
              f"{' in 4-bit NF4 as trained' if quantize and train_cfg.get('use_4bit') else ''}; vLLM >= 0.10")
    script = partial / "serve.sh"
    script.write_text(vllm.serve_script(base, cfg.name, facts["max_lora_rank"], quantize, fmt.system_prompt, header),
                      encoding="utf-8")
    script.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    command = vllm.serve_command(base, cfg.name, str((folder / "adapter").resolve()), facts["max_lora_rank"], quantize)
    notes = []
    if Path(base).expanduser().exists():
        notes.append(f"the base is a local folder ({base}); on another machine run `BASE=/path/to/it {folder}/serve.sh`")
    if quantize and not train_cfg.get("use_4bit"):
        notes.append("4-bit base requested, but the adapter was trained on a full-precision base")
    if not quantize and train_cfg.get("use_4bit"):
        notes.append("the adapter was trained on a 4-bit base and is served on a full-precision one (--no-vllm_4bit): "
                     "answers can differ slightly from `coalqa ask`")
    return {"serve_sh": str(folder / "serve.sh"), "folder": str(folder), **facts,
            "quantization": "bitsandbytes" if quantize else None, "base": base, "lora_name": cfg.name,
            "command": shlex.join(command), "notes": notes}


def _before_the_merge(adapter_dir: Path, base: str, train_cfg: dict, config: Any, formats: list[str], cfg: ExportConfig,
                      out_dir: Path, say: Callable[[str], None]) -> tuple[Any, int]:
    """What can fail is checked before the long merge: the GGUF converter found (or fetched), a chat template the
    Modelfile can reproduce, enough disk space; returns ``(converter or None, parameter count or 0)``.

    Raises:
        CoalqaError: no converter, a chat template Ollama cannot reproduce, or too little disk space.
    """
    converter = None
    if "gguf" in formats:  # resolve (or fetch) the converter before the long merge
        converter = llamacpp.find_converter(cfg.llama_cpp)
        say(f"GGUF converter: {converter.source}")
    if "ollama" in formats:  # a chat template the Modelfile cannot reproduce is refused before the long merge
        from coalqa.modeling import load_tokenizer

        has_own = (adapter_dir / "tokenizer_config.json").is_file()
        ollama.template_for(load_tokenizer(adapter_dir if has_own else base), _prompt_format(train_cfg))
    params = count_parameters(config) if "merged" in formats else 0
    if params:
        from coalqa.export.merge import save_dtype_for

        need = params * (4 if save_dtype_for(config, cfg.save_dtype)[0] == "float32" else 2)
        need += params * llamacpp.GGUF_BYTES_PER_PARAM[cfg.gguf_type] if "gguf" in formats else 0
        check_disk(out_dir, int(need), f"{', '.join(formats)} of a {params / 1e9:.2f}B-parameter model")
    return converter, params


def export_model(peft_model: str | Path, out_dir: str | Path, cfg: ExportConfig | None = None, *,
                 overwrite: bool = False, log: Callable[[str], None] | None = None,
                 config_file: Path | None = None) -> dict:
    """Export an adapter written by ``coalqa train`` for other runtimes; returns the report (also written to disk).

    Args:
        peft_model: the adapter folder (only read).
        out_dir: output folder: must be empty or missing unless ``overwrite``.
        cfg: what to write (:class:`ExportConfig`).
        log: progress messages (default: stderr).
        config_file: the ``--config`` file, only to refuse an output folder that holds it.

    Raises:
        CoalqaError: not an adapter folder, base missing, output folder not empty / inside or holding an input
            (:func:`coalqa.paths.check_outputs`), no converter,
            vLLM incompatibility, too little disk space, or a GGUF whose metadata is wrong (the report is written
            first).
    """
    cfg = cfg or ExportConfig()
    say = log or (lambda m: print(m, file=sys.stderr))
    adapter_dir = Path(peft_model).expanduser()
    out_dir = Path(out_dir).expanduser()
    inputs = {"--peft_model": adapter_dir, "--llama_cpp": cfg.llama_cpp, "--config": config_file}
    check_outputs("export", inputs, output_dirs={"-o": out_dir})
    adapter_cfg, train_cfg = read_adapter_folder(adapter_dir)
    base = cfg.model_name_or_path or train_cfg.get("model_name_or_path") or adapter_cfg.get("base_model_name_or_path")
    if not base:
        raise CoalqaError(f"{adapter_dir} records no base model: pass --model_name_or_path")
    check_outputs("export", {"the base model": base}, output_dirs={"-o": out_dir})
    formats = formats_for(cfg.format)
    check_empty(out_dir, overwrite)
    config = base_config(base, adapter_dir)
    model_type = getattr(config, "model_type", "")
    report: dict = {
        "adapter": str(adapter_dir.resolve()),
        "adapter_sha256": file_sha256(adapter_dir / "adapter_model.safetensors")
        if (adapter_dir / "adapter_model.safetensors").is_file() else None,
        "base": base,
        "trained_on_4bit": bool(train_cfg.get("use_4bit", False)),
        "formats": formats,
        "output_dir": str(out_dir.resolve()),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "versions": library_versions(("coalqa", "torch", "transformers", "peft", "bitsandbytes", "gguf",
                                      "llama-cpp-python")),
    }
    if not train_cfg:
        report["notes"] = [f"{adapter_dir} has no {TRAIN_CONFIG}: default prompt format, full-precision base assumed"]
    converter, params = _before_the_merge(adapter_dir, base, train_cfg, config, formats, cfg, out_dir, say)
    out_dir.mkdir(parents=True, exist_ok=True)

    if "vllm" in formats:
        say("vLLM: checking the adapter and writing serve.sh")
        report["vllm"] = export_vllm(adapter_dir, adapter_cfg, train_cfg, base, model_type, cfg, out_dir)
    merged = None
    if "merged" in formats:
        merged = _export_merged(adapter_dir, base, cfg, out_dir, config, params, say)
        report["merged"] = merged.pop("report")
    problems: list[str] = []
    if "gguf" in formats:
        report["gguf"], problems = _export_gguf(converter, out_dir, cfg, model_type, merged, say)
    tokenizer, fmt = (merged["tokenizer"], merged["fmt"]) if merged else (None, None)
    if "ollama" in formats and not problems:
        report["ollama"] = _export_ollama(Path(report["gguf"]["path"]), tokenizer, fmt, cfg, adapter_dir)
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_report(out_dir, report)
    if problems:
        raise CoalqaError(f"the GGUF {report['gguf']['path']} does not carry what llama.cpp needs: {'; '.join(problems)} "
                          f"(details in {out_dir / REPORT_JSON})")
    return report


def check_dtype(requested: str) -> str:
    """The compute dtype of the merge check: ``auto`` is float32 on any machine, not :func:`coalqa.hardware.choose_dtype`'s
    fastest dtype. The check compares the merged model with base + adapter; in bfloat16 two summation orders of the same
    weights already differ by ~2 logits (the demo adapter: max |Δlogit| 1.98 in bf16, 1.1e-4 in float32), which would
    hide a real merge error such as merging a QLoRA adapter onto the unquantized base (0.052). Export runs once, so
    float32's cost is small."""
    return "float32" if requested == "auto" else requested


def _export_merged(adapter_dir: Path, base: str, cfg: ExportConfig, out_dir: Path, config, params: int,
                   say: Callable[[str], None]):
    from coalqa.ask.inference import load_model
    from coalqa.export import merge
    from coalqa.modeling import load_base_model

    say(f"loading {base} + adapter as trained …")
    with warnings.catch_warnings():  # load_model's notes are said below, without a source line
        warnings.filterwarnings("ignore", category=UserWarning, module="coalqa")
        loaded = load_model(adapter_dir, model_name_or_path=cfg.model_name_or_path, dtype=check_dtype(cfg.dtype))
    for note in loaded.notes:
        say(f"note: {note}")
    tokenizer, fmt = loaded.tokenizer, loaded.fmt
    eos = merge.eos_ids_of(tokenizer, loaded.model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    prompts = merge.check_prompts(tokenizer, fmt)
    say(f"base + adapter: greedy answers to {len(prompts)} check prompts ({'4-bit NF4, ' if loaded.load_in_4bit else ''}"
        f"{loaded.dtype})")
    reference = merge.greedy_and_logits(loaded.model, prompts, cfg.check_tokens, eos, pad, desc="base + adapter")
    save_dtype, save_reason = merge.save_dtype_for(config, cfg.save_dtype)
    compute_dtype, load_in_4bit = loaded.dtype, loaded.load_in_4bit
    model, method = merge.merge_adapter(loaded, adapter_dir, save_dtype)
    del loaded
    folder = out_dir / "merged"
    say(f"merged ({method}); saving {save_dtype} safetensors to {folder}")
    merge.save_merged(model, tokenizer, fmt, folder, adapter_dir, eos)
    del model
    merge.free_memory()
    say("reloading the merged folder (plain transformers, no peft) to compare")
    reloaded = load_base_model(folder, compute_dtype=compute_dtype)
    mine = merge.greedy_and_logits(reloaded, prompts, cfg.check_tokens, eos, pad, forced=reference[0], desc="merged")
    check = merge.compare(reference, mine, tokenizer, cfg.check_tokens)
    del reloaded
    merge.free_memory()
    say(f"merged vs base + adapter on {check.prompts} prompts: max |Δlogit| {check.max_abs_logit_diff:.3g}, "
        f"mean {check.mean_abs_logit_diff:.3g}; greedy tokens identical on {check.greedy_same}/{check.prompts}")
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    texts = [render_prompt(tokenizer, q, fmt) for q in merge.CHECK_QUESTIONS]
    return {"tokenizer": tokenizer, "fmt": fmt, "prompts": prompts, "texts": texts, "greedy": mine[0], "eos": eos,
            "report": {
        "path": str(folder),
        "method": method,
        "method_note": ("4-bit base loaded as in training, dequantized to float32, adapter merged, cast once"
                        if method == "dequantize-then-merge" else "adapter merged into the float32 base, cast once"),
        "base_loaded_in_4bit": load_in_4bit,
        "compute_dtype": compute_dtype,
        "save_dtype": save_dtype,
        "save_dtype_reason": save_reason,
        "parameters": params,
        "safetensors_bytes": size,
        "prompt_format": fmt.model_dump(),
        "check": check.as_dict(),
        "generation_defaults": {"temperature": SERVING_TEMPERATURE, "top_p": SERVING_TOP_P, "eos_token_id": eos},
        "ask_command": f"coalqa ask --model_name_or_path {shlex.quote(str(folder))}",
    }}


def _export_gguf(converter, out_dir: Path, cfg: ExportConfig, model_type: str, merged: dict, say) -> tuple[dict, list[str]]:
    tokenizer = merged["tokenizer"]
    folder = out_dir / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg.name}-{cfg.gguf_type}.gguf"
    say(f"converting to GGUF ({cfg.gguf_type}) with llama.cpp's converter …")
    llamacpp.convert(converter, out_dir / "merged", path, cfg.gguf_type)
    meta = llamacpp.read_metadata(path)
    problems = llamacpp.check_metadata(meta, model_type, tokenizer)
    say(f"GGUF metadata: architecture {meta['architecture']}, pre-tokenizer {meta['pre_tokenizer']}, "
        f"EOS {meta['eos_token_id']}, chat template {'present' if meta['chat_template'] else 'missing'}"
        + (f" — PROBLEMS: {'; '.join(problems)}" if problems else " — as expected"))
    run = None if problems else llamacpp.llama_cpp_check(path, tokenizer, merged["texts"], merged["prompts"],
                                                          merged["greedy"], merged["eos"])
    if run is not None and run["tokenization_same"] < run["prompts"]:
        problems.append("llama.cpp tokenizes the check prompts differently from the tokenizer training used")
    if run is not None:
        say(f"llama.cpp (llama-cpp-python) on the GGUF: prompts tokenized as in training {run['tokenization_same']}/"
            f"{run['prompts']}, greedy tokens as the merged model {run['greedy_same']}/{run['prompts']}")
    return {
        "path": str(path),
        "type": cfg.gguf_type,
        "llama_cpp_run": run,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "converter": converter.source,
        "metadata": {k: v for k, v in meta.items() if k != "chat_template"},
        "chat_template_matches": meta["chat_template"] == getattr(tokenizer, "chat_template", None),
        "problems": problems,
        "q4_k_m_command": llamacpp.quantize_command(path),
        "llama_cpp_command": f"llama-cli -m {shlex.quote(str(path))} -cnv"
        + (f" -sys {shlex.quote(merged['fmt'].system_prompt)}" if merged["fmt"].system_prompt else ""),
    }, problems


def _export_ollama(gguf_path: Path, tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, cfg: ExportConfig, adapter_dir: Path) -> dict:
    header = (f"written by coalqa export from {adapter_dir.resolve()}\n"
              f"ollama create {cfg.name} -f Modelfile    (then: ollama run {cfg.name})\n"
              "needs an Ollama whose llama.cpp reads the deepseek-r1-qwen pre-tokenizer (releases after 0.5.7)")
    text = ollama.modelfile(gguf_path.name, tokenizer, fmt, SERVING_TEMPERATURE, SERVING_TOP_P, header)
    path = gguf_path.with_name("Modelfile")
    write_text_atomic(path, text)
    return {"path": str(path), "create_command": f"ollama create {cfg.name} -f {shlex.quote(str(path))}",
            "run_command": f"ollama run {cfg.name}", "system_prompt": fmt.system_prompt,
            "temperature": SERVING_TEMPERATURE, "top_p": SERVING_TOP_P}


def report_markdown(report: dict) -> str:
    """The export report as Markdown (printed by the command and saved as ``export_report.md``)."""
    lines = [f"# coalqa export: {Path(report['adapter']).name}", "",
             f"- Adapter: `{report['adapter']}` (sha256 `{(report.get('adapter_sha256') or '')[:16]}…`)",
             f"- Base: `{report['base']}`, trained on a {'4-bit NF4' if report['trained_on_4bit'] else 'full-precision'} base",
             f"- Written: {', '.join(report['formats'])} → `{report['output_dir']}`"]
    for note in report.get("notes", []):
        lines.append(f"- Note: {note}")
    if "merged" in report:
        m, c = report["merged"], report["merged"]["check"]
        lines += ["", "## Merged model", "",
                  f"- Folder: `{m['path']}` ({m['safetensors_bytes'] / 1e9:.2f} GB, {m['save_dtype']}: {m['save_dtype_reason']})",
                  f"- Method: **{m['method']}** — {m['method_note']}",
                  (f"- Check against base + adapter ({'4-bit, ' if m['base_loaded_in_4bit'] else ''}{m['compute_dtype']}) on "
                  f"{c['prompts']} fixed prompts, {c['tokens_per_prompt']} greedy tokens each: max |Δlogit| "
                  f"**{c['max_abs_logit_diff']:.3g}**, mean {c['mean_abs_logit_diff']:.3g}; greedy tokens identical on "
                  f"**{c['greedy_same']}/{c['prompts']}**"),
                  (f"- Serving defaults (generation_config.json): temperature {m['generation_defaults']['temperature']}, "
                  f"top_p {m['generation_defaults']['top_p']}, EOS {m['generation_defaults']['eos_token_id']}"),
                  f"- Use: `{m['ask_command']}` (the prompt format is recorded in the folder)"]
        for item in c["items"]:
            if not item["same"]:
                lines.append(f"- Differs on “{item['question']}”: base+adapter {item['base_plus_adapter']!r}, "
                             f"merged {item['merged']!r}")
    if "gguf" in report:
        g, meta = report["gguf"], report["gguf"]["metadata"]
        lines += ["", "## GGUF (llama.cpp)", "",
                  f"- File: `{g['path']}` ({g['type']}, {g['bytes'] / 1e9:.2f} GB, sha256 `{g['sha256'][:16]}…`)",
                  f"- Converter: {g['converter']}",
                  (f"- Read back: architecture `{meta['architecture']}`, pre-tokenizer `{meta['pre_tokenizer']}`, "
                  f"BOS {meta['bos_token_id']}, EOS {meta['eos_token_id']}, chat template "
                  f"{'identical to the tokenizer’s' if g['chat_template_matches'] else 'DIFFERENT'}"),
                  "- " + ("Problems: " + "; ".join(g["problems"]) if g["problems"] else "Metadata as expected"),
                  f"- Q4_K_M (with a llama.cpp build): `{g['q4_k_m_command']}`",
                  f"- Run: `{g['llama_cpp_command']}`" + (" (llama.cpp b4514 or later reads the deepseek-r1-qwen pre-tokenizer)"
                                                         if meta["pre_tokenizer"] == llamacpp.R1_PRE_TOKENIZER else "")]
        run = g.get("llama_cpp_run")
        lines.append("- Ran in llama.cpp (llama-cpp-python): " + (
            f"check prompts tokenized as in training {run['tokenization_same']}/{run['prompts']}, greedy tokens as "
            f"the merged model {run['greedy_same']}/{run['prompts']} (leading tokens in agreement: "
            f"{', '.join(str(i['same_prefix_tokens']) for i in run['items'])})" if run else "not checked (llama-cpp-python not installed)"))
    if "ollama" in report:
        o = report["ollama"]
        lines += ["", "## Ollama", "", (f"- Modelfile: `{o['path']}` (training template and system prompt, "
                  f"temperature {o['temperature']}, top_p {o['top_p']})"),
                  f"- `{o['create_command']}` then `{o['run_command']}`"]
    if "vllm" in report:
        v = report["vllm"]
        lines += ["", "## vLLM", "",
                  (f"- Adapter: r={v['rank']} → `--max-lora-rank {v['max_lora_rank']}`; targets {', '.join(v['target_modules'])}; "
                  "no modules_to_save, DoRA, bias or embedding layers"),
                  f"- `{v['folder']}/serve.sh`: `{v['command']}`"]
        lines += [f"- Note: {n}" for n in v["notes"]]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``export_report.json`` and ``export_report.md`` into ``out_dir``."""
    write_json_atomic(out_dir / REPORT_JSON, report)
    write_text_atomic(out_dir / REPORT_MD, report_markdown(report))
    return out_dir / REPORT_JSON, out_dir / REPORT_MD
