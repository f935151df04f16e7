// The review page of `coalqa review`: plain JavaScript, no build step.
// QA pairs, clauses and every user text are only ever inserted as text (textContent / text nodes), never as HTML.
// A decision shows "已保存" only after the server answered, which it does after the review log was fsync'd.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS_NAMES = { pending: "待审", approved: "已通过", edited: "已修改", rejected: "已驳回", stale: "条款已变更" };
const FLAG_NAMES = {
  number: "数值不在条款中", language: "语言不符", duplicate: "近似重复", no_clause: "找不到条款",
  stale: "条款已变更", ocr_low: "OCR 低置信度", ocr: "OCR 条款", eval: "已留作评测",
};
const DECISION_NAMES = { approve: "通过", reject: "驳回", edit: "修改后通过", skip: "跳过", undo: "撤销" };
const STORE = "coalqa-review-view";

let state = null;          // /api/state
let items = [];            // [[id, status]] of the view, in order
let pos = 0;               // index in items
const cache = new Map();   // pair id -> detail
let mode = "view";         // view | edit | reject
let busy = false;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function flash(message, kind) {
  const s = $("saved");
  s.textContent = message;
  s.className = "saved " + (kind || "ok");
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error && data.error.message) || `HTTP ${resp.status}`);
    err.status = resp.status;
    err.data = data;
    throw err;
  }
  return data;
}

// Text with highlighted ranges: layers = [[start, end, className], ...] (may overlap); inserted as text nodes only.
function renderMarked(node, text, layers) {
  node.textContent = "";
  const cuts = new Set([0, text.length]);
  for (const [s, e] of layers) { cuts.add(s); cuts.add(e); }
  const points = [...cuts].filter((x) => x >= 0 && x <= text.length).sort((a, b) => a - b);
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i], b = points[i + 1];
    const classes = layers.filter(([s, e]) => s <= a && e >= b).map((l) => l[2]);
    const piece = text.slice(a, b);
    if (!classes.length) { node.append(piece); continue; }
    const tag = classes.some((c) => c.startsWith("num")) ? "mark" : "span";
    const m = el(tag, [...new Set(classes.join(" ").split(" "))].join(" "), piece);
    if (classes.includes("num bad")) m.title = "条款中找不到这个数值";
    node.append(m);
  }
}

function viewParams() {
  return { status: $("f-status").value, doc: $("f-doc").value, flag: $("f-flag").value, q: $("f-q").value.trim(),
    sort: $("f-sort").value };
}

function saveView() {
  const current = items[pos] ? items[pos][0] : null;
  sessionStorage.setItem(STORE, JSON.stringify({ ...viewParams(), current }));
}

async function loadState() {
  state = await api("/api/state");
  $("who").textContent = `审核人：${state.reviewer}`;
  const c = state.status;
  $("counts").textContent = "";
  for (const s of state.statuses) {
    const chip = el("span", "chip " + s, `${STATUS_NAMES[s]} ${c[s]}`);
    $("counts").append(chip);
  }
  $("counts").append(el("span", "chip total", `共 ${state.total}`));
  const tbody = $("docs").querySelector("tbody");
  const thead = $("docs").querySelector("thead tr");
  if (thead.children.length === 1) for (const s of state.statuses) thead.append(el("th", null, STATUS_NAMES[s]));
  tbody.textContent = "";
  for (const d of state.docs_order) {
    const tr = el("tr");
    tr.append(el("td", null, d));
    for (const s of state.statuses) tr.append(el("td", "n", String(state.docs[d][s])));
    tbody.append(tr);
  }
  if (state.torn.length) {
    $("torn").hidden = false;
    $("torn").textContent = `审核记录 ${state.log} 中有 ${state.torn.length} 行未写完（程序曾在写入时中断）；` +
      "这些行从未被确认保存，已跳过。";
  }
}

let countsTimer = null;
function refreshCountsSoon() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(() => loadState().catch((e) => showError(e.message)), 300);
}

function fillSelects() {
  for (const s of state.statuses) $("f-status").append(new Option(STATUS_NAMES[s], s));
  for (const d of state.docs_order) $("f-doc").append(new Option(d, d));
  for (const f of state.flags) $("f-flag").append(new Option(FLAG_NAMES[f] || f, f));
  for (const [i, r] of state.reasons.entries()) {
    const b = el("button", "reason", `${i + 1} ${r}`);
    b.type = "button";
    b.dataset.reason = r;
    b.addEventListener("click", () => selectReason(r));
    $("reasons").append(b);
    $("confirm-reason-select").append(new Option(r, r));
  }
}

async function loadItems(keepId) {
  const p = viewParams();
  const qs = new URLSearchParams(p).toString();
  const data = await api("/api/items?" + qs);
  items = data.items;
  const at = keepId ? items.findIndex((it) => it[0] === keepId) : -1;
  pos = at >= 0 ? at : Math.min(pos, Math.max(items.length - 1, 0));
  saveView();
  await show();
}

async function ensure(ids) {
  const missing = ids.filter((id) => id && !cache.has(id));
  if (!missing.length) return;
  const data = await api("/api/pairs?ids=" + encodeURIComponent(missing.join(",")));
  for (const p of data.pairs) cache.set(p.id, p);
}

function preload() {
  const ids = [];
  for (let k = 1; k <= 6; k++) if (items[pos + k]) ids.push(items[pos + k][0]);
  if (items[pos - 1]) ids.push(items[pos - 1][0]);
  ensure(ids).catch(() => {});
}

function current() { return items[pos] ? cache.get(items[pos][0]) : null; }

async function show() {
  setMode("view");
  $("conflict").hidden = true;
  if (!items.length) {
    $("position").textContent = "当前筛选下没有问答对";
    for (const id of ["question", "answer", "clause-text", "clause-title", "clause-source", "meta", "flags", "status",
      "history"]) $(id).textContent = "";
    $("stale").hidden = true;
    document.body.dataset.ready = "1";
    return;
  }
  const id = items[pos][0];
  await ensure([id]);
  render(cache.get(id));
  preload();
  saveView();
  document.body.dataset.ready = "1";
}

function render(p) {
  if (!p) return;
  $("position").textContent = `第 ${pos + 1} / ${items.length} 条`;
  $("status").textContent = STATUS_NAMES[p.status] || p.status;
  $("status").className = "badge " + p.status;
  $("flags").textContent = "";
  for (const f of p.flags) {
    if (f === "stale" && p.status === "stale") continue;  // the status badge says it already
    const b = el("span", "flag " + f, FLAG_NAMES[f] || f);
    if (f === "number" && p.unsupported.length) b.title = "条款中没有：" + p.unsupported.join("、");
    if ((f === "ocr" || f === "ocr_low") && p.chunk && typeof p.chunk.ocr_confidence === "number") {
      b.textContent = `${FLAG_NAMES[f]} ${p.chunk.ocr_confidence.toFixed(2)}`;
    }
    $("flags").append(b);
  }
  $("meta").textContent = `${p.origin === "feedback" ? "用户反馈" : "第 " + p.row + " 行"} · ${p.doc} ${p.locator}` +
    (p.decision ? ` · ${DECISION_NAMES[p.decision.decision] || p.decision.decision}：${p.decision.reviewer}，` +
      `${p.decision.time}${p.decision.reason ? "，理由：" + p.decision.reason : ""}` +
      (p.decision.unsupported ? `，确认了条款中没有的数值：${p.decision.unsupported.join("、")}` : "") : "");
  $("question").textContent = p.question;
  renderMarked($("answer"), p.answer, p.answer_numbers.map(([s, e, ok]) => [s, e, ok ? "num" : "num bad"]));
  const orig = $("original");
  orig.hidden = p.status !== "edited";
  if (p.status === "edited") {
    orig.textContent = "";
    orig.append(el("strong", null, "原问题："), p.original.question, el("br"), el("strong", null, "原答案："),
      p.original.answer);
  }
  const fb = $("feedback-info");
  fb.hidden = p.origin !== "feedback";
  if (p.origin === "feedback") {
    fb.textContent = "";
    fb.append(el("strong", null, `用户评价：${p.extra.verdict === "wrong" ? "回答错误" : "回答正确"}`), el("br"),
      el("strong", null, "模型原答案："), p.extra.answer || "");
  }
  $("note").value = (p.decision && p.decision.note) || "";
  const c = p.chunk;
  if (c) {
    $("clause-title").textContent = `《${c.title}》${c.locator}`;
    $("clause-source").textContent = [c.source, c.heading].filter(Boolean).join(" · ");
    showOcr(c, p.flags.includes("ocr_low"));
    const layers = p.support.map(([s, e]) => [s, e, "support"])
      .concat(p.clause_numbers.map(([s, e, hit]) => [s, e, hit ? "num hit" : "num"]));
    renderMarked($("clause-text"), c.text, layers);
    // a long clause: bring the sentence that supports the answer into view
    const first = $("clause-text").querySelector(".support, mark.hit");
    $("clause-pane").scrollTop = first ? Math.max(0, first.offsetTop - 160) : 0;
  } else {
    $("clause-title").textContent = "找不到条款";
    $("clause-source").textContent = `分块文件中没有 ${p.locator || "此问答对的条款"}（chunk_id：${(p.decision && p.decision.chunk_id) || ""}）`;
    $("ocr").hidden = true;
    $("clause-text").textContent = "";
  }
  $("stale").hidden = !p.stale;
  if (p.stale) {
    const before = p.stale.old_text, after = p.stale.new_text;
    if (before && after) {  // mark the changed middle: common start and end left plain
      let a = 0;
      while (a < before.length && a < after.length && before[a] === after[a]) a++;
      let z = 0;
      while (z < before.length - a && z < after.length - a &&
        before[before.length - 1 - z] === after[after.length - 1 - z]) z++;
      renderMarked($("stale-old"), before, [[a, before.length - z, "changed"]]);
      renderMarked($("stale-new"), after, [[a, after.length - z, "changed"]]);
    } else {
      $("stale-old").textContent = before || "（未记录）";
      $("stale-new").textContent = after || "（该条款已从分块文件中删除）";
    }
  }
  $("history").textContent = "";
  for (const h of p.history.slice().reverse()) {
    $("history").append(el("li", null, `v${h.version} ${DECISION_NAMES[h.decision] || h.decision} · ${h.reviewer} · ` +
      `${h.time}${h.reason ? " · " + h.reason : ""}`));
  }
}

// OCR'd clause: its lowest line confidence, and a warning style when it is low (flag ocr_low, from the server).
function showOcr(c, low) {
  const b = $("ocr");
  b.hidden = !c.ocr;
  if (!c.ocr) return;
  const conf = typeof c.ocr_confidence === "number" ? c.ocr_confidence.toFixed(2) : null;
  b.textContent = conf === null ? "OCR 识别 · 置信度未记录" : `OCR 识别 · 最低置信度 ${conf}`;
  b.className = "badge ocr" + (low ? " low" : "");
  b.title = low ? "此条款由 OCR 识别，有识别置信度低的行：数值可能误识，请对照原件核对" :
    "此条款由 OCR 识别（各行置信度不低于 0.9），仍可能有误识字符";
}

function setMode(m) {
  mode = m;
  const editing = m === "edit";
  $("question").hidden = editing;
  $("answer").hidden = editing;
  $("edit-question").hidden = !editing;
  $("edit-answer").hidden = !editing;
  $("save-edit").hidden = !editing;
  $("edit").hidden = editing;
  $("reject-panel").hidden = m !== "reject";
  if (m !== "reject") selectReason(null);
}

let chosenReason = null;
function selectReason(r) {
  chosenReason = r;
  for (const b of $("reasons").children) b.classList.toggle("chosen", b.dataset.reason === r);
}

function updateItem(p) {
  cache.set(p.id, p);
  const it = items.find((x) => x[0] === p.id);
  if (it) it[1] = p.status;
}

async function decide(decision, extra) {
  const p = current();
  if (!p || busy) return;
  busy = true;
  flash("保存中…", "pending");
  try {
    const data = await api("/api/decide", {
      pair_id: p.id, decision, base_version: p.version, note: $("note").value, ...(extra || {}),
    });
    updateItem(data.pair);
    flash(`已保存：${DECISION_NAMES[data.record.decision]}（第 ${pos + 1} 条）`, "ok");
    refreshCountsSoon();
    if (pos + 1 < items.length) pos += 1;
    await show();
  } catch (e) {
    if (e.status === 409 && e.data && e.data.error && e.data.error.code === "unsupported_numbers") {
      flash("未保存：答案中有条款没有的数值，请确认", "bad");
      askNumbers(decision, extra, e.data.numbers || []);
    } else if (e.status === 409 && e.data) {
      flash("未保存：有冲突", "bad");
      const cur = e.data.current;
      $("conflict").hidden = false;
      $("conflict").textContent = `未保存：${cur ? cur.reviewer + " 已于 " + cur.time + " 对此条作出决定：" +
        (DECISION_NAMES[cur.decision] || cur.decision) + (cur.reason ? "（" + cur.reason + "）" : "") : "此条已被他人撤销"}。` +
        "下面显示的是最新状态，请确认后再决定。";
      cache.delete(p.id);
      await ensure([p.id]);
      render(cache.get(p.id));
      $("conflict").hidden = false;
    } else {
      flash("未保存", "bad");
      showError("保存失败：" + e.message);
    }
  } finally {
    busy = false;
  }
}

// An edited answer states numbers its clause does not: nothing was saved; ask, naming them, before saving again.
let pendingNumbers = null;
function askNumbers(decision, extra, numbers) {
  pendingNumbers = { decision, extra: { ...(extra || {}), confirm_unsupported: numbers } };
  const text = $("numbers-confirm-text");
  text.textContent = "修改后的答案写有 ";
  numbers.forEach((n, i) => {
    if (i) text.append("、");
    text.append(el("mark", "num bad", n));
  });
  text.append("，但条款原文中没有这些数值。确定这些数值正确吗？");
  $("numbers-confirm").showModal();
  $("numbers-confirm-cancel").focus();
}

function startEdit() {
  const p = current();
  if (!p) return;
  $("edit-question").value = p.question;
  $("edit-answer").value = p.answer;
  setMode("edit");
  $("edit-answer").focus();
}

function saveEdit() {
  decide("edit", { question: $("edit-question").value, answer: $("edit-answer").value });
}

function confirmReject() {
  if (!chosenReason) { flash("请选择驳回理由（1–7）", "bad"); return; }
  const text = $("reject-text").value.trim();
  const reason = text ? `${chosenReason}：${text}` : chosenReason;
  $("reject-text").value = "";
  decide("reject", { reason });
}

async function undo() {
  if (busy) return;
  busy = true;
  try {
    const data = await api("/api/undo", {});
    if (!data.undone) { flash("没有可撤销的决定", "bad"); return; }
    for (const id of data.ids) cache.delete(id);
    await ensure(data.ids);
    for (const id of data.ids) updateItem(cache.get(id));
    flash(`已撤销 ${data.undone} 个决定`, "ok");
    refreshCountsSoon();
    const at = items.findIndex((x) => x[0] === data.ids[0]);
    if (at >= 0) pos = at;
    await show();
  } catch (e) {
    showError("撤销失败：" + e.message);
  } finally {
    busy = false;
  }
}

function go(delta) {
  const next = pos + delta;
  if (next < 0 || next >= items.length) return;
  pos = next;
  show().catch((e) => showError(e.message));
}

let bulkDecision = null;
function openBulk(decision) {
  const already = decision === "approve" ? ["approved", "edited"] : ["rejected"];
  const n = items.filter((it) => !already.includes(it[1])).length;
  bulkDecision = { decision, count: n };
  $("confirm-text").textContent = n
    ? `将把当前筛选出的 ${n} 条问答对全部标记为「${decision === "approve" ? "通过" : "驳回"}」` +
      `（筛选共 ${items.length} 条，其中已${decision === "approve" ? "通过或修改" : "驳回"}的不变）。确定吗？`
    : "当前筛选下没有需要改变的问答对。";
  $("confirm-ok").disabled = !n;
  $("confirm-reason").hidden = decision !== "reject";
  $("confirm").showModal();
}

async function doBulk() {
  $("confirm").close();
  if (!bulkDecision) return;
  const body = { ...viewParams(), decision: bulkDecision.decision, count: bulkDecision.count, note: $("note").value };
  if (bulkDecision.decision === "reject") body.reason = $("confirm-reason-select").value;
  try {
    const data = await api("/api/bulk", body);
    for (const id of data.ids) cache.delete(id);
    flash(`已保存：批量${bulkDecision.decision === "approve" ? "通过" : "驳回"} ${data.saved} 条`, "ok");
    await loadState();
    await loadItems(items[pos] && items[pos][0]);
  } catch (e) {
    showError("批量操作未保存：" + e.message);
  }
}

function focusReview() {
  if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  $("pair-pane").focus({ preventScroll: true });
}

function typing(ev) {
  const t = ev.target;
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
}

document.addEventListener("keydown", (ev) => {
  if (ev.isComposing || $("confirm").open || $("help").open || $("numbers-confirm").open) return;
  if (mode === "edit") {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveEdit(); }
    else if (ev.key === "Escape") { ev.preventDefault(); setMode("view"); }
    return;
  }
  if (mode === "reject") {
    if (/^[1-9]$/.test(ev.key) && !typing(ev)) {
      const r = state.reasons[Number(ev.key) - 1];
      if (r) { ev.preventDefault(); selectReason(r); }
    } else if (ev.key === "Enter") { ev.preventDefault(); confirmReject(); }
    else if (ev.key === "Escape") { ev.preventDefault(); setMode("view"); }
    return;
  }
  if (typing(ev)) {
    if (ev.target.id === "f-q" && (ev.key === "Enter" || ev.key === "Escape")) {
      // the search is applied now and the keys go back to the review: j/k/a/r/e … work at once
      ev.preventDefault();
      clearTimeout(searchTimer);
      pos = 0;
      focusReview();
      loadItems().catch((e) => showError(e.message));
    } else if (ev.key === "Escape") {
      focusReview();
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const actions = {
    j: () => go(1), ArrowRight: () => go(1), k: () => go(-1), ArrowLeft: () => go(-1),
    a: () => decide("approve"), r: () => { if (current()) { setMode("reject"); } }, e: startEdit,
    s: () => decide("skip"), u: undo, n: () => $("note").focus(), "/": () => $("f-q").focus(),
    "?": () => $("help").showModal(),
  };
  const f = actions[ev.key];
  if (f) { ev.preventDefault(); f(); }
});

$("next").addEventListener("click", () => go(1));
$("prev").addEventListener("click", () => go(-1));
$("approve").addEventListener("click", () => decide("approve"));
$("reject").addEventListener("click", () => setMode("reject"));
$("reject-confirm").addEventListener("click", confirmReject);
$("reject-cancel").addEventListener("click", () => setMode("view"));
$("edit").addEventListener("click", startEdit);
$("save-edit").addEventListener("click", saveEdit);
$("skip").addEventListener("click", () => decide("skip"));
$("undo").addEventListener("click", undo);
$("bulk-approve").addEventListener("click", () => openBulk("approve"));
$("bulk-reject").addEventListener("click", () => openBulk("reject"));
$("confirm-ok").addEventListener("click", doBulk);
$("confirm-cancel").addEventListener("click", () => $("confirm").close());
$("help-toggle").addEventListener("click", () => $("help").showModal());
$("numbers-confirm-cancel").addEventListener("click", () => $("numbers-confirm").close());
$("numbers-confirm").addEventListener("close", () => {
  if (mode === "edit") $("edit-answer").focus();  // back to the answer to correct it
});
$("numbers-confirm-ok").addEventListener("click", () => {
  const todo = pendingNumbers;
  pendingNumbers = null;
  $("numbers-confirm").close();
  if (todo) decide(todo.decision, todo.extra);
});
$("filters").addEventListener("submit", (ev) => ev.preventDefault());
for (const id of ["f-status", "f-doc", "f-flag", "f-sort"]) {
  $(id).addEventListener("change", () => { pos = 0; loadItems().catch((e) => showError(e.message)); });
}
let searchTimer = null;
$("f-q").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { pos = 0; loadItems().catch((e) => showError(e.message)); }, 250);
});

(async function start() {
  try {
    await loadState();
    fillSelects();
    let keep = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
      if (saved) {
        for (const k of ["status", "doc", "flag", "sort"]) $("f-" + k).value = saved[k] || "";
        $("f-q").value = saved.q || "";
        keep = saved.current;
      }
    } catch (e) { keep = null; }
    await loadItems(keep);
  } catch (e) {
    showError(e.status === 401 ? "需要令牌：请打开 coalqa review 启动时打印的带 ?token= 的网址。" : "无法载入：" + e.message);
    document.body.dataset.ready = "error";
  }
})();
