"""The viewer page: one self-contained HTML file (inline CSS and JS, no CDN, no network) plus episode scripts.

``index.html`` embeds the overview as JSON; each shown episode is ``episodes/NNNNNN.js``, a script that
calls ``riseEpisode({...})``, loaded when the episode is picked. Script tags load from ``file://`` where
``fetch`` would be refused, so the folder works opened from disk or served. Every string that comes from
the store goes into the page through ``textContent``, never as HTML: a store from someone else cannot
inject markup or script.

``#episode=E&step=S&selftest=1`` in the URL makes the page render that step and write what it drew (sums
of the embedded values and of the canvas pixels, and any script error) into ``<pre id="status">``: what
the browser test reads.
"""

from __future__ import annotations

import json

GENERATOR = "rise-data view"

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
header { background: #1d2430; color: #fff; padding: 10px 20px; }
header h1 { font-size: 18px; margin: 0; } header .sub { color: #b8c0cc; font-size: 12px; }
section { background: #fff; margin: 14px 20px; padding: 12px 16px; border-radius: 6px; box-shadow: 0 1px 2px #0002; }
h2 { font-size: 16px; margin: 4px 0 10px; } h3 { font-size: 14px; margin: 8px 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #eef1f5; border-radius: 4px; padding: 6px 10px; min-width: 110px; }
.card b { display: block; font-size: 18px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #556; }
canvas { background: #fff; }
canvas.px { image-rendering: pixelated; border: 1px solid #ccd; background: #000; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border-bottom: 1px solid #e3e6ea; padding: 3px 8px; text-align: left; vertical-align: top; }
pre { background: #f0f2f5; padding: 8px; font-size: 12px; max-height: 260px; overflow: auto; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 6px 0; }
.controls { display: flex; gap: 10px; align-items: center; margin: 8px 0; }
#scrub { width: 560px; } button { font-size: 14px; padding: 2px 12px; }
.mono { font-family: ui-monospace, monospace; font-size: 12px; }
"""

JS = r"""
"use strict";
const V = window.RISE_VIEW, errors = [];
window.addEventListener("error", e => { errors.push(String(e.message || e)); report(); });
const $ = id => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; }
function fmt(x, d = 2) { return Number.isInteger(x) ? String(x) : Number(x).toFixed(d); }
const VIRIDIS = [[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37]];
function cmap(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1); const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}
function rgb(c) { return `rgb(${c[0]},${c[1]},${c[2]})`; }

function barChart(canvas, hist, xlabel) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 34, B = 26;
  g.clearRect(0, 0, W, H); g.font = "11px sans-serif"; g.fillStyle = "#1d2430";
  const n = hist.counts.length; if (!n) { g.fillText("no data", L, H / 2); return; }
  const top = Math.max(...hist.counts), bw = (W - L - 6) / n;
  g.fillStyle = "#3b6fb6";
  hist.counts.forEach((c, i) => { const h = (H - B - 8) * c / top; g.fillRect(L + i * bw + 1, H - B - h, Math.max(1, bw - 2), h); });
  g.fillStyle = "#1d2430"; g.fillText(String(top), 2, 14); g.fillText("0", 2, H - B);
  g.fillText(fmt(hist.edges[0], 1), L, H - B + 13);
  const last = fmt(hist.edges[hist.edges.length - 1], 1); g.fillText(last, W - 6 - g.measureText(last).width, H - B + 13);
  g.fillText(xlabel, L + (W - L) / 2 - g.measureText(xlabel).width / 2, H - 3);
}

function endsChart(canvas, ends) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, top = Math.max(1, ends.terminated, ends.truncated);
  g.font = "11px sans-serif";
  [["terminated", ends.terminated, "#c0392b"], ["truncated", ends.truncated, "#e0a800"]].forEach(([name, n, col], i) => {
    const h = (H - 44) * n / top, x = 20 + i * (W - 20) / 2;
    g.fillStyle = col; g.fillRect(x, H - 28 - h, (W - 20) / 2 - 24, h);
    g.fillStyle = "#1d2430"; g.fillText(`${name} ${n}`, x, H - 12);
  });
}

function kv(table, rows) { rows.forEach(([k, v]) => { const tr = el("tr"); tr.append(el("th", k), el("td", v)); table.append(tr); }); }

function overview() {
  $("title").textContent = "rise store: " + V.store; $("sub").textContent = `${V.format}, created ${V.created}, rise ${V.rise_version}`;
  const cards = $("cards");
  [["rows", V.rows], ["episodes", V.episodes], ["steps", V.steps], ["env", V.env.id], ["actions", V.env.n_actions],
   ["return mean", fmt(V.returns.mean)], ["length mean", fmt(V.lengths.mean, 1)], ["terminated", V.ends.terminated], ["truncated", V.ends.truncated]]
    .forEach(([k, v]) => { const c = el("div", k, "card"); c.prepend(el("b", String(v))); cards.append(c); });
  V.missing.forEach(m => $("missing").append(el("div", m, "warn")));
  barChart($("hist-return"), V.returns.hist, "episode return"); barChart($("hist-length"), V.lengths.hist, "episode length (steps)");
  endsChart($("ends"), V.ends);
  $("env").textContent = JSON.stringify(V.env, null, 2);
  const card = $("card"); kv(card, Object.entries(V.card)); if (!Object.keys(V.card).length) kv(card, [["card", "none (rise-data card STORE --id NAME-v0 ...)"]]);
  const t = $("emb-table");
  const head = el("tr"); ["name", "encoder", "weights", "layer", "input", "dim", "dtype", "rows done", "created"].forEach(h => head.append(el("th", h))); t.append(head);
  V.embeddings.forEach(e => {
    const enc = e.encoder || {}, pre = enc.preprocessing || {}, tr = el("tr");
    [e.name, enc.name, enc.weights_id, enc.output_layer, `${pre.source} ${pre.channels} ${pre.resolution || "native"}`, e.dim, e.dtype,
     `${e.rows_done} / ${V.rows}`, e.created].forEach(v => tr.append(el("td", String(v))));
    t.append(tr);
  });
  if (!V.embeddings.length) t.append(el("tr", "no embeddings"));
  const I = V.integrity, integ = $("integrity");
  integ.append(el("p", I.sealed ? `sealed (${I.algorithm}, ${I.time}); this page reads only what it shows and does not verify the hashes: run rise-data check STORE`
                                : "not sealed: rise-data seal STORE records per-array sha256"));
  if (I.sealed) {
    const tb = el("table"), h = el("tr"); ["array", "rows sealed", "rows now", "sha256"].forEach(x => h.append(el("th", x))); tb.append(h);
    Object.entries(I.arrays).forEach(([n, a]) => { const tr = el("tr"); [n, a.rows, a.rows_now, a.sha256.slice(0, 16) + "…"].forEach(x => tr.append(el("td", String(x))));
      if (!a.current) tr.style.background = "#fff4d6"; tb.append(tr); });
    integ.append(tb);
  }
  const sel = $("ep-select");
  V.shown.forEach(r => { const o = el("option", `episode ${r.episode}: ${r.length} steps, return ${fmt(r.return)}, ${r.end}`); o.value = r.episode; sel.append(o); });
  sel.addEventListener("change", () => loadEpisode(Number(sel.value), 0));
}

// -- episodes --------------------------------------------------------------------------------
const loaded = {}, pending = {};
let E = null, step = 0, timer = null;
window.riseEpisode = data => { loaded[data.episode] = data; (pending[data.episode] || []).forEach(f => f(data)); };
function loadEpisode(e, s) {
  const row = V.shown.find(r => r.episode === e);
  if (!row) { errors.push(`episode ${e} is not in this page`); report(); return; }
  $("ep-select").value = e;
  if (loaded[e]) return showEpisode(loaded[e], s);
  (pending[e] = pending[e] || []).push(d => showEpisode(d, s));
  const sc = document.createElement("script"); sc.src = row.file;
  sc.onerror = () => { errors.push(`cannot load ${row.file}`); report(); };
  document.body.append(sc);
}
function showEpisode(d, s) {
  stop(); E = d; E.rgbCache = E.rgbCache || {}; E.grayCache = E.grayCache || {};
  $("ep-summary").textContent = `rows ${d.start}-${d.start + d.length} (${d.length} actions, ${d.length + 1} rows); return ${fmt(d.return)}; ended ${d.end}; env ${d.env_index}; ` +
    (d.frame_steps.length < d.length + 1 ? `the player shows ${d.frame_steps.length} of ${d.length + 1} steps` : "every step shown");
  $("rgb-box").hidden = !d.rgb;
  const sc = $("scrub"); sc.max = d.length; sc.value = s;
  embViews(d); setStep(s); report();
}
// frames decode on first use; a frame still loading draws itself when it arrives (if still current)
function frame(list, cache, k, canvas) {
  let im = cache[k]; if (!im) { im = cache[k] = new Image(); im.src = list[k]; }
  if (im.complete && im.naturalWidth) { draw(canvas, im); return true; }
  im.onload = () => { if (E && E[list === E.rgb ? "rgbCache" : "grayCache"] === cache && nearest(E.frame_steps, step) === k) { draw(canvas, im); drawn(); } };
  return false;
}
function drawn() { const k = nearest(E.frame_steps, step), ok = c => c[k] && c[k].complete && c[k].naturalWidth;
  E.drawn = ok(E.grayCache) && (!E.rgb || ok(E.rgbCache)); report(); }
function nearest(steps, s) { let lo = 0, hi = steps.length - 1; while (lo < hi) { const m = (lo + hi) >> 1; if (steps[m] < s) lo = m + 1; else hi = m; }
  return lo > 0 && Math.abs(steps[lo - 1] - s) <= Math.abs(steps[lo] - s) ? lo - 1 : lo; }
function draw(canvas, img) { canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; canvas.getContext("2d").drawImage(img, 0, 0); }
function setStep(s) {
  if (!E) return; step = Math.max(0, Math.min(E.length, s)); $("scrub").value = step;
  const k = nearest(E.frame_steps, step);
  if (E.rgb) frame(E.rgb, E.rgbCache, k, $("rgb")); frame(E.gray, E.grayCache, k, $("gray")); drawn();
  $("step-label").textContent = `step ${step} / ${E.length} (frame of step ${E.frame_steps[k]}) · action ${E.action[step]} · reward ${fmt(E.reward[step])}` +
    (E.terminated[step] ? " · terminated" : "") + (E.truncated[step] ? " · truncated" : "");
  timeline(); Object.keys(E.embeddings).forEach(n => embCursor(n));
}
function stop() { if (timer) clearInterval(timer); timer = null; $("play").textContent = "play"; }
function play() { if (timer) return stop(); $("play").textContent = "pause";
  timer = setInterval(() => { if (step >= E.length) return stop(); setStep(step + Math.max(1, Math.round(E.length / E.frame_steps.length))); }, 50); }

function timeline() {
  const c = $("timeline"), g = c.getContext("2d"), W = c.width, L = 80, lanes = ["reward", "action", "terminated", "truncated"], lh = 44;
  c.height = lanes.length * lh + 6; g.clearRect(0, 0, W, c.height); g.font = "11px sans-serif";
  const n = E.length + 1, x = i => L + (W - L - 8) * (n > 1 ? i / (n - 1) : 0.5);
  const rmax = Math.max(1e-9, ...E.reward.map(Math.abs)), amax = Math.max(1, (V.env.n_actions || 1) - 1);
  lanes.forEach((lane, j) => {
    const y0 = j * lh + 4, mid = y0 + lh / 2;
    g.fillStyle = "#eef1f5"; g.fillRect(L, y0, W - L - 8, lh - 6); g.fillStyle = "#1d2430"; g.fillText(lane, 4, mid + 4);
    const vals = E[lane];
    if (lane === "reward") { g.fillStyle = "#2a9d4b"; vals.forEach((v, i) => { if (v) { const h = (lh / 2 - 5) * v / rmax; g.fillStyle = v > 0 ? "#2a9d4b" : "#c0392b"; g.fillRect(x(i) - 1, mid - Math.max(h, 0), 2, Math.abs(h)); } });
      g.fillStyle = "#889"; g.fillRect(L, mid, W - L - 8, 1); g.fillText(`±${fmt(rmax)}`, 44, mid + 16); }
    else if (lane === "action") { g.fillStyle = "#3b6fb6"; vals.forEach((v, i) => g.fillRect(x(i) - 1, y0 + lh - 9 - (lh - 14) * v / amax, 2, 3)); g.fillText(`0-${amax}`, 44, mid + 16); }
    else { g.fillStyle = lane === "terminated" ? "#c0392b" : "#e0a800"; vals.forEach((v, i) => { if (v) g.fillRect(x(i) - 2, y0 + 2, 5, lh - 10); }); }
  });
  g.fillStyle = "#000"; g.fillRect(x(step) - 0.5, 0, 1.5, c.height);
  c.onclick = ev => { const r = c.getBoundingClientRect(), px = (ev.clientX - r.left) * c.width / r.width; setStep(Math.round((px - L) / (W - L - 8) * (n - 1))); };
}

function embViews(d) {
  const box = $("emb-views"); box.replaceChildren();
  const names = Object.keys(d.embeddings);
  if (!names.length) box.append(el("div", "no embeddings arrays in this store (rise-data encode STORE --encoder NAME)", "warn"));
  names.forEach(n => {
    const v = d.embeddings[n], sec = el("div"); sec.append(el("h3", `embeddings/${n}`)); box.append(sec);
    if (v.missing) { sec.append(el("div", v.missing, "warn")); return; }
    const row = el("div", null, "row"), f1 = el("figure"), f2 = el("figure");
    const sim = el("canvas"); sim.id = `sim-${n}`; sim.width = sim.height = 300;
    const pr = el("canvas"); pr.id = `proj-${n}`; pr.width = pr.height = 300;
    f1.append(sim, el("figcaption", `cosine similarity of each step to earlier steps (${v.sim_steps.length} of ${d.length + 1} steps)`));
    f2.append(pr, el("figcaption", `2-D PCA of the episode's embeddings, coloured by step (explained ${fmt(100 * v.explained[0], 1)} % + ${fmt(100 * v.explained[1], 1)} %)`));
    row.append(f1, f2); sec.append(row);
    const bytes = Uint8Array.from(atob(v.sim), ch => ch.charCodeAt(0)), m = v.sim_steps.length, img = new ImageData(m, m);
    // the codes span the matrix's own range (quantize in analysis.py), named in the caption
    f1.lastChild.textContent += `; colour: ${fmt(v.sim_range[0], 3)} (purple) to ${fmt(v.sim_range[1], 3)} (yellow)`;
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) { const p = 4 * (i * m + j), c = j <= i ? cmap(bytes[i * m + j] / 255) : [255, 255, 255];
      img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2]; img.data[p + 3] = 255; }
    v.simBitmap = document.createElement("canvas"); v.simBitmap.width = v.simBitmap.height = m; v.simBitmap.getContext("2d").putImageData(img, 0, 0);
    const xs = v.proj.map(p => p[0]), ys = v.proj.map(p => p[1]);
    v.box = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  });
}
function embCursor(n) {
  const v = E.embeddings[n]; if (v.missing) return;
  const sim = $(`sim-${n}`), g = sim.getContext("2d"), m = v.sim_steps.length, k = nearest(v.sim_steps, step);
  g.imageSmoothingEnabled = false; g.drawImage(v.simBitmap, 0, 0, sim.width, sim.height);
  g.strokeStyle = "#e33"; g.lineWidth = 1; g.strokeRect(0, k * sim.height / m, (k + 1) * sim.width / m, sim.height / m);
  const pr = $(`proj-${n}`), h = pr.getContext("2d"), [x0, x1, y0, y1] = v.box, P = 12;
  const px = x => P + (pr.width - 2 * P) * (x - x0) / Math.max(1e-9, x1 - x0), py = y => pr.height - P - (pr.height - 2 * P) * (y - y0) / Math.max(1e-9, y1 - y0);
  h.clearRect(0, 0, pr.width, pr.height); h.strokeStyle = "#0001"; h.beginPath();
  v.proj.forEach((p, i) => i ? h.lineTo(px(p[0]), py(p[1])) : h.moveTo(px(p[0]), py(p[1]))); h.stroke();
  const last = Math.max(1, v.proj.length - 1);
  v.proj.forEach((p, i) => { h.fillStyle = rgb(cmap(i / last)); h.fillRect(px(p[0]) - 1.5, py(p[1]) - 1.5, 3, 3); });
  const c = v.proj[Math.min(step, v.proj.length - 1)]; h.strokeStyle = "#e33"; h.lineWidth = 2; h.beginPath(); h.arc(px(c[0]), py(c[1]), 6, 0, 7); h.stroke();
}

// -- self-test: what the browser test reads ----------------------------------------------------
function canvasSum(c) { const t = document.createElement("canvas"); t.width = c.width; t.height = c.height;
  const g = t.getContext("2d", { willReadFrequently: true }); g.drawImage(c, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0, a = 0;
  for (let i = 0; i < d.length; i += 4) { s += d[i] + d[i + 1] + d[i + 2]; a += d[i + 3]; } return { sum: s, w: c.width, h: c.height, alpha: a }; }
function rect(id) { const r = $(id).getBoundingClientRect(); return [r.left, r.top, r.width, r.height].map(Math.round); }
function report() {
  const q = new URLSearchParams(location.hash.slice(1)); if (!q.has("selftest")) return;
  const out = { errors, done: !!(E && E.drawn) };
  if (E) {
    const sum = a => a.reduce((x, y) => x + y, 0), k = nearest(E.frame_steps, step);
    Object.assign(out, { episode: E.episode, step, frame_step: E.frame_steps[k], reward: E.reward, action: E.action, terminated: E.terminated, truncated: E.truncated,
      reward_sum: sum(E.reward), gray: canvasSum($("gray")), rgb: E.rgb ? canvasSum($("rgb")) : null,
      rects: { rgb: rect("rgb"), gray: rect("gray"), timeline: rect("timeline"), hist: rect("hist-return") },
      embeddings: Object.keys(E.embeddings) });
  }
  $("status").textContent = JSON.stringify(out);
}

overview();
$("scrub").addEventListener("input", ev => { stop(); setStep(Number(ev.target.value)); });
$("play").addEventListener("click", play);
document.addEventListener("keydown", ev => { if (ev.key === "ArrowRight") setStep(step + 1); if (ev.key === "ArrowLeft") setStep(step - 1); });
{ const q = new URLSearchParams(location.hash.slice(1)), e = q.has("episode") ? Number(q.get("episode")) : (V.shown[0] || {}).episode;
  if (e != null) loadEpisode(e, Number(q.get("step") || 0)); else report(); }
"""

BODY = """
<header><h1 id="title"></h1><div class="sub" id="sub"></div></header>
<section id="overview"><h2>Overview</h2><div class="cards" id="cards"></div><div id="missing"></div>
 <div class="row">
  <figure><canvas id="hist-return" width="320" height="150"></canvas><figcaption>episode returns</figcaption></figure>
  <figure><canvas id="hist-length" width="320" height="150"></canvas><figcaption>episode lengths</figcaption></figure>
  <figure><canvas id="ends" width="200" height="150"></canvas><figcaption>how episodes ended</figcaption></figure>
 </div>
 <div class="row"><div><h3>env spec</h3><pre id="env"></pre></div><div><h3>card</h3><table id="card"></table></div></div>
 <h3>embeddings arrays (provenance)</h3><table id="emb-table"></table>
 <h3>integrity</h3><div id="integrity"></div>
</section>
<section id="episode"><h2>Episode <select id="ep-select"></select></h2><div id="ep-summary" class="mono"></div>
 <div class="row">
  <figure id="rgb-box"><canvas id="rgb" class="px" style="height:420px"></canvas><figcaption>RGB frame</figcaption></figure>
  <figure><canvas id="gray" class="px" style="height:252px"></canvas><figcaption>agent view (gray obs)</figcaption></figure>
 </div>
 <div class="controls"><button id="play">play</button><input type="range" id="scrub" min="0" max="0" value="0"><span id="step-label" class="mono"></span></div>
 <canvas id="timeline" width="900" height="180"></canvas>
 <div id="emb-views"></div>
</section>
<pre id="status"></pre>
"""


def script_json(data: dict) -> str:
    """``data`` as JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can end it early)."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def index_html(overview: dict) -> str:
    """The page: the template with the overview embedded."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}"><title>rise view</title>'
        f"<style>{CSS}</style></head><body>{BODY}"
        f"<script>window.RISE_VIEW = {script_json(overview)};</script>\n<script>{JS}</script></body></html>\n"
    )


def episode_script(data: dict) -> str:
    """One episode's file: a script calling ``riseEpisode`` with its data."""
    return f"riseEpisode({script_json(data)});\n"
