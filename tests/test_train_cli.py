"""`coalqa train` as users run it: real subprocesses for Ctrl-C + resume and a 2-process DDP (gloo) run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from coalqa.cli import app
from coalqa.train import TrainConfig, run

SHORT_SYSTEM = "你是煤矿安全专家。"


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory, eval_file) -> Path:
    items = [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()][:8]
    rows = [{"input": it["question"], "output": "；".join(it["key_facts"]), "chunk_id": it["id"]} for it in items]
    path = tmp_path_factory.mktemp("qa") / "QAdata_all.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _flags(tiny: Path, data: Path, out: Path) -> list[str]:
    return ["--data", str(data), "--model_name_or_path", str(tiny), "--output_dir", str(out), "--use_4bit", "false",
            "--bnb_4bit_compute_dtype", "float32", "--system_prompt", SHORT_SYSTEM, "--logging_steps", "1",
            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1"]


def test_help_lists_the_original_flags() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--data", "--config", "--model_name_or_path", "--output_dir", "--lora_rank", "--lora_alpha",
                 "--lora_dropout", "--use_4bit", "--num_train_epochs", "--per_device_train_batch_size",
                 "--gradient_accumulation_steps", "--learning_rate", "--weight_decay", "--warmup_ratio",
                 "--lr_scheduler_type", "--max_length", "--packing", "--resume_from_checkpoint", "--template", "--think"):
        assert flag in result.output, flag


def test_bad_data_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "QAdata_all.json"
    bad.write_text('[{"input": "矿灯", "output": ""}]', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "coalqa.cli", "train", "--data", str(bad)], capture_output=True,
                          text=True, env=_env(), timeout=120, check=False)
    assert proc.returncode == 2
    assert f"{bad}: row 1: 'output' is empty" in proc.stderr.replace("\n", "") and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path: Path, tiny_qwen2_dir: Path, qa_file: Path,
                                                                    sig: signal.Signals) -> None:
    out = tmp_path / "output"
    cmd = [sys.executable, "-m", "coalqa.cli", "train", *_flags(tiny_qwen2_dir, qa_file, out), "--val_ratio", "0",
           "--max_steps", "200", "--save_steps", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            logs = list(out.glob("*/train_log.jsonl"))
            if logs and sum(1 for line in logs[0].read_text().splitlines() if '"loss"' in line) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(sig)
        output = proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-3000:]
    assert f"{sig.name} received: saving a checkpoint after this step" in " ".join(output.split())  # said at once
    assert "Traceback" not in output
    run_dir = next(out.iterdir())
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    assert len(checkpoints) == 1, output[-3000:]
    stopped = int(checkpoints[0].name.split("-")[1])
    assert 2 <= stopped < 200
    assert "interrupted" in (run_dir / "run_card.md").read_text(encoding="utf-8")
    assert (run_dir / "adapter_model.safetensors").is_file()
    if sig == signal.SIGTERM:
        return  # resuming is the same for both

    saved = yaml.safe_load((run_dir / "train_config.yaml").read_text(encoding="utf-8"))
    resumed = run(TrainConfig(**(saved | {"resume_from_checkpoint": str(run_dir), "max_steps": stopped + 2})))
    assert resumed.run_dir == run_dir and not resumed.interrupted
    assert resumed.trainer.state.global_step == stopped + 2
    steps = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == list(range(1, stopped + 3))  # continued at stopped+1, nothing logged twice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path: Path, tiny_qwen2_dir: Path, qa_file: Path) -> None:
    """torchrun, 2 CPU processes (gloo); YAML config + a flag overriding it; only rank 0 writes."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("learning_rate: 0.001\nlora_rank: 8\nval_ratio: 0.25\nmax_steps: 2\n", encoding="utf-8")
    out = tmp_path / "output"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "coalqa.cli", "train", "--config", str(cfg), *_flags(tiny_qwen2_dir, qa_file, out), "--lora_rank", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "rank 0/2" in output and "rank 1/2" in output
    runs = list(out.iterdir())
    assert len(runs) == 1
    saved = yaml.safe_load((runs[0] / "train_config.yaml").read_text(encoding="utf-8"))
    assert saved["lora_rank"] == 4 and saved["learning_rate"] == 0.001  # flag beats YAML, YAML beats default
    assert json.loads((runs[0] / "adapter_config.json").read_text())["r"] == 4
    state = json.loads((runs[0] / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert output.count("adapter saved") == 1
