"""Optional LLM-as-judge: an LLM grades each answer 1–5 against the reference (off by default).

Goes through the LLM client (:func:`coalqa.llm.make_chat_client`: the
same providers, keys from the environment, retries). The judge sees the question, the reference
answer, the key facts and the candidate answer — never the reasoning — and must reply with JSON
``{"score": 1-5, "reason": "..."}``. A reply without a usable score is recorded as ``None`` with
the problem, and left out of the average.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from coalqa.eval.config import EvalConfig

JUDGE_PROMPT = """你是煤矿安全规程方面的严格评审专家。请根据参考答案和关键事实，评价候选答案的事实正确性与完整性。
评分标准（1-5 的整数）：
5 = 与参考答案一致，关键事实（数字、单位、条件、责任主体）全部正确；
4 = 基本正确，仅有不影响安全的小遗漏；
3 = 部分正确，遗漏或含糊了部分关键事实；
2 = 大部分不正确或答非所问；
1 = 错误、含有错误的数字/要求，或没有回答。
含有与参考答案矛盾的数字时，最高 2 分。

问题：{question}
参考答案：{reference}
关键事实：{facts}
候选答案：{answer}

只输出一个 JSON 对象，不要输出其他内容：{{"score": 整数, "reason": "一句话理由"}}"""


def parse_judgement(text: str) -> tuple[int | None, str]:
    """``(score, reason)`` from a judge reply; ``(None, problem)`` when it has no score 1–5."""
    import json_repair

    try:
        data = json_repair.loads(text)
    except Exception as e:  # noqa: BLE001 -- json_repair raises little, but a reply can be anything
        return None, f"unparseable judge reply: {type(e).__name__}"
    if isinstance(data, list):
        data = next((d for d in data if isinstance(d, dict)), {})
    if not isinstance(data, dict):
        return None, f"judge reply is not a JSON object: {text[:100]!r}"
    score = data.get("score")
    try:
        value = int(float(score))
    except (TypeError, ValueError):
        return None, f"judge reply has no numeric score: {text[:100]!r}"
    if not 1 <= value <= 5 or value != float(score):
        return None, f"judge score {score!r} is not an integer from 1 to 5"
    return value, str(data.get("reason") or "")


def judge_items(items: list[dict[str, Any]], config: EvalConfig) -> None:
    """Add ``judge_score`` (1–5 or ``None``) and ``judge_reason`` to each scored item, in place.

    Raises:
        CoalqaError: the judge's API key is not set (from :func:`make_chat_client`).
        FatalLLMError: the provider refuses the requests (bad key, balance used up, model or URL).
    """
    from coalqa.llm import make_chat_client

    chat = make_chat_client(
        config.judge_provider, config.judge_model, config.judge_base_url, max_concurrency=config.judge_concurrency,
        temperature=0.01, max_tokens=300,
    )

    def grade(item: dict[str, Any]) -> tuple[int | None, str]:
        prompt = JUDGE_PROMPT.format(
            question=item["question"], reference=item["reference_answer"],
            facts=json.dumps(item.get("key_facts") or [], ensure_ascii=False), answer=item["answer"] or "（空）",
        )
        text, _ = chat([{"role": "user", "content": prompt}])
        return parse_judgement(text)

    with ThreadPoolExecutor(config.judge_concurrency) as pool:
        for item, (score, reason) in zip(items, pool.map(grade, items)):
            item["judge_score"], item["judge_reason"] = score, reason
