"""The run directory page: one self-contained HTML file (inline CSS and JS, the store page's style).

Learning curves (returns of training episodes and evaluations against env steps, every numeric ``train.csv``
column against gradient steps), the eval table, the config and a link to the recorded episode's store
page. Strings from the run go in as text, never HTML. ``#selftest=1`` writes what was drawn into
``<pre id="status">`` (what the browser test reads).
"""

from __future__ import annotations

from rise_data.view.page import CSS, GENERATOR, script_json

JS = r"""
"use strict";
const R = window.RISE_RUN, errors = [], drawn = {};
window.addEventListener("error", e => { errors.push(String(e.message || e)); report(); });
const $ = id => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; }
function fmt(x) { return x == null ? "" : Number.isInteger(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(4); }
const COLORS = ["#3b6fb6", "#c0392b", "#2a9d4b", "#e0a800", "#7b4bb6"];

// series: [{name, x: [], y: [], dots}] on one canvas, finite points only
function lines(canvas, series, xlabel) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 48, B = 28, T = 18;
  g.clearRect(0, 0, W, H); g.font = "11px sans-serif";
  const pts = series.map(s => s.x.map((x, i) => [x, s.y[i]]).filter(p => p[0] != null && p[1] != null));
  const all = pts.flat(); drawn[canvas.id] = all.length;
  if (!all.length) { g.fillStyle = "#556"; g.fillText("nothing logged yet", L, H / 2); return; }
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))], [y0, y1] = [Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; } if (y1 === y0) { y0 -= 1; y1 += 1; }
  const px = x => L + (W - L - 8) * (x - x0) / (x1 - x0), py = y => H - B - (H - B - T) * (y - y0) / (y1 - y0);
  g.fillStyle = "#eef1f5"; g.fillRect(L, T, W - L - 8, H - B - T);
  g.fillStyle = "#1d2430"; g.fillText(fmt(y1), 2, T + 8); g.fillText(fmt(y0), 2, H - B); g.fillText(fmt(x0), L, H - B + 13);
  const xr = fmt(x1); g.fillText(xr, W - 8 - g.measureText(xr).width, H - B + 13); g.fillText(xlabel, L + (W - L) / 2 - 30, H - 3);
  let lx = L;
  series.forEach((s, k) => {
    const c = COLORS[k % COLORS.length]; g.strokeStyle = g.fillStyle = c;
    if (s.dots) pts[k].forEach(p => g.fillRect(px(p[0]) - 1.5, py(p[1]) - 1.5, 3, 3));
    else { if (pts[k].length === 1) g.fillRect(px(pts[k][0][0]) - 2, py(pts[k][0][1]) - 2, 5, 5); g.beginPath(); pts[k].forEach((p, i) => i ? g.lineTo(px(p[0]), py(p[1])) : g.moveTo(px(p[0]), py(p[1]))); g.stroke(); }
    g.fillText(s.name, lx, 12); lx += g.measureText(s.name).width + 14;
  });
}

function chart(box, id, series, xlabel, caption) {
  const f = el("figure"), c = el("canvas"); c.id = id; c.width = 420; c.height = 200;
  f.append(c, el("figcaption", caption)); box.append(f); lines(c, series, xlabel);
}

function main() {
  $("title").textContent = "rise run: " + R.run;
  $("sub").textContent = (R.checkpoint ? "checkpoint.pt present" : "no checkpoint yet (the run has not reached its first one)") +
    ` · train ${R.logs.train.rows} rows · episodes ${R.logs.episodes.rows} · evaluations ${R.logs.eval.rows}`;
  const ep = R.logs.episodes.columns, ev = R.logs.eval.columns, tr = R.logs.train.columns, box = $("curves");
  chart(box, "returns", [{ name: "training episodes", x: ep.env_steps || [], y: ep.return || [], dots: true },
                          { name: "evaluation mean", x: ev.env_steps || [], y: ev.mean || [] }], "env steps", "returns");
  const skip = new Set(["step", "updates", "env_steps", "time", "wall"]);
  Object.keys(tr).filter(k => !skip.has(k) && tr[k].some(v => typeof v === "number")).forEach(k =>
    chart(box, "train-" + k, [{ name: k, x: tr.updates || [], y: tr[k] }], "gradient steps", k));
  const t = $("eval"), cols = Object.keys(ev);
  if (!cols.length) t.append(el("tr", "no evaluations yet (rise-agent train --eval-every N)"));
  else { const h = el("tr"); cols.forEach(c => h.append(el("th", c))); t.append(h);
    (ev[cols[0]] || []).forEach((_, i) => { const r = el("tr"); cols.forEach(c => r.append(el("td", typeof ev[c][i] === "number" ? fmt(ev[c][i]) : String(ev[c][i] ?? "")))); t.append(r); }); }
  $("config").textContent = JSON.stringify(R.config, null, 2);
  const rec = $("recorded");
  if (R.recorded_page) { const a = el("a", `episode ${R.recorded_page.episode} of ${R.recorded} (frames, timelines, embeddings)`); a.href = R.recorded_page.href; rec.append(a); }
  else rec.append(el("div", "no recorded episodes: the run saved none (rise-agent train --save-store STORE records its online episodes)", "warn"));
  report();
}
function report() { if (!new URLSearchParams(location.hash.slice(1)).has("selftest")) return; $("status").textContent = JSON.stringify({ errors, drawn }); }
main();
"""

BODY = """
<header><h1 id="title"></h1><div class="sub" id="sub"></div></header>
<section><h2>Learning curves</h2><div class="row" id="curves"></div></section>
<section><h2>Evaluations</h2><table id="eval"></table></section>
<section><h2>Recorded episode</h2><div id="recorded"></div></section>
<section><h2>Config</h2><pre id="config"></pre></section>
<pre id="status"></pre>
"""


def run_html(data: dict) -> str:
    """The run page with its data embedded."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}"><title>rise run</title>'
        f"<style>{CSS}</style></head><body>{BODY}"
        f"<script>window.RISE_RUN = {script_json(data)};</script>\n<script>{JS}</script></body></html>\n"
    )
