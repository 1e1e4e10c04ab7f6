// alambic viewer: plain JavaScript over the server's read-only JSON endpoints.
"use strict";
const state = { step: null, offset: 0, limit: 50, total: 0, info: null };
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const show = (v) => (v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
const short = (v) => { const s = show(v); return s.length > 300 ? s.slice(0, 300) + "…" : s; };

async function get(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

async function loadRows() {
  const data = await get("/api/rows", {
    step: state.step, offset: state.offset, limit: state.limit,
    column: $("column").value, value: $("value").value, failure: $("failure").value,
  });
  state.total = data.total;
  const cols = data.columns.filter((c) => c !== "alambic_metadata");
  const known = new Set([...$("column").options].map((o) => o.value));
  for (const c of cols) if (!known.has(c)) $("column").add(new Option(c, c));
  $("rows").tHead.innerHTML = "<tr><th>#</th>" + cols.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
  $("rows").tBodies[0].innerHTML = data.rows.map((r) =>
    `<tr data-index="${r.index}" class="${r.failed ? "failed" : ""}"><td>${r.index}</td>` +
    cols.map((c) => `<td>${esc(short(r.values[c]))}</td>`).join("") + "</tr>").join("");
  const end = Math.min(state.offset + data.rows.length, data.total);
  $("pager-info").textContent = data.total ? `rows ${state.offset + 1}–${end} of ${data.total}` : "no rows";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = end >= data.total;
}

async function loadKinds() {
  // failure kinds present in this step, offered as filters ("connection (3)")
  const data = await get("/api/failures", { step: state.step });
  const select = $("failure");
  for (const o of [...select.options]) if (o.dataset.kind) o.remove();
  const counts = {};
  for (const g of data.groups) counts[g.kind] = (counts[g.kind] || 0) + g.count;
  for (const [kind, n] of Object.entries(counts)) {
    const option = new Option(`${kind} (${n})`, kind);
    option.dataset.kind = "1";
    select.add(option);
  }
}

async function loadLineage(index) {
  const data = await get("/api/row", { step: state.step, index });
  const stages = data.stages.map((s) => `<div class="stage"><strong>${esc(s.step)}</strong>` +
    Object.entries(s.values).map(([k, v]) => `<div><em>${esc(k)}</em>: ${esc(short(v))}</div>`).join("") + "</div>").join("");
  const calls = data.calls.map((c) => `<div class="call"><strong>${esc(c.name)}</strong>` +
    (c.error ? `<div class="error">error: ${esc(show(c.error.kind || ""))} ${esc(show(c.error.type || ""))}: ${esc(show(c.error.message || c.error))}</div>` : "") +
    (c.raw_input !== undefined ? `<div>prompt (raw_input)<pre>${esc(show(c.raw_input))}</pre></div>` : "") +
    (c.raw_output !== undefined ? `<div>raw output<pre>${esc(show(c.raw_output))}</pre></div>` : "") +
    (c.statistics !== undefined ? `<div>tokens: ${esc(show(c.statistics))}</div>` : "") +
    (c.latency !== undefined ? `<div>latency: ${esc(show(c.latency))}</div>` : "") +
    (c.retries !== undefined ? `<div>retries: ${esc(show(c.retries))}</div>` : "") +
    Object.entries(c).filter(([k]) => !["name", "error", "raw_input", "raw_output", "statistics", "latency", "retries"].includes(k))
      .map(([k, v]) => `<div><em>${esc(k)}</em>: ${esc(short(v))}</div>`).join("") + "</div>").join("");
  $("lineage").innerHTML = `<h3>Row ${data.index} of ${esc(data.step)}: lineage</h3>` +
    (data.aligned_by_position ? "<p>(upstream rows at the same position)</p>" : "") +
    (data.not_aligned && data.not_aligned.length ? `<p>(${esc(data.not_aligned.join(", "))}: another number of rows, not shown)</p>` : "") + stages +
    (calls ? "<h4>LLM calls and metadata</h4>" + calls : "");
}

async function loadFailures() {
  const data = await get("/api/failures", { step: state.step });
  $("failures").innerHTML = `<p>${data.failed_rows} failed row(s) in ${esc(data.step)}</p>` +
    data.groups.map((g) => `<div class="group"><strong>${g.count}×</strong> ${esc(g.where)} · ${esc(g.kind)} · ${esc(g.type)}` +
      `<pre>${esc(g.message)}</pre>examples: ${g.examples.map((i) => `<a href="#" data-index="${i}">#${i}</a>`).join(" ")}</div>`).join("");
}

async function loadPlots() {
  $("plots").textContent = "drawing…";
  const data = await get("/api/plots", { step: state.step });
  $("plots").innerHTML = data.plots.length ? data.plots.map((p) => `<div class="plot" title="${esc(p.title)}">${p.svg}</div>`).join("")
    : "<p>nothing numeric to plot in this step</p>";
}

async function loadDiff() {
  if (!state.info.others.length) { $("diff").innerHTML = "<p>Start the viewer with --diff OTHER_RUN to compare two runs.</p>"; return; }
  const data = await get("/api/diff", { step: state.step, other: $("other").value });
  const cols = Object.entries(data.changed_per_column).map(([c, n]) => `${esc(c)}: ${n}`).join(", ") || "none";
  $("diff").innerHTML = `<p id="diff-summary">${esc(data.a)} → ${esc(data.b)}: ${data.rows_a} → ${data.rows_b} rows; ` +
    `${data.added} added, ${data.removed} removed, ${data.changed_rows} changed (per column: ${cols})</p>` +
    data.examples.map((e) => `<div class="group"><strong>row ${e.index}</strong>` + e.changes.map((c) =>
      `<div><em>${esc(c.column)}</em><pre class="before">${esc(show(c.before))}</pre><pre class="after">${esc(show(c.after))}</pre></div>`).join("") + "</div>").join("");
}

const loaders = { rows: loadRows, failures: loadFailures, plots: loadPlots, diff: loadDiff };
let tab = "rows";
function guard(promise) { promise.catch((e) => { document.body.dataset.error = e.message; alert(e.message); }); }

function switchTab(name) {
  tab = name;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("hidden", p.id !== "panel-" + name);
  guard(loaders[name]());
}

async function start() {
  state.info = await get("/api/info");
  $("label").textContent = state.info.label;
  for (const s of state.info.steps) $("step").add(new Option(`${s.name} (${s.rows})`, s.name));
  state.step = state.info.steps[state.info.steps.length - 1].name;
  $("step").value = state.step;
  for (const o of state.info.others) $("other").add(new Option(o, o));
  await loadRows();
  await loadKinds();
  document.body.dataset.ready = "1";
}

$("step").addEventListener("change", () => {
  state.step = $("step").value; state.offset = 0; $("lineage").innerHTML = ""; $("failure").value = "";
  guard(loadKinds()); switchTab(tab);
});
$("filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; guard(loadRows()); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); guard(loadRows()); });
$("next").addEventListener("click", () => { state.offset += state.limit; guard(loadRows()); });
$("rows").addEventListener("click", (e) => { const tr = e.target.closest("tr[data-index]"); if (tr) guard(loadLineage(tr.dataset.index)); });
$("failures").addEventListener("click", (e) => { const a = e.target.closest("a[data-index]"); if (a) { e.preventDefault(); switchTab("rows"); guard(loadLineage(a.dataset.index)); } });
$("other").addEventListener("change", () => guard(loadDiff()));
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => switchTab(b.dataset.tab));
guard(start());
