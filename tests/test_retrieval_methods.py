"""The retrieval methods of issue 20 on small fixtures of our own: sentence-window fusion, character-bigram windows
and query expansion change the ranking and never the text shown, cited or quoted; the index records them and refuses a stale or tampered one;
the support hit of the retrieval evaluation counts the same rule in another document and not an unrelated chunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL_CHUNKS, write_chunks_file
from typer.testing import CliRunner

from coalqa.cli import app
from coalqa.errors import CoalqaError
from coalqa.eval.grounding import is_source, ranked_references, supports
from coalqa.retrieval import build_index, load_index
from coalqa.retrieval.config import IndexConfig
from coalqa.retrieval.expansion import BUILTIN, expand, read_expansions
from coalqa.retrieval.text import char_bigrams, make_tokenizer, tokenize

runner = CliRunner()

FILLER = "".join(f"4.{n} 抽采泵站应当设置备用泵，抽采管路应当定期检查并记录。" for n in range(1, 7))
WINDOW_CHUNKS = [  # c-many says the question's words often, spread over four articles; c-speed once, in one sentence
    {"id": "c-many", "source": "a.txt", "title": "采煤工作面管理规定", "locator": "第一条–第四条", "heading": "",
     "text": "第一条 采煤工作面应当加强通风管理，回风巷应当保持畅通。第二条 采煤工作面的支护应当经常检查，发现问题及时处理。"
             "第三条 采煤工作面的风量应当满足需要。第四条 采煤工作面温度应当监测，瓦斯浓度应当检查。"},
    {"id": "c-speed", "source": "b.txt", "title": "瓦斯抽采基本指标", "locator": "4.1–4.7", "heading": "",
     "text": FILLER + "4.7 采煤工作面风速不得超过4m/s，回风流中瓦斯浓度不得超过1%。"},
    {"id": "c-vent", "source": "c.txt", "title": "矿井通风规定", "locator": "3.2", "heading": "",
     "text": FILLER + "3.2 采煤工作面回风风速应当每班测定，瓦斯浓度应当随时检查。"},
]
EVERYDAY_CHUNKS = [  # c-phone says 移动电话; c-shift shares the worker's own words 下井, 能不能
    {"id": "c-phone", "source": "40-煤层气地面开采防火防爆安全规程.txt", "title": "煤层气地面开采防火防爆安全规程",
     "locator": "4.1.11", "heading": "4 一般规定",
     "text": "4.1.11 作业区域内禁止烟火，禁止使用一切可能产生电火花的设备（包括移动电话等），禁止使用闪光灯。"},
    {"id": "c-shift", "source": "37-煤矿井下作业人员管理系统使用与管理规范.txt", "title": "煤矿井下作业人员管理系统使用与管理规范",
     "locator": "5.2", "heading": "5 管理",
     "text": "5.2 下井的时候，人员应当在井口刷卡登记；下井人员能不能按时升井，由调度室查询系统确认。"},
]


def _stored_texts(index_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (index_dir / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]


def test_sentence_windows_rank_the_chunk_whose_one_sentence_answers(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + WINDOW_CHUNKS)
    question = "采煤工作面风速和回风瓦斯浓度最高不得超过多少？"
    build_index([chunks], tmp_path / "whole", sentence_window=0, expansions="none")
    build_index([chunks], tmp_path / "win", expansions="none", title_weight=0)  # c-many's title names 采煤工作面
    whole, win = load_index(tmp_path / "whole"), load_index(tmp_path / "win")
    assert whole.search(question, 1)[0]["chunk_id"] == "c-many"  # most question words, scattered over four articles
    hits = win.search(question, 3)
    assert hits[0]["chunk_id"] == "c-speed"  # the one sentence holding them all
    # the ranking changed, the text did not: hits and stored chunks are the chunk files' text, byte for byte
    originals = {c["id"]: c["text"] for c in SMALL_CHUNKS + WINDOW_CHUNKS}
    assert all(h["text"] == originals[h["chunk_id"]] for h in hits)
    assert _stored_texts(tmp_path / "win") == _stored_texts(tmp_path / "whole") == list(originals.values())
    # bm25 stays the plain score of the question's words on the whole chunk, whatever ranks the hits
    assert {h["chunk_id"]: h["bm25"] for h in hits} == {h["chunk_id"]: h["bm25"] for h in whole.search(question, 3)}
    manifest = json.loads((tmp_path / "win" / "index.json").read_text(encoding="utf-8"))
    assert manifest["sentence_window"] == 2 and manifest["fusion"] == {"method": "rrf", "k": 60, "depth": 100}
    assert (tmp_path / "win" / "windows").is_dir() and not (tmp_path / "whole" / "windows").exists()


ROCK_DUST = "".join(f"6.5.1.{n} 岩粉棚的岩粉应当定期更换，棚区长度应当符合设计。" for n in range(1, 5))
BIGRAM_CHUNKS = [  # c-pipe: 巷道 and 检查 in a short chunk, three sentences apart; c-bag: both in its last sentence,
    # with 隔爆 and 水袋, which the question's 隔爆水袋子 shares only as characters (jieba: 隔 / 爆水 / 袋子)
    {"id": "c-pipe", "source": "10-煤矿防治水规定.txt", "title": "煤矿防治水规定", "locator": "第三十条", "heading": "",
     "text": "第三十条 巷道内的排水管路应当吊挂整齐。水仓应当及时清理。水沟应当每月检查一次。"},
    {"id": "c-bag", "source": "71-AQ1020-2008煤矿井下粉尘综合防治技术规范.txt", "title": "煤矿井下粉尘综合防治技术规范",
     "locator": "6.5.1.1–6.5.2.7", "heading": "6.5 隔爆设施",
     "text": ROCK_DUST + "6.5.2.7 巷道中隔爆水棚的管理：保持水槽和水袋完好，每半个月检查一次。"},
]


def test_char_bigrams_pairs_chinese_characters_and_keeps_numbers_whole():
    assert char_bigrams("反风风量不应小于４０％；风速4m/s。甲") == ["反风", "风风", "风量", "量不", "不应", "应小", "小于",
                                                               "40%", "风速", "4m", "s", "甲"]
    assert char_bigrams("，。 ") == []


def test_bigram_windows_decide_for_the_clause_jieba_cuts_differently_and_never_change_its_text(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + BIGRAM_CHUNKS)
    question = "巷道顶上挂的隔爆水袋子多久检查一回？"
    build_index([chunks], tmp_path / "words", char_bigrams=False, expansions="none")
    build_index([chunks], tmp_path / "bigrams", expansions="none")
    words, bigrams = load_index(tmp_path / "words"), load_index(tmp_path / "bigrams")
    # the word rankings disagree (whole chunk: c-pipe, best window: c-bag); the bigram windows side with c-bag
    scores = bigrams.ranking_scores(question)
    assert len(scores) == 3 and [bigrams.chunks[int(s.argmax())]["id"] for s in scores] == ["c-pipe", "c-bag", "c-bag"]
    assert words.search(question, 1)[0]["chunk_id"] == "c-pipe"
    hits = bigrams.search(question, 3)
    assert hits[0]["chunk_id"] == "c-bag"
    originals = {c["id"]: c["text"] for c in SMALL_CHUNKS + BIGRAM_CHUNKS}
    assert all(h["text"] == originals[h["chunk_id"]] for h in hits)
    assert _stored_texts(tmp_path / "bigrams") == _stored_texts(tmp_path / "words") == list(originals.values())
    # what the support gate compares (bm25, expanded) is not touched by the bigram ranking
    before = {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in words.search(question, 3)}
    assert {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in hits} == before
    # the question's bigrams leave its question words out (咋: no 袋咋, 咋检), expansion terms come at their weight
    build_index([chunks], tmp_path / "expanded")
    weights = load_index(tmp_path / "expanded").bigram_weights("水袋咋检查？", ["每次检查"])
    assert weights == {"水袋": 1.0, "检查": 1.0, "每次": 0.75, "次检": 0.75}
    manifest = json.loads((tmp_path / "bigrams" / "index.json").read_text(encoding="utf-8"))
    assert manifest["char_bigrams"] is True and (tmp_path / "bigrams" / "bigram_windows").is_dir()
    assert words.manifest["char_bigrams"] is False and not (tmp_path / "words" / "bigram_windows").exists()
    assert words.settings["char_bigrams"] is False and bigrams.settings["char_bigrams"] is True
    # an index built without them says so in its rebuild command
    (tmp_path / "words" / "windows" / "params.index.json").unlink()
    with pytest.raises(CoalqaError, match=r"damaged .*--char_bigrams false --expansions none"):
        load_index(tmp_path / "words")


def test_search_fuses_exactly_the_reciprocal_ranks_of_its_rankings(tmp_path):
    """Two paths, one answer: the hits of ``search`` are Σ 1/(60 + rank) over each ranking of ``ranking_scores``
    (chunks scoring 0 left out, each ranking's top 100) plus the title prior of the chunks found, computed here in plain
    Python, best first, ties by row."""
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + WINDOW_CHUNKS + BIGRAM_CHUNKS + EVERYDAY_CHUNKS)
    build_index([chunks], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    assert index.title_weight == IndexConfig().title_weight > 0
    for question in ("巷道顶上挂的隔爆水袋子多久检查一回？", "采煤工作面风速和回风瓦斯浓度最高不得超过多少？", "矿灯能用多久？",
                     "在井场干活能不能掏手机打电话？", "瓦斯抽采的采煤工作面风速不得超过多少？"):
        fused: dict[int, float] = {}
        for scores in index.ranking_scores(question):
            ranked = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: (-scores[i], i))
            for rank, i in enumerate(ranked[:100], 1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (60 + rank)
        words = {t for t in tokenize(question, index.tokenizer) if len(t) >= 2}
        for i in fused:
            title = set(tokenize(index.chunks[i]["title"], index.tokenizer))
            fused[i] += index.title_weight * sum(index.idf(t) for t in words & title)
        expected = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        hits = index.search(question, 5)
        assert [(h["chunk_id"], h["score"]) for h in hits] == [(index.chunks[i]["id"], round(v, 6)) for i, v in expected]


def test_expansion_finds_the_clause_in_regulation_words_and_never_changes_its_text(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + EVERYDAY_CHUNKS)
    question = "在井场干活能不能掏手机打电话？"
    build_index([chunks], tmp_path / "plain", expansions="none")
    build_index([chunks], tmp_path / "expanded")
    plain, expanded = load_index(tmp_path / "plain"), load_index(tmp_path / "expanded")
    assert plain.search(question, 1)[0]["chunk_id"] == "c-shift"  # shares 能不能 with the question
    hit = expanded.search(question, 1)[0]
    assert hit["chunk_id"] == "c-phone"  # 手机 → 移动电话, 能不能 → 禁止
    assert hit["text"] == EVERYDAY_CHUNKS[0]["text"] and _stored_texts(tmp_path / "expanded") == _stored_texts(tmp_path / "plain")
    weights = expanded.query_weights(question)
    assert weights["手机"] == 1.0 and weights["移动电话"] == pytest.approx(0.75) and "咋" not in weights
    # the quoted evidence follows the expanded question too, and is a sentence of the clause as written
    best = expanded.focus(question, hit["text"], 40)
    assert "移动电话" in best and best in hit["text"]
    manifest = json.loads((tmp_path / "expanded" / "index.json").read_text(encoding="utf-8"))
    assert manifest["expansions"]["source"] == "builtin" and manifest["expansions"]["weight"] == 0.75
    assert (tmp_path / "expanded" / "expansions.txt").read_bytes() == BUILTIN.read_bytes()
    assert json.loads((tmp_path / "plain" / "index.json").read_text(encoding="utf-8"))["expansions"] is None


def test_expand_matches_one_character_phrases_only_as_words():
    table = read_expansions(BUILTIN)
    tk = make_tokenizer(None)
    assert "携带" in expand("下井能不能带手机？", table, tk)  # 带 cut out as a word of its own
    assert "携带" not in expand("带式输送机的托辊多久换？", table, tk)  # 带 inside 带式
    assert "冲洗" not in expand("冲击地压矿井放炮要离多远？", table, tk)  # 冲 inside 冲击
    assert {"距离", "爆破"} <= set(expand("冲击地压矿井放炮要离多远？", table, tk))
    assert expand("采区避难硐室", table, tk) == []
    # a one-character verb jieba's HMM would glue to the question word before it (得测) still counts
    assert {"检测", "测定"} <= set(expand("矿上一个月起码得测几回粉尘？", table, tk))


def test_bad_expansion_table_is_refused_with_file_and_line(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    bad = tmp_path / "mine.txt"
    bad.write_text("# comment\n手机\t移动电话\n带 携带\n", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"mine\.txt:3: expected 'phrase<TAB>term"):
        build_index([chunks], tmp_path / "idx", expansions=bad)
    assert not (tmp_path / "idx").exists()
    with pytest.raises(CoalqaError, match="expansion table .*missing.txt: cannot read it"):
        build_index([chunks], tmp_path / "idx", expansions=tmp_path / "missing.txt")


def test_old_tampered_or_changed_indexes_are_refused_with_the_rebuild_command(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    table = tmp_path / "words.txt"
    table.write_text("手机\t移动电话\n", encoding="utf-8")
    build_index([chunks], tmp_path / "idx", sentence_window=3, expansions=table, expansion_weight=0.5)
    manifest_file = tmp_path / "idx" / "index.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert manifest["expansions"]["entries"] == 1 and manifest["sentence_window"] == 3
    (tmp_path / "idx" / "expansions.txt").write_text("手机\t别的\n", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"damaged \(expansions.txt differs.*--sentence_window 3 --expansions .*words\.txt "
                                          r"--expansion_weight 0\.5"):
        load_index(tmp_path / "idx")
    manifest_file.write_text(json.dumps(manifest | {"coalqa_index": 1}), encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"built by another coalqa version \(format 1.*rebuild it: coalqa index"):
        load_index(tmp_path / "idx")
    build_index([chunks], tmp_path / "idx")
    chunks.write_text(chunks.read_text(encoding="utf-8").replace("11h", "12h"), encoding="utf-8")
    with pytest.raises(CoalqaError, match="stale: .*chunks.jsonl changed"):
        load_index(tmp_path / "idx")


def test_cli_index_flags_reach_the_manifest(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + EVERYDAY_CHUNKS)
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert "2-sentence windows (words and character bigrams)" in result.output
    assert "query expansions at weight 0.75" in result.output
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx0"), "--sentence_window", "0",
                                 "--expansions", "none"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "idx0" / "index.json").read_text(encoding="utf-8"))
    assert manifest["sentence_window"] == 0 and manifest["expansions"] is None and manifest["char_bigrams"] is False
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx1"), "--char_bigrams", "false"])
    assert result.exit_code == 0 and "2-sentence windows," in result.output, result.output
    manifest = json.loads((tmp_path / "idx1" / "index.json").read_text(encoding="utf-8"))
    assert manifest["sentence_window"] == 2 and manifest["char_bigrams"] is False
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "井场里能不能掏手机？", "-k", "1", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["chunk_id"] == "c-phone"


SAME_RULE = {"id": "c-same", "source": "3-《煤矿建设安全规范》.txt", "title": "煤矿建设安全规范", "locator": "6.10.5.3",
             "heading": "", "text": "6.10.5.3 c) 发出的矿灯最低应能连续正常使用 11 小时；d) 使用矿灯的人员严禁拆开矿灯。"}
UNRELATED = {"id": "c-other", "source": "61-煤矿建设项目安全设施设计审查和竣工验收规范.txt", "title": "竣工验收规范",
             "locator": "5.1", "heading": "", "text": "5.1 主要排水泵应能在 11h 内排出矿井 24h 的正常涌水量。"}
REF = {"id": "r-lamp", "question": "矿灯最少要能连续用多长时间？", "key_facts": ["11h"],
       "reference_answer": "发出的矿灯最低应当能连续正常使用11h。", "source_doc": "2-煤矿建设安全规程.txt",
       "source_locator": "第四百七十一条", "source_span": "发出的矿灯，最低应当能连续正常使用11h。"}


def test_support_hit_counts_the_same_rule_in_another_document_and_not_an_unrelated_chunk(tmp_path):
    source = SMALL_CHUNKS[0]
    assert is_source(source, REF) and supports(source, REF)
    assert supports(SAME_RULE, REF) and not is_source(SAME_RULE, REF)  # 11 小时 = 11h, another wording, same rule
    assert not supports(UNRELATED, REF)  # states 11h, about pumps
    assert not supports(SMALL_CHUNKS[1], REF)
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", [SAME_RULE, UNRELATED, *SMALL_CHUNKS[1:]])
    build_index([chunks], tmp_path / "idx")
    (item,) = ranked_references(load_index(tmp_path / "idx"), [REF])
    assert item["rank"] is None and item["support_rank"] == 1 and item["hits"][0]["chunk_id"] == "c-same"


def test_eval_retrieval_only_reports_strict_and_support_and_lists_misses(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", [SAME_RULE, UNRELATED, *SMALL_CHUNKS[1:]])  # no source chunk
    build_index([chunks], tmp_path / "idx")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps(REF, ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "-r", str(refs), "--index", str(tmp_path / "idx"), "--retrieval_only",
                                 "-o", str(tmp_path / "ret")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ret.json").read_text(encoding="utf-8"))
    (item,) = report["items"]
    assert item["rank"] is None and item["support_rank"] == 1
    assert report["retrieval"]["recall@10"] == 0.0 and report["retrieval_support"]["recall@1"] == 1.0
    md = (tmp_path / "ret.md").read_text(encoding="utf-8")
    assert "| strict | 1 | 0.000 |" in md and "| support | 1 | 1.000 |" in md
    miss = "| r-lamp | – | 1 | 2-煤矿建设安全规程.txt 第四百七十一条 | 3-《煤矿建设安全规范》.txt 6.10.5.3 |"
    assert miss in md and miss in result.output  # the miss with its top hit, in the report and on the console


def _qa_file(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


QA_ROWS = [
    {"input": "煤层气井场上能不能用对讲机？", "output": "不能。", "chunk_id": "c-phone"},
    {"input": "煤层气井场上能不能用对讲机？", "output": "不能。", "chunk_id": "c-phone"},  # a repeat: indexed once
    {"input": "矿灯要编号吗？", "output": "要。", "chunk_id": "c-elsewhere"},  # a chunk this index lacks
    {"input": "事故多久内上报？", "output": "1小时内。"},  # no chunk_id
]


def test_indexed_questions_rank_their_chunk_and_never_change_its_text(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + EVERYDAY_CHUNKS)
    qa = _qa_file(tmp_path / "qa.json", QA_ROWS)
    question = "井场上用对讲机行吗？"  # 对讲机 is in no clause, only in a question asked of c-phone
    build_index([chunks], tmp_path / "plain", expansions="none")
    manifest = build_index([chunks], tmp_path / "asked", expansions="none", questions=[qa])
    assert [h["chunk_id"] for h in load_index(tmp_path / "plain").search(question, 3)] != ["c-phone"]
    hits = load_index(tmp_path / "asked").search(question, 3)
    assert hits[0]["chunk_id"] == "c-phone" and hits[0]["text"] == EVERYDAY_CHUNKS[0]["text"]
    assert _stored_texts(tmp_path / "asked") == _stored_texts(tmp_path / "plain")  # questions never join the text
    q = manifest["questions"]
    assert (q["pairs"], q["indexed"], q["duplicates"], q["other_chunks"], q["no_chunk_id"]) == (4, 1, 1, 1, 1)
    stored = (tmp_path / "asked" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in stored] == [{"chunk_id": "c-phone", "question": "煤层气井场上能不能用对讲机？"}]
    qa.write_text(qa.read_text(encoding="utf-8").replace("对讲机", "手电"), encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"stale: its QA file .*qa\.json \(--questions\) is gone or changed.*--questions"):
        load_index(tmp_path / "asked")


def test_an_evaluation_question_in_a_qa_file_is_refused_with_file_and_row(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + EVERYDAY_CHUNKS)
    refs = tmp_path / "eval.jsonl"
    refs.write_text(json.dumps(REF, ensure_ascii=False) + "\n", encoding="utf-8")
    leaked = [QA_ROWS[0], {"input": " 矿灯最少要能连续用多长时间? ", "output": "11h", "chunk_id": "c-lamp"}]  # spaces, ASCII ?
    qa = _qa_file(tmp_path / "qa.json", leaked)
    with pytest.raises(CoalqaError, match=r"qa\.json: row 2 asks evaluation question r-lamp of .*eval\.jsonl"):
        build_index([chunks], tmp_path / "idx", questions=[qa], references=[refs])
    assert not (tmp_path / "idx").exists()
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx"), "--questions", str(qa),
                                 "--references", str(refs)])
    assert result.exit_code != 0 and "row 2 asks evaluation question r-lamp" in str(result.exception)
    assert not (tmp_path / "idx").exists()
    clean = _qa_file(tmp_path / "clean.json", QA_ROWS)
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx"), "--questions", str(clean),
                                 "--references", str(refs)])
    assert result.exit_code == 0 and "1 questions of 4 QA pairs" in result.output, result.output
    with pytest.raises(CoalqaError, match="--references lists the evaluation sets"):
        build_index([chunks], tmp_path / "idx2", references=[refs])


UNIGRAM_CHUNKS = [  # c-drink says 喝酒 where a worker says 喝了两杯酒; c-canteen shares the worker's 中午, 下午, 下井
    {"id": "c-drink", "source": "3-煤矿建设安全规范.txt", "title": "煤矿建设安全规范", "locator": "4.24", "heading": "",
     "text": "4.24 入井人员必须戴安全帽，严禁穿化纤衣服，入井前严禁喝酒。"},
    {"id": "c-canteen", "source": "d.txt", "title": "矿井后勤管理办法", "locator": "第九条", "heading": "",
     "text": "第九条 食堂中午和下午应当按时供应热饭，下井人员的班中餐由食堂送到井下。"},
]


def test_unigram_sentences_find_the_clause_no_word_or_bigram_reaches_and_never_change_its_text(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + UNIGRAM_CHUNKS)
    question = "中午喝了两杯酒，下午还能下井吗？"
    build_index([chunks], tmp_path / "plain", expansions="none")
    build_index([chunks], tmp_path / "uni", expansions="none", char_unigrams=True)
    plain, uni = load_index(tmp_path / "plain"), load_index(tmp_path / "uni")
    # 喝了两杯酒 shares no jieba word and no bigram with 入井前严禁喝酒: only the unigram sentences reach c-drink
    assert "c-drink" not in [h["chunk_id"] for h in plain.search(question, 8)]
    scores = uni.ranking_scores(question)
    drink_row = [c["id"] for c in uni.chunks].index("c-drink")
    assert len(scores) == 4 and scores[3][drink_row] > 0 and all(s[drink_row] == 0 for s in scores[:3])
    hits = uni.search(question, 8)
    assert hits[0]["chunk_id"] == "c-canteen" and "c-drink" in [h["chunk_id"] for h in hits]
    originals = {c["id"]: c["text"] for c in SMALL_CHUNKS + UNIGRAM_CHUNKS}
    assert all(h["text"] == originals[h["chunk_id"]] for h in hits)
    assert _stored_texts(tmp_path / "uni") == _stored_texts(tmp_path / "plain") == list(originals.values())
    # the support gate's scores are untouched: a clause reached by unigrams alone has bm25 0 (the gate refuses it)
    drink = next(h for h in hits if h["chunk_id"] == "c-drink")
    assert (drink["bm25"], drink["expanded"]) == (0.0, 0.0)
    before = {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in plain.search(question, 8)}
    assert {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in hits if h["chunk_id"] in before} == before
    # the question's unigrams: its words less question words (还, 能) and less the function characters (了, 中…)
    assert uni.unigram_weights(question) == {"午": 2.0, "喝": 1.0, "两": 1.0, "杯": 1.0, "酒": 1.0, "下": 2.0,
                                             "井": 1.0, "吗": 1.0}
    assert uni.manifest["char_unigrams"] is True and uni.settings["char_unigrams"] is True
    assert plain.manifest["char_unigrams"] is False and not (tmp_path / "plain" / "unigram_sentences").exists()
    (tmp_path / "uni" / "sentence_chunks.npy").unlink()
    with pytest.raises(CoalqaError, match=r"damaged .*--char_unigrams true --expansions none"):
        load_index(tmp_path / "uni")


TITLE_CHUNKS = [  # one rule in two regulations; the general one also forbids smoking, so it matches the question better
    {"id": "c-general", "source": "2-煤矿建设安全规程.txt", "title": "煤矿建设安全规程", "locator": "第一百八十四条",
     "heading": "", "text": "第一百八十四条 地面泵房和泵房周围20m范围内，严禁堆积易燃物和有明火，严禁吸烟。"},
    {"id": "c-subject", "source": "4-煤矿瓦斯抽采工程设计规范.txt", "title": "煤矿瓦斯抽采工程设计规范", "locator": "7.1.6",
     "heading": "", "text": "7.1.6 地面泵房和泵房周围20m范围内，严禁堆积易燃物和有明火。"},
]


def test_title_prior_prefers_the_regulation_the_question_names_and_changes_nothing_else(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", SMALL_CHUNKS + WINDOW_CHUNKS + TITLE_CHUNKS)
    build_index([chunks], tmp_path / "off", title_weight=0)
    build_index([chunks], tmp_path / "on", title_weight=0.002)  # the default 0.0005 is measured on the real corpus
    off, on = load_index(tmp_path / "off"), load_index(tmp_path / "on")
    named, unnamed = "瓦斯抽采的地面泵房周围多大范围内严禁吸烟和堆积易燃物？", "地面泵房周围多大范围内严禁吸烟和堆积易燃物？"
    assert [h["chunk_id"] for h in off.search(named, 2)] == ["c-general", "c-subject"]  # 吸烟 and one rank ahead
    hits = on.search(named, 8)
    assert [h["chunk_id"] for h in hits[:2]] == ["c-subject", "c-general"]  # 瓦斯, 抽采: words of its title
    # a question naming no title keeps the order of the fusion alone; no title word, no prior
    assert [h["chunk_id"] for h in on.search(unnamed, 2)] == ["c-general", "c-subject"]
    assert not on.title_prior(tokenize(unnamed, on.tokenizer)).any()
    prior = on.title_prior(tokenize(named, on.tokenizer))
    rows = {c["id"]: i for i, c in enumerate(on.chunks)}
    assert prior[rows["c-subject"]] > 0 == prior[rows["c-general"]]
    assert prior[rows["c-speed"]] > 0  # 瓦斯抽采基本指标 shares 瓦斯, 抽采 too: every chunk of a document gets it
    # text, bm25 and expanded (what is shown, cited and gated) are those without the prior
    originals = {c["id"]: c["text"] for c in SMALL_CHUNKS + WINDOW_CHUNKS + TITLE_CHUNKS}
    assert all(h["text"] == originals[h["chunk_id"]] for h in hits)
    before = {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in off.search(named, 8)}
    assert {h["chunk_id"]: (h["bm25"], h["expanded"]) for h in hits} == before
    # recorded: manifest, settings (cache keys of grounded answers), rebuild command; an older index has none
    assert on.manifest["title_weight"] == 0.002 and on.settings["title_weight"] == 0.002
    assert off.manifest["title_weight"] == 0.0 and off.title_weight == 0.0
    (tmp_path / "off" / "window_chunks.npy").unlink()
    with pytest.raises(CoalqaError, match=r"damaged .*--title_weight 0\.0"):
        load_index(tmp_path / "off")
    manifest = json.loads((tmp_path / "on" / "index.json").read_text(encoding="utf-8"))
    del manifest["title_weight"]
    (tmp_path / "on" / "index.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert load_index(tmp_path / "on").title_weight == 0.0
    for bad in (-0.001, float("inf"), float("nan")):
        with pytest.raises(CoalqaError, match="title_weight must be a finite number, 0 .off. or more"):
            build_index([chunks], tmp_path / "bad", title_weight=bad)
    assert not (tmp_path / "bad").exists()
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "cli_inf"), "--title_weight", "inf"])
    assert result.exit_code != 0 and "title_weight: Input should be a finite number" in str(result.exception)
    assert not (tmp_path / "cli_inf").exists()
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "cli"), "--title_weight", "0.001"])
    assert result.exit_code == 0 and "title prior 0.001" in result.output, result.output
    assert json.loads((tmp_path / "cli" / "index.json").read_text(encoding="utf-8"))["title_weight"] == 0.001
