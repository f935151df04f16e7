// The chat page of `coalqa serve`: plain JavaScript, no build step.
// Talks to the same server's OpenAI-compatible API (/v1/chat/completions with stream: true, server-sent events).
// Model text is only ever inserted as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "coalqa-api-key";
const history = [];   // [{role, content}] of finished turns
let modelId = null;
let controller = null;
let feedbackOn = false;  // the server was started with --feedback_dir

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h["Authorization"] = "Bearer " + apiKey();
  return h;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// An HTTP error as one Chinese line with the server's own message (OpenAI error object) when there is one.
async function describeFailure(resp) {
  let detail = "";
  try {
    const body = await resp.json();
    detail = (body.error && body.error.message) || JSON.stringify(body);
  } catch (e) { detail = resp.statusText; }
  const what = {
    400: "请求有误", 401: "需要正确的 API 密钥", 404: "找不到", 413: "请求过大",
    429: "请求过多", 500: "服务器内部错误", 502: "后端模型服务不可用", 503: "服务器繁忙",
  }[resp.status] || "请求失败";
  let text = `${what}（HTTP ${resp.status}）：${detail}`;
  const retry = resp.headers.get("Retry-After");
  if (retry) text += `\n请约 ${retry} 秒后重试。`;
  if (resp.status === 401) $("key-bar").hidden = false;
  return text;
}

async function loadModel() {
  try {
    const resp = await fetch("/v1/models", { headers: headers() });
    if (!resp.ok) {
      $("model").textContent = "模型：未连接";
      showError(await describeFailure(resp));
      return;
    }
    const body = await resp.json();
    modelId = body.data[0].id;
    $("model").textContent = "模型：" + modelId;
    showError("");
  } catch (e) {
    $("model").textContent = "模型：未连接";
    showError("无法连接服务器：" + e.message);
  }
}

// NFKC-normalise `text`, keeping for every normalised character the index of the original one it came from.
function normalizedWithMap(text) {
  let norm = "";
  const map = [];
  for (let i = 0; i < text.length; i++) {
    let ch = text[i];
    if (i + 1 < text.length && ch >= "\ud800" && ch <= "\udbff") { ch += text[i + 1]; }
    const n = ch.normalize("NFKC");
    for (let k = 0; k < n.length; k++) map.push(i);
    norm += n;
    i += ch.length - 1;
  }
  map.push(text.length);
  return { norm, map };
}

// Ranges [start, end) of `answer` that state a number listed as unsupported (matched after NFKC, as the server checks).
function unsupportedRanges(answer, numbers) {
  const { norm, map } = normalizedWithMap(answer);
  const ranges = [];
  for (const item of numbers || []) {
    const wanted = [String(item.text || item).normalize("NFKC")];
    const digits = wanted[0].match(/^[0-9.]+/);
    if (digits) wanted.push(digits[0]);
    for (const w of wanted) {
      let from = 0, found = false;
      while (w && (from = norm.indexOf(w, from)) !== -1) {
        const before = norm[from - 1], after = norm[from + w.length];
        const isolated = !(before && /[0-9.]/.test(before)) && !(after && /[0-9]/.test(after));
        if (isolated) { ranges.push([map[from], map[from + w.length]]); found = true; }
        from += w.length;
      }
      if (found) break;
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  return ranges.filter((r, i) => i === 0 || r[0] >= ranges[i - 1][1]);
}

function renderAnswer(node, answer, numbers) {
  node.textContent = "";
  let at = 0;
  for (const [s, e] of unsupportedRanges(answer, numbers)) {
    node.append(answer.slice(at, s));
    const mark = el("mark", "unsupported", answer.slice(s, e));
    mark.title = "所引条款中找不到这个数值，请核对规程原文";
    node.append(mark);
    at = e;
  }
  node.append(answer.slice(at));
}

async function openClause(citation) {
  const dialog = $("clause");
  $("clause-title").textContent = `《${citation.title}》${citation.locator}`;
  $("clause-source").textContent = citation.source || "";
  $("clause-text").textContent = "载入中…";
  dialog.showModal();
  try {
    const resp = await fetch("/v1/clauses/" + encodeURIComponent(citation.chunk_id), { headers: headers() });
    if (!resp.ok) { $("clause-text").textContent = await describeFailure(resp); return; }
    const body = await resp.json();
    $("clause-source").textContent = [body.source, body.heading].filter(Boolean).join(" · ");
    $("clause-text").textContent = body.text;
  } catch (e) {
    $("clause-text").textContent = "无法载入条款原文：" + e.message;
  }
}

function renderGrounding(view, g) {
  view.grounding.textContent = "";
  if (!g) return;
  if (g.citations && g.citations.length) {
    const box = el("div", "citations");
    box.append(el("h3", null, "引用条款（点击查看原文）"));
    g.citations.forEach((c, i) => {
      const a = el("a", "citation", `[${i + 1}] 《${c.title}》${c.locator}`);
      a.href = "#";
      a.dataset.chunk = c.chunk_id;
      a.addEventListener("click", (ev) => { ev.preventDefault(); openClause(c); });
      box.append(a);
    });
    view.grounding.append(box);
  } else if (g.grounded === false && !g.abstained) {
    view.grounding.append(el("div", "note", "⚠ 未找到能支持该回答的条款：此回答来自模型记忆，未经规程核对。"));
  }
  if (g.evidence && g.evidence.length) {
    const box = el("div", "evidence");
    box.append(el("h3", null, "条款原文摘录"));
    for (const e of g.evidence) {
      const q = el("blockquote");
      q.append(el("strong", null, `《${e.title}》${e.locator}：`), e.text);
      box.append(q);
    }
    view.grounding.append(box);
  }
  if (g.unsupported_numbers && g.unsupported_numbers.length) {
    const names = g.unsupported_numbers.map((n) => n.text || n).join("、");
    view.grounding.append(el("div", "warning", `⚠ 以下数值在所引条款中找不到，请以规程原文为准：${names}`));
  }
}

// "correct / wrong" (+ an optional corrected answer) under a finished answer, sent to /v1/feedback.
function addFeedback(view, question, answer, grounding) {
  const box = el("div", "feedback");
  const ok = el("button", null, "回答正确");
  const bad = el("button", null, "回答有误");
  ok.type = bad.type = "button";
  box.append(el("span", "muted", "这个回答："), ok, bad);
  const form = el("div", "feedback-form");
  form.hidden = true;
  const text = el("textarea");
  text.rows = 3;
  text.placeholder = "正确的答案（可选，请依据规程原文）";
  const send = el("button", null, "提交");
  send.type = "button";
  form.append(text, send);
  box.append(form);
  const citations = ((grounding && grounding.citations) || []).map((c) => ({
    chunk_id: c.chunk_id, title: c.title, locator: c.locator, source: c.source,
  }));
  async function submit(verdict) {
    ok.disabled = bad.disabled = send.disabled = true;
    try {
      const resp = await fetch("/v1/feedback", {
        method: "POST", headers: headers(),
        body: JSON.stringify({ question, answer, verdict, correction: verdict === "wrong" ? text.value.trim() || null : null,
          citations, client: "page" }),
      });
      if (!resp.ok) throw new Error(await describeFailure(resp));
      box.textContent = "";
      box.append(el("span", "muted", verdict === "wrong" ? "已记录：回答有误，谢谢指正。" : "已记录：回答正确。"));
    } catch (e) {
      ok.disabled = bad.disabled = send.disabled = false;
      showError("反馈未保存：" + e.message);
    }
  }
  ok.addEventListener("click", () => submit("correct"));
  bad.addEventListener("click", () => { form.hidden = false; text.focus(); });
  send.addEventListener("click", () => submit("wrong"));
  view.bot.append(box);
}

function newTurn(question) {
  const user = el("div", "msg user");
  user.append(el("div", "who", "问"), el("div", "text", question));
  const bot = el("div", "msg assistant");
  const details = el("details", "reasoning");
  details.hidden = true;
  const summary = el("summary", null, "推理过程（思考中…）");
  const reasoning = el("div", "text");
  details.append(summary, reasoning);
  const answer = el("div", "answer");
  const grounding = el("div", "grounding");
  const meta = el("div", "usage");
  bot.append(el("div", "who", "答"), details, answer, grounding, meta);
  $("log").append(user, bot);
  bot.scrollIntoView({ block: "end" });
  return { bot, details, summary, reasoning, answer, grounding, meta };
}

// Server-sent events from a fetch body: calls onData(parsed JSON) for every `data:` line, stops at [DONE].
async function readEvents(resp, onData) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function ask(question) {
  showError("");
  const view = newTurn(question);
  const state = { reasoning: "", content: "", grounding: null, finish: null, usage: null };
  const update = () => {
    // A backend without a reasoning parser may put "…</think>answer" into the content: split it here too.
    let reasoning = state.reasoning, answer = state.content;
    const close = answer.indexOf("</think>");
    if (close !== -1) {
      reasoning += answer.slice(0, close).replace(/^\s*<think>/, "");
      answer = answer.slice(close + "</think>".length);
    }
    answer = answer.trimStart();
    if (reasoning.trim()) {
      view.details.hidden = false;
      view.reasoning.textContent = reasoning.trim();
    }
    renderAnswer(view.answer, answer, state.grounding && state.grounding.unsupported_numbers);
    return answer;
  };
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").hidden = false;
  const messages = history.concat([{ role: "user", content: question }]);
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      signal: controller.signal,
      body: JSON.stringify({
        model: modelId || "coalqa", messages, stream: true, stream_options: { include_usage: true },
        temperature: Number($("temperature").value),
      }),
    });
    if (!resp.ok) throw new Error(await describeFailure(resp));
    await readEvents(resp, (data) => {
      if (data.error) throw new Error("生成出错：" + data.error.message);
      if ("citations" in data || "unsupported_numbers" in data) state.grounding = { ...state.grounding, ...data };
      if (data.usage) state.usage = data.usage;
      for (const choice of data.choices || []) {
        const d = choice.delta || {};
        state.reasoning += d.reasoning_content || d.reasoning || "";
        state.content += d.content || "";
        if (choice.finish_reason) state.finish = choice.finish_reason;
      }
      update();
      renderGrounding(view, state.grounding);
    });
    const answer = update();
    view.answer.classList.add("done");
    view.summary.textContent = "推理过程（点击展开）";
    if (state.finish === "length") {
      view.grounding.prepend(el("div", "note", answer
        ? "（回答达到长度上限，已被截断）"
        : "（推理在长度上限处被截断，没有得到答案；可展开推理过程查看）"));
    }
    if (state.usage) {
      view.meta.textContent = `提示 ${state.usage.prompt_tokens} tokens · 生成 ${state.usage.completion_tokens} tokens`;
    }
    history.push({ role: "user", content: question }, { role: "assistant", content: answer });
    if (feedbackOn) addFeedback(view, question, answer, state.grounding);  // an empty (cut) answer can be corrected too
  } catch (e) {
    view.answer.classList.add("done");
    if (e.name === "AbortError") {
      view.grounding.append(el("div", "note", "（已停止）"));
    } else {
      const message = e instanceof TypeError ? "无法连接服务器：" + e.message : e.message;
      showError(message);
      view.grounding.append(el("div", "warning", "回答失败，详见上方错误信息。"));
    }
  } finally {
    controller = null;
    $("send").disabled = false;
    $("stop").hidden = true;
  }
}

$("ask").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question || controller) return;
  $("question").value = "";
  ask(question);
});
$("question").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => { history.length = 0; $("log").textContent = ""; showError(""); });
$("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });
$("key-bar").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  $("api-key").value = "";
  $("key-bar").hidden = true;
  loadModel();
fetch("/health").then((r) => r.json()).then((h) => { feedbackOn = Boolean(h.feedback); }).catch(() => {});
});
loadModel();
fetch("/health").then((r) => r.json()).then((h) => { feedbackOn = Boolean(h.feedback); }).catch(() => {});
