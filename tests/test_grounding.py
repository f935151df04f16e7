"""Grounded answers end to end with real components: a bm25s/jieba index over small clauses, a RAFT adapter trained by
``coalqa train --index`` on the tiny Qwen2, ``coalqa ask/eval --index`` and :func:`coalqa.grounding.answer_grounded`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import SMALL_CHUNKS, train_adapter, write_chunks_file
from typer.testing import CliRunner

from coalqa.ask import AskConfig, load_model
from coalqa.cli import app
from coalqa.errors import CoalqaError
from coalqa.eval import EvalConfig, evaluate, load_references
from coalqa.grounding import ABSTAIN_ANSWER, Grounding, answer_grounded, finish
from coalqa.numbers import unsupported_quantities
from coalqa.retrieval import build_index, load_index
from coalqa.template import PromptFormat, encode_example, encode_prompt, render_prompt
from coalqa.train.data import raft_contexts

runner = CliRunner()
LAMP_Q = "灯房发给下井人员的矿灯，最少要保证能连续正常使用多长时间？"
OFF_TOPIC = "红烧肉怎么做才好吃？"
QA = [
    {"input": LAMP_Q, "output": "发出的矿灯，最低应当能连续正常使用11h。", "chunk_id": "c-lamp"},
    {"input": "高瓦斯矿井采掘工作面每班至少检查几次甲烷浓度？", "output": "高瓦斯矿井，每班至少3次。", "chunk_id": "c-gas"},
    {"input": "突出矿井采区避难硐室的额定防护时间不低于多少？", "output": "额定防护时间不低于96h。", "chunk_id": "c-refuge"},
    {"input": "主要通风机反风设施要在多长时间内改变风流方向？", "output": "10min内。", "chunk_id": "c-fan"},
]
GREEDY = {"temperature": 0, "max_new_tokens": 8, "min_score": 1.0}


@pytest.fixture(scope="module")
def raft_adapter(tmp_path_factory, tiny_qwen2_dir, small_index) -> Path:
    """``coalqa train --index`` on the tiny Qwen2 (fp32, a few steps): an adapter trained with retrieved clauses."""
    return train_adapter(tmp_path_factory.mktemp("raft"), tiny_qwen2_dir, QA, max_steps=2, learning_rate=2e-4,
                         lora_rank=4, max_length=768, index=small_index, context_k=2, oracle_probability=0.5)


@pytest.fixture(scope="module")
def raft_loaded(raft_adapter):
    return load_model(raft_adapter)


def test_context_block_is_one_prompt_definition_for_training_and_inference(r1_tokenizer):
    fmt = PromptFormat()
    context = [{"title": c["title"], "locator": c["locator"], "text": c["text"]} for c in SMALL_CHUNKS[:2]]
    text = render_prompt(r1_tokenizer, LAMP_Q, fmt, context=context)
    assert "[1]《煤矿建设安全规程》第四百七十一条：第四百七十一条 矿灯应当集中统一管理" in text
    assert "[2]《煤矿建设安全规程》第一百八十条：" in text and text.index("[2]") < text.index(LAMP_Q)
    ex = encode_example(r1_tokenizer, LAMP_Q, "11h。", fmt, context=context)
    prompt = encode_prompt(r1_tokenizer, LAMP_Q, fmt, context=context)
    assert ex["input_ids"][: len(prompt)] == prompt and ex["completion_mask"][: len(prompt)] == [0] * len(prompt)
    assert encode_prompt(r1_tokenizer, LAMP_Q, fmt) != prompt  # no context: the question alone
    with pytest.raises(ValueError, match="context_template must contain"):
        PromptFormat(context_template="no placeholders")


def test_raft_contexts_follow_the_recipe(small_index):
    index = load_index(small_index)
    always, n = raft_contexts(QA, index, 2, 1.0, seed=0)
    assert n == len(QA) and all(len(c) <= 2 for c in always)
    for row, context in zip(QA, always):
        assert index.chunk(row["chunk_id"])["text"] in [c["text"] for c in context]
    never, n = raft_contexts(QA, index, 2, 0.0, seed=0)
    assert n == 0
    for row, context in zip(QA, never):
        assert index.chunk(row["chunk_id"])["text"] not in [c["text"] for c in context]
    assert raft_contexts(QA, index, 2, 0.5, seed=3) == raft_contexts(QA, index, 2, 0.5, seed=3)
    short, _ = raft_contexts(QA[:1], index, 1, 1.0, seed=0, clause_chars=30)
    assert short == [[{"title": "煤矿建设安全规程", "locator": "第四百七十一条", "text": "发出的矿灯，最低应当能连续正常使用11h。"}]]
    with pytest.raises(CoalqaError, match=r"qa\.json: row 2: chunk_id 'elsewhere' is not in index .*coalqa index"):
        raft_contexts([QA[0], QA[1] | {"chunk_id": "elsewhere"}], index, 2, 0.5, seed=0, where="qa.json")
    with pytest.raises(CoalqaError, match="row 1 has no chunk_id"):
        raft_contexts([{"input": "q", "output": "a"}], index, 2, 0.5, seed=0)


@pytest.mark.slow
def test_train_with_index_records_the_recipe(raft_adapter, small_index):
    recorded = yaml.safe_load((raft_adapter / "train_config.yaml").read_text(encoding="utf-8"))
    assert recorded["index"] == str(small_index.resolve()) and recorded["context_k"] == 2
    assert recorded["oracle_probability"] == 0.5 and recorded["index_fingerprint"] == load_index(small_index).fingerprint
    assert "{clauses}" in recorded["context_template"] and "{title}" in recorded["clause_template"]
    assert "Retrieved context (RAFT): 2 clauses per prompt" in (raft_adapter / "run_card.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_answer_grounded_cites_quotes_and_checks_numbers(raft_loaded, small_index):
    index = load_index(small_index)
    cfg = AskConfig(**GREEDY)
    assert raft_loaded.train_context["context_k"] == 2
    lamp, off = answer_grounded(raft_loaded, index, [LAMP_Q, OFF_TOPIC], cfg, progress=False)
    assert lamp["grounded"] and not lamp["abstained"] and lamp["tokens"] > 0
    assert lamp["citations"][0] | {"score": 0} == {"chunk_id": "c-lamp", "source": "2-煤矿建设安全规程.txt",
                                                  "title": "煤矿建设安全规程", "locator": "第四百七十一条", "score": 0}
    bm25 = {h["chunk_id"]: h["bm25"] for h in index.search(LAMP_Q, 5)}  # min_score is in BM25 units, not the fused score
    assert 1 <= len(lamp["citations"]) <= 2 and all(bm25[c["chunk_id"]] >= cfg.min_score for c in lamp["citations"])
    texts = {c["id"]: c["text"] for c in SMALL_CHUNKS}
    assert lamp["evidence"] and all(e["text"] in texts[e["chunk_id"]] for e in lamp["evidence"])  # verbatim
    assert lamp["evidence"][0]["text"] == "发出的矿灯，最低应当能连续正常使用11h。"
    cited = [texts[c["chunk_id"]] for c in lamp["citations"]]
    assert lamp["unsupported_numbers"] == [str(q) for q in unsupported_quantities(lamp["answer"], cited)]
    assert off["abstained"] and off["answer"] == ABSTAIN_ANSWER and off["tokens"] == 0 and off["citations"] == []
    ungrounded = answer_grounded(raft_loaded, index, [OFF_TOPIC], cfg.model_copy(update={"abstain": False}), progress=False)[0]
    assert not ungrounded["grounded"] and not ungrounded["abstained"] and ungrounded["citations"] == []
    with pytest.raises(CoalqaError, match="question 1 is empty"):
        answer_grounded(raft_loaded, index, ["  "], cfg, progress=False)


def test_numbers_no_cited_clause_states_are_flagged(small_index):
    index = load_index(small_index)
    lamp = index.search(LAMP_Q, 1)
    result = {"question": LAMP_Q, "answer": "矿灯最低应当能连续正常使用11小时，每班检查12次。"}
    done = finish(index, Grounding(LAMP_Q, lamp, lamp), result, AskConfig(evidence_sentences=1))
    assert done["unsupported_numbers"] == ["12次"]  # 11小时 = 11h is in the clause
    assert done["evidence"] == [{"chunk_id": "c-lamp", "title": "煤矿建设安全规程", "locator": "第四百七十一条",
                                 "text": "发出的矿灯，最低应当能连续正常使用11h。"}]


@pytest.mark.slow
def test_an_index_of_other_chunks_than_the_adapters_is_refused(raft_loaded, tmp_path):
    other = tmp_path / "other"
    build_index([write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS[:3])], other)
    index = load_index(other)
    with pytest.raises(CoalqaError, match=r"holds other chunks .* than the index the adapter .* was trained with.*--no-check_index"):
        answer_grounded(raft_loaded, index, [LAMP_Q], AskConfig(**GREEDY), progress=False)
    ok = answer_grounded(raft_loaded, index, [LAMP_Q], AskConfig(**GREEDY, check_index=False), progress=False)
    assert ok[0]["citations"][0]["chunk_id"] == "c-lamp"



@pytest.mark.slow
@pytest.mark.parametrize("command", ["ask", "eval"])
def test_cli_refuses_an_index_of_other_chunks_before_loading_the_model(raft_adapter, eval_file, tmp_path, command):
    other = tmp_path / "other"
    build_index([write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS[:3])], other)
    args = (["ask", "--question", LAMP_Q] if command == "ask" else
            ["eval", "-r", str(eval_file), "-o", str(tmp_path / "report"), "--limit", "1"])
    result = runner.invoke(app, [*args, "--peft_model", str(raft_adapter), "--index", str(other)])
    assert isinstance(result.exception, CoalqaError) and "holds other chunks" in str(result.exception)
    assert "loading" not in result.output and "compute dtype" not in result.output  # refused before any weights


@pytest.mark.slow
def test_cli_ask_grounded_question_chat_and_batch(raft_adapter, small_index, tmp_path):
    flags = ["--peft_model", str(raft_adapter), "--index", str(small_index), "--temperature", "0",
             "--max_new_tokens", "8", "--min_score", "1"]
    result = runner.invoke(app, ["ask", *flags, "--question", LAMP_Q])
    assert result.exit_code == 0, result.output
    assert "[1] 《煤矿建设安全规程》第四百七十一条" in result.output and "原文" in result.output
    assert "发出的矿灯，最低应当能连续正常使用11h。" in result.output
    result = runner.invoke(app, ["ask", *flags, "--question", OFF_TOPIC])
    assert result.exit_code == 0 and ABSTAIN_ANSWER in result.output
    result = runner.invoke(app, ["ask", *flags], input=f"{LAMP_Q}\n/exit\n")
    assert result.exit_code == 0 and "《煤矿建设安全规程》第四百七十一条" in result.output

    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([LAMP_Q, OFF_TOPIC], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "results.json"
    result = runner.invoke(app, ["ask", *flags, "--questions_file", str(questions), "--output_file", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert rows[0]["citations"][0]["chunk_id"] == "c-lamp" and rows[1]["abstained"]
    assert {"evidence", "unsupported_numbers", "grounded"} <= set(rows[0])
    settings = json.loads((tmp_path / "results.settings.json").read_text(encoding="utf-8"))
    assert settings["grounding"]["min_score"] == 1.0 and settings["grounding"]["context_k"] is None
    assert settings["model"]["prompt_format"]["context_template"] == PromptFormat().context_template
    rows[1:] = []
    out.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["ask", *flags[:-1], "2", "--questions_file", str(questions), "--output_file", str(out)])
    assert result.exit_code != 0 and "grounding.min_score: 1.0 → 2.0" in str(result.exception)


@pytest.mark.slow
def test_cli_ask_refuses_a_stale_index_before_loading_the_model(raft_adapter, tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    build_index([chunks], tmp_path / "idx")
    chunks.write_text(chunks.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    result = runner.invoke(app, ["ask", "--peft_model", str(raft_adapter), "--index", str(tmp_path / "idx"), "--question", LAMP_Q])
    assert result.exit_code != 0 and "is stale" in str(result.exception) and "coalqa index" in str(result.exception)
    result = runner.invoke(app, ["ask", "--peft_model", str(raft_adapter), "--index", str(tmp_path / "none"), "--question", LAMP_Q])
    assert result.exit_code != 0 and "does not exist; build it with `coalqa index" in str(result.exception)


def _refs(tmp_path: Path) -> Path:
    refs = [
        {"id": "r1", "question": LAMP_Q, "reference_answer": "发出的矿灯，最低应当能连续正常使用11h。", "key_facts": ["11h"],
         "source_doc": "2-煤矿建设安全规程.txt", "source_locator": "第四百七十一条", "source_span": "最低应当能连续正常使用11h"},
        {"id": "r2", "question": "主要通风机的反风设施要在多长时间内改变风流方向？", "reference_answer": "10min内改变风流方向。",
         "key_facts": ["10min"], "source_doc": "9-煤矿的井工开采通风技术条件.txt", "source_locator": "5.3.2",
         "source_span": "并能在10min内改变巷道中的风流方向"},
        {"id": "r3", "question": OFF_TOPIC, "reference_answer": "无关。", "key_facts": ["无关"]},
    ]
    path = tmp_path / "refs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in refs), encoding="utf-8")
    return path


def test_eval_scores_grounding_apart_from_the_answer(small_index, tmp_path):
    refs = load_references(_refs(tmp_path))
    index = load_index(small_index)
    lamp = {c["id"]: c for c in SMALL_CHUNKS}["c-lamp"]
    cite = {"chunk_id": "c-lamp", "source": lamp["source"], "title": lamp["title"], "locator": lamp["locator"], "score": 3.0}
    preds = [
        {"id": "r1", "answer": "矿灯要用12h。", "citations": [cite], "unsupported_numbers": ["12h"], "abstained": False,
         "evidence": [{"chunk_id": "c-lamp", "text": "发出的矿灯，最低应当能连续正常使用11h。"}]},
        {"id": "r2", "answer": "10min内。", "citations": [cite], "unsupported_numbers": ["10min"], "abstained": False, "evidence": []},
        {"id": "r3", "answer": ABSTAIN_ANSWER, "citations": [], "unsupported_numbers": [], "abstained": True, "evidence": []},
    ]
    report = evaluate(refs, preds, EvalConfig(), label="grounded", index=index)
    items = {i["id"]: i for i in report["items"]}
    assert items["r1"]["key_fact_recall"] == 0.0 and items["r1"]["evidence_key_fact_recall"] == 1.0  # evidence apart
    assert items["r1"]["citation_correct"] is True and items["r2"]["citation_correct"] is False
    assert items["r3"]["citation_correct"] is None and items["r3"]["abstained"]
    o = report["overall"]
    assert o["citation_accuracy"] == 0.5 and o["unsupported_number_rate"] == 1.0 and o["abstained"] == 1
    assert report["retrieval"] == {"n": 2, "recall@1": 1.0, "recall@3": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0}
    assert items["r1"]["retrieval_rank"] == 1 and items["r3"]["retrieval_rank"] is None
    alone = evaluate(refs, preds, EvalConfig(), label="no index")  # citations cannot be judged without the clauses
    assert alone["overall"]["citation_accuracy"] is None and alone["overall"]["unsupported_number_rate"] == 1.0
    assert "retrieval" not in alone


@pytest.mark.slow
def test_cli_eval_with_index_and_retrieval_only(raft_adapter, small_index, tmp_path):
    refs = _refs(tmp_path)
    result = runner.invoke(app, ["eval", "-r", str(refs), "--index", str(small_index), "--retrieval_only",
                                 "-o", str(tmp_path / "ret")])
    assert result.exit_code == 0, result.output
    ret = json.loads((tmp_path / "ret.json").read_text(encoding="utf-8"))
    assert ret["retrieval"]["recall@1"] == 1.0 and [i["rank"] for i in ret["items"]] == [1, 1]
    assert "| 2 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in (tmp_path / "ret.md").read_text(encoding="utf-8")
    result = runner.invoke(app, ["eval", "-r", str(refs), "--retrieval_only", "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--retrieval_only scores an index" in str(result.exception)
    result = runner.invoke(app, ["eval", "-r", str(refs), "--peft_model", str(raft_adapter), "--index", str(small_index),
                                 "--max_new_tokens", "8", "--min_score", "1", "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep.json").read_text(encoding="utf-8"))
    assert report["overall"]["citation_accuracy"] == 1.0 and report["overall"]["abstained"] == 1
    assert report["retrieval"]["recall@1"] == 1.0 and report["grounding"]["min_score"] == 1.0
    assert "Grounding: citation accuracy 1.000" in (tmp_path / "rep.md").read_text(encoding="utf-8")


# The support gate (coalqa.grounding.supports_question). Questions written for these tests, not from any eval set.
EVERYDAY_PHONE_Q = "在井场干活能不能掏手机打电话？"  # the clause says 禁止使用…移动电话
OFF_TOPIC_PHONE_Q = "手机屏幕碎了能不能修？"  # shares only expansion terms (手机 → 移动电话, 能不能 → 禁止) with it


def test_support_gate_lets_an_everyday_question_through_by_its_expansion_and_needs_one_own_word(tmp_path):
    from conftest import write_chunks_file as write
    from test_retrieval_methods import EVERYDAY_CHUNKS

    from coalqa.grounding import retrieve_support, supports_question
    from coalqa.retrieval.config import GroundingConfig

    build_index([write(tmp_path / "chunks.jsonl", SMALL_CHUNKS + EVERYDAY_CHUNKS)], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    phone = index.search(EVERYDAY_PHONE_Q, 1)[0]
    assert phone["chunk_id"] == "c-phone" and 0 < phone["bm25"] < phone["expanded"]  # 干活/打电话 own; 移动电话 expanded
    own_only = GroundingConfig(min_score=phone["bm25"] + 0.01, min_expanded_score=None)
    assert not supports_question(phone, own_only)  # the worker's own words alone fall short of min_score
    assert supports_question(phone, own_only.model_copy(update={"min_expanded_score": phone["expanded"]}))
    off = [h for h in index.search(OFF_TOPIC_PHONE_Q, 3) if h["chunk_id"] == "c-phone"]
    assert off and off[0]["bm25"] == 0 and off[0]["expanded"] > 0  # reached through expansion terms alone
    gate = GroundingConfig(min_score=1000, min_expanded_score=0.0)  # even the lowest expanded threshold …
    assert not supports_question(off[0], gate)  # … needs one of the question's own words in the clause
    assert "c-phone" not in [h["chunk_id"] for h in retrieve_support(index, OFF_TOPIC_PHONE_Q, gate, 3).supporting]
    assert "c-phone" in [h["chunk_id"] for h in retrieve_support(index, EVERYDAY_PHONE_Q, gate, 3).supporting]


SMOKE_CHUNK = {"id": "c-smoke", "source": "2-煤矿建设安全规程.txt", "title": "煤矿建设安全规程", "locator": "第九条",
               "heading": "第一编 总则", "text": "第九条 入井人员严禁携带烟草和点火物品。井下严禁吸烟。"}


def test_coverage_counts_the_question_words_a_clause_states_directly_or_through_the_expansion_table(tmp_path):
    from conftest import write_chunks_file as write

    from coalqa.retrieval.expansion import BUILTIN, read_expansions
    from coalqa.retrieval.text import coverage, make_tokenizer

    tk, table = make_tokenizer(), read_expansions(BUILTIN)
    # content: 井下 不能 抽烟 (6 characters; 能 is a question word); 井下 is in the clause, 不能 (in the phrase 能不能 → 严禁)
    # and 抽烟 → 吸烟 through the table
    assert coverage("井下能不能抽烟？", "井下严禁吸烟。", tk, table) == 1.0
    assert coverage("井下能不能抽烟？", "井下严禁吸烟。", tk) == pytest.approx(2 / 6)  # no table: 井下 alone
    assert coverage("井下能不能打篮球？", "井下严禁吸烟。", tk, table) == pytest.approx(4 / 7)  # 打篮球 is nowhere
    assert coverage("？", "井下严禁吸烟。", tk, table) == 0.0
    # function words (要, 吗: STOPWORDS) are not content; 下井 → 入井 through the table, 戴安全帽 directly
    assert coverage("下井要戴安全帽吗？", "入井人员必须戴安全帽。", tk, table) == 1.0
    build_index([write(tmp_path / "chunks.jsonl", SMALL_CHUNKS + [SMOKE_CHUNK])], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    assert index.coverage("井下能不能抽烟？", SMOKE_CHUNK["text"]) == 1.0


def test_support_gate_lets_a_short_everyday_question_through_when_the_clause_covers_all_of_it(tmp_path):
    from conftest import write_chunks_file as write

    from coalqa.grounding import retrieve_support, supports_question, with_coverage
    from coalqa.retrieval.config import GroundingConfig

    build_index([write(tmp_path / "chunks.jsonl", SMALL_CHUNKS + [SMOKE_CHUNK])], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    gate = GroundingConfig(min_score=1000, min_expanded_score=None)  # the two scores out of reach: coverage alone
    smoke = with_coverage(index, "井下能不能抽烟？", index.search("井下能不能抽烟？", 1), gate)[0]
    assert smoke["chunk_id"] == "c-smoke" and smoke["bm25"] > 0 and smoke["coverage"] == 1.0
    assert supports_question(smoke, gate)
    assert not supports_question(smoke, gate.model_copy(update={"min_coverage": None}))  # the route switched off
    assert [h["chunk_id"] for h in retrieve_support(index, "井下能不能抽烟？", gate, 1).supporting] == ["c-smoke"]
    basketball = retrieve_support(index, "井下能不能打篮球？", gate, 3)  # shares 井下 and 能不能, not what is asked
    assert basketball.hits and not basketball.supporting
    assert all(h.get("coverage", 0.0) < gate.min_coverage for h in basketball.hits)
    assert retrieve_support(index, "井下能不能抽烟？", gate, 1).context[0]["text"] == SMOKE_CHUNK["text"]  # text unchanged


@pytest.mark.slow  # chunks and indexes the whole real corpus (~15 s on 2 cores)
def test_default_support_gate_on_the_real_corpus_answers_everyday_words_and_abstains_off_topic(corpus_dir, tmp_path):
    from coalqa.corpus import load_documents, split_into_chunks, write_chunks
    from coalqa.grounding import retrieve_support
    from coalqa.retrieval.config import GroundingConfig

    documents, _ = load_documents([corpus_dir])
    write_chunks([c for d in documents for c in split_into_chunks(d, 1500)], tmp_path / "chunks.jsonl")
    build_index([tmp_path / "chunks.jsonl"], tmp_path / "idx")
    index, cfg = load_index(tmp_path / "idx"), GroundingConfig()
    everyday = retrieve_support(index, "巷道里瓦斯多大就得停电撤人？", cfg, 3)
    top = everyday.supporting[0]
    assert top["bm25"] < cfg.min_score and top["expanded"] >= cfg.min_expanded_score  # let through by the expansion
    assert "停电撤人" in top["text"] and "瓦斯" in top["text"]  # the clause it means: 瓦斯超限…停电撤人
    short = retrieve_support(index, "井下能不能抽烟？", cfg, 3).supporting  # too short for either score: by coverage
    assert short and all(h["bm25"] < cfg.min_score and h["expanded"] < cfg.min_expanded_score for h in short)
    assert any("吸烟" in h["text"] or "烟草" in h["text"] for h in short)
    for question in (OFF_TOPIC_PHONE_Q, "坐火车能不能带充电宝？", OFF_TOPIC, "银行柜员每天交接班要清点什么？"):
        g = retrieve_support(index, question, cfg, 3)
        assert g.hits and not g.supporting, (question, [(h["bm25"], h["expanded"]) for h in g.hits])
