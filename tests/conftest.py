"""Shared test fixtures: paths to the real corpus and eval set in ../shared (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The Hub is unreachable here: never wait for its retries in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every machine takes the same (float32) path in tests unless a test asks otherwise: users' CPUs often lack
# native bf16 (coalqa.hardware), and greedy answers compared token by token must not depend on the CI CPU.
os.environ.setdefault("COALQA_CPU_BF16", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS_DIR = SHARED / "corpus" / "coal-safety"
EVAL_FILE = SHARED / "eval" / "dev.jsonl"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real regulations folder (38 .txt + 2 .docx)."""
    if not CORPUS_DIR.is_dir():
        pytest.fail(f"real corpus not found at {CORPUS_DIR}: the tests expect ../shared beside the checkout")
    return CORPUS_DIR


@pytest.fixture(scope="session")
def eval_file() -> Path:
    """The public evaluation set (30 JSON lines)."""
    if not EVAL_FILE.is_file():
        pytest.fail(f"eval set not found at {EVAL_FILE}: the tests expect ../shared beside the checkout")
    return EVAL_FILE


@pytest.fixture(scope="session")
def r1_tokenizer():
    """The real DeepSeek-R1-Distill-Qwen tokenizer, rebuilt offline (cached after the first build)."""
    from coalqa.offline import build_r1_distill_tokenizer

    return build_r1_distill_tokenizer()


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, r1_tokenizer) -> Path:
    """A folder with a tiny random Qwen2ForCausalLM (9.8M params) + the R1-Distill tokenizer."""
    from coalqa.offline import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer=r1_tokenizer)


# Six regulation-like clauses (real wording style, full-width digits in one) for retrieval and grounding tests.
SMALL_CHUNKS = [
    {"id": "c-lamp", "source": "2-煤矿建设安全规程.txt", "title": "煤矿建设安全规程", "locator": "第四百七十一条",
     "heading": "第十一章 矿灯管理", "text": "第四百七十一条 矿灯应当集中统一管理。每盏矿灯必须编号，经常使用矿灯的人员必须专灯专用。\n"
     "发出的矿灯，最低应当能连续正常使用11h。严禁发放亮度不够、电线破损、灯锁失效的矿灯。"},
    {"id": "c-gas", "source": "2-煤矿建设安全规程.txt", "title": "煤矿建设安全规程", "locator": "第一百八十条",
     "heading": "第三章 通风管理 / 第二节 甲烷浓度检查", "text": "第一百八十条 采掘工作面的甲烷浓度检查次数如下：\n"
     "1.低瓦斯矿井，每班至少2次；\n2.高瓦斯矿井，每班至少3次；\n3.突出煤层、有瓦斯喷出危险或者瓦斯涌出较大的采掘工作面，必须有专人经常检查。"},
    {"id": "c-refuge", "source": "25-防治煤与瓦斯突出细则.txt", "title": "防治煤与瓦斯突出细则", "locator": "第一百一十七条",
     "heading": "第五节 安全防护措施", "text": "第一百一十七条 突出矿井必须建设采区避难硐室，采区避难硐室必须接入矿井压风管路和供水管路，"
     "额定防护时间不低于９６ｈ。"},
    {"id": "c-fan", "source": "9-煤矿的井工开采通风技术条件.txt", "title": "煤矿的井工开采通风技术条件", "locator": "5.3.2",
     "heading": "5 主要通风机 / 反风设施", "text": "5.3.2 主要通风机必须装有反风设施，并能在10min内改变巷道中的风流方向；"
     "当风流方向改变后，主要通风机的供给风量不应小于正常供风量的40%。"},
    {"id": "c-dust", "source": "39-煤矿井下粉尘综合防治技术规范.txt", "title": "煤矿井下粉尘综合防治技术规范", "locator": "4.7.2.4",
     "heading": "4.7 掘进工作面防尘 / 放炮喷雾", "text": "4.7.2.4 炮掘工作面应安设放炮喷雾装置，喷雾装置应安装在距工作面10m～15m处，"
     "放炮后连续喷雾5min以上。"},
    {"id": "c-report", "source": "8-煤矿安全生产事故报告及调查处理规定.txt", "title": "煤矿安全生产事故报告及调查处理规定",
     "locator": "第十条", "heading": "第二章 事故报告", "text": "第十条 事故发生后，事故现场有关人员应当立即报告煤矿负责人；"
     "煤矿负责人接到报告后，应当于1小时内报告事故发生地县级以上人民政府安全生产监督管理部门。"},
]


def write_chunks_file(path: Path, chunks: list[dict] | None = None) -> Path:
    """Write ``chunks`` (default :data:`SMALL_CHUNKS`) as a ``coalqa corpus`` chunks.jsonl (with ``chars``)."""
    import json

    rows = [c | {"chars": len(c["text"])} for c in (SMALL_CHUNKS if chunks is None else chunks)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_index(tmp_path_factory) -> Path:
    """A BM25 index (``coalqa.retrieval.build_index``) over :data:`SMALL_CHUNKS`; its chunk file stays unchanged."""
    from coalqa.retrieval import build_index

    work = tmp_path_factory.mktemp("small-index")
    build_index([write_chunks_file(work / "chunks.jsonl")], work / "index")
    return work / "index"


def train_adapter(work: Path, base: Path, rows: list[dict], **flags) -> Path:
    """Run a real ``coalqa train`` (through the CLI) on ``rows`` with a tiny, fast float32 setup; return the run folder.

    ``flags`` override or add ``--name value`` options (``max_steps=20`` → ``--max_steps 20``); defaults: no 4-bit,
    float32 compute, 3 steps, batch 4, lr 3e-2, no validation split, LoRA r=8 α=16, ``max_length`` 96, no checkpoints.
    """
    import json

    from typer.testing import CliRunner

    from coalqa.cli import app

    data = work / "QAdata_all.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    options = {"use_4bit": "false", "bnb_4bit_compute_dtype": "float32", "max_steps": 3, "per_device_train_batch_size": 4,
               "gradient_accumulation_steps": 1, "learning_rate": 3e-2, "val_ratio": 0, "lora_rank": 8, "lora_alpha": 16,
               "max_length": 96, "save_steps": 1000} | flags
    args = ["train", "--data", str(data), "--model_name_or_path", str(base), "--output_dir", str(work / "runs")]
    for name, value in options.items():
        args += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (work / "runs").iterdir()
    return run_dir


def prompts_fed_to_generate(loaded, questions: list[str], config) -> set[tuple[int, ...]]:
    """Answer ``questions`` with ``coalqa.ask.answer(loaded, questions, config)`` while recording the prompt ids each
    row handed to ``loaded.model.generate`` carries (padding removed by its attention mask); the model is restored."""
    from coalqa.ask import answer

    fed: list[tuple[int, ...]] = []
    original = loaded.model.generate

    def spy(*args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        fed.extend(tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask, strict=True))
        return original(*args, **kwargs)

    loaded.model.generate = spy
    try:
        answer(loaded, questions, config, progress=False)
    finally:
        del loaded.model.generate
    return set(fed)
