"""The campaign report: one self-contained HTML file (images embedded as base64 PNG, no script,
no external file: it opens offline and can be mailed or attached to a ticket).

Sections, in order (each an ``<section id=...>``): ``setup`` (model, bounds, normalisation,
config, versions; one summary line, the rest folded), ``measures`` (fault-revealing measures,
coverage, counters), ``coverage`` (over time), ``failures-over-time``, ``failing-inputs`` (a grid
of failures beside their root seed: label -> prediction, mutation chain, SSIM and Linf to the
seed; triage's ranking, most interesting first), ``mutators`` (mutants / retained / failing /
stored failures / finds per cost),
``confusion`` (true vs predicted class of the failures), ``classes`` (failures per class),
``depth`` (the queue's depth distribution), ``triage`` (groups) and ``minimised`` (failures
shrunk by ``neurofuzz triage --minimise``). A campaign without failures gets every section, with
a line saying there is nothing to show. The markup is well-formed XML (every element closed,
every attribute quoted), which the tests check.

Example::

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from neurofuzz.corpus import MemoryStore
    >>> s = MemoryStore(); _ = s.add(torch.zeros(1, 4, 4), kind="queue", label=0, pred=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = write_report(s, Path(d) / "r.html")
    ...     text = out.read_text(encoding="utf-8")
    >>> text.startswith("<!DOCTYPE html>") and 'id="failing-inputs"' in text and "No failure" in text
    True
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofuzz.corpus.fs import atomic_write_bytes
from neurofuzz.reports import plots
from neurofuzz.reports.data import ReportData, collect

SECTIONS = ("setup", "measures", "coverage", "failures-over-time", "failing-inputs", "mutators", "confusion",
            "classes", "depth", "triage", "minimised")
_HIDDEN_PARAMS = {"seed", "shift"}  # random seeds: noise in a chain's description

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:0 18px 40px;color:#1d2329;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin:18px 0 4px}h2{font-size:1.2em;border-bottom:2px solid #dde3ea;padding-bottom:3px;
margin-top:30px}.sub{color:#5b6670;font-size:.9em}.banner{background:#fff4d6;border:1px solid #e8c872;
padding:6px 10px;border-radius:4px;margin:10px 0}table{border-collapse:collapse;font-size:.88em;margin:6px 0}
td,th{border:1px solid #dde3ea;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f6f9}
td.n{text-align:right;font-variant-numeric:tabular-nums}.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.kpi{flex:1 1 0;border:1px solid #dde3ea;border-radius:6px;padding:8px 10px;min-width:110px}.kpi b{display:block;
font-size:1.5em}.kpi span{color:#5b6670;font-size:.8em}.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{box-sizing:border-box;border:1px solid #dde3ea;border-radius:6px;padding:6px;width:220px;font-size:.78em}
.pair{display:flex;gap:4px}.pair figure{margin:0;text-align:center;color:#5b6670}
.pair img{width:100px;height:100px;image-rendering:pixelated;border:1px solid #ccd;background:#000}
.tri .pair img{width:68px;height:68px}.tile .lp{font-size:1.15em;font-weight:600}.bad{color:#b3261e}
.chain{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;word-break:break-word}
img.plot{max-width:100%;border:1px solid #eef1f4}.none{color:#5b6670;font-style:italic}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.row>section{flex:1 1 520px;min-width:0}
.row>div{flex:0 1 auto;min-width:0}details summary{cursor:pointer;color:#3b4650}h3{font-size:1em;margin:8px 0 2px}
"""


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def num(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def image_png(x: torch.Tensor, bounds: tuple[float, float]) -> bytes:
    """PNG bytes of image ``x`` (``[C, H, W]`` in ``bounds``; 1 or 3 channels, else the first)."""
    import cv2

    a = x.detach().cpu().double().numpy()
    a = np.nan_to_num((a - bounds[0]) / max(bounds[1] - bounds[0], 1e-12), nan=0.0).clip(0, 1)
    a = np.round(a * 255).astype(np.uint8)
    a = a[::-1].transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:  # pragma: no cover - opencv always encodes uint8 images
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def img(png: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def chain_text(chain: list[dict[str, Any]]) -> str:
    """``rotate(angle=-3.2) → jpeg(quality=41)``: each step's mutator and drawn parameters."""
    steps = []
    for s in chain:
        ps = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in (s.get("params") or {}).items() if k not in _HIDDEN_PARAMS)
        steps.append(f"{s.get('mutator', '?')}({ps})")
    return " → ".join(steps) or "(none)"


def table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    cls = ' class="n"'
    body = "".join("<tr>" + "".join(f"<td{cls if i in numeric else ''}>{esc(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def none(text: str) -> str:
    return f'<p class="none">{esc(text)}</p>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def row(*parts: str) -> str:
    """Side by side where the page is wide enough (flex, wrapping)."""
    return '<div class="row">' + "".join(f"<div>{p}</div>" if not p.startswith("<section") else p
                                         for p in parts if p) + "</div>"


# ---------------------------------------------------------------------------- sections
def _setup(d: ReportData) -> str:
    s, cfg = d.setup, d.setup.get("config") or {}
    mut = ", ".join(str(m.get("name", m)) if isinstance(m, dict) else str(m) for m in cfg.get("mutators", []))
    rows = [
        ["model", s.get("model") or ("builtin" if s.get("command") == "demo" else
                                     "not recorded (a campaign made through the Python API)")],
        ["weights", s.get("weights") or "-"], ["model hash", s.get("model_hash", "-")],
        ["input shape / classes", f"{s.get('input_shape', '-')} / {s.get('n_classes', '-')}"],
        ["bounds / mean / std", f"{s.get('bounds', '-')} / {s.get('mean') or 'none'} / {s.get('std') or 'none'}"],
        ["seed / guided / mutator choice", f"{cfg.get('seed', '-')} / {cfg.get('guided', '-')} / "
                                           f"{cfg.get('mutator_choice', '-')}"],
        ["mutators", mut or "-"], ["feedback", ", ".join(map(str, cfg.get("feedback", []))) or "-"],
        ["metrics", json.dumps(cfg.get("metrics", {}))], ["oracles", json.dumps(cfg.get("oracles", []))],
        ["scheduler", json.dumps(cfg.get("scheduler", {}))], ["budget (as created)", json.dumps(cfg.get("budget", {}))],
        ["constraint", json.dumps(cfg.get("constraint", {}))],
        ["batch", f"{cfg.get('seeds_per_batch', '-')} seeds x {cfg.get('mutants_per_seed', '-')} mutants"],
        ["versions", ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items()) or "-"],
        ["command", s.get("command", "-")],
    ]
    budget = ", ".join(f"{k} {v:g}" for k, v in (cfg.get("budget") or {}).items() if v) or "none"
    line = (f"{rows[0][1]} · {s.get('input_shape', '?')} inputs, {s.get('n_classes', '?')} classes · "
            f"{len(cfg.get('mutators', []))} mutators · feedback {rows[7][1]} · "
            f"{'guided' if cfg.get('guided', True) else 'unguided'} · budget {budget}")
    return f"<details><summary>{esc(line)} (click for the whole setup)</summary>{table(['', 'value'], rows)}</details>"


def _kpi(value: Any, label: str) -> str:
    return f'<div class="kpi"><b>{esc(value)}</b><span>{esc(label)}</span></div>'


def _measures(d: ReportData) -> str:
    m, st = d.measures, d.stats
    first = "none" if m.time_to_first_failure is None else f"{m.time_to_first_failure:.1f} s"
    kpis = "".join([
        _kpi(m.failing_pairs, "distinct failing (seed, predicted class)"),
        _kpi(f"{m.failing_seeds} / {m.seeds}", "seeds with a failure"),
        _kpi(m.confusions, "distinct class confusions"), _kpi(first, "time to first failure"),
        _kpi(num(m.ssim_median, ".3f"), "median SSIM to the seed"),
        _kpi(num(m.linf_median, ".3f"), "median Linf to the seed"),
        _kpi(num(m.invalid_share, ".1%") if m.invalid_share is not None else "-", "mutants rejected as invalid"),
    ])
    rows = [["found failures (distinct inputs)", m.failures], ["seeds failing before any mutation", m.seed_failures],
            ["first failure", first if m.time_to_first_failure is None else
             f"{first} (iteration {m.first_failure_iteration})"],
            ["SSIM to seed: mean / median / min", f"{num(m.ssim_mean)} / {num(m.ssim_median)} / {num(m.ssim_min)}"],
            ["Linf to seed: mean / median / max", f"{num(m.linf_mean)} / {num(m.linf_median)} / {num(m.linf_max)}"]]
    if d.has_stats:
        rows += [["run time", f"{st.run_time:.1f} s"], ["iterations / mutants", f"{st.iterations} / {st.mutants}"],
                 ["mutants per second (last run)", f"{st.mutants_per_sec:.0f}"],
                 ["queue / retained", f"{st.queue_size} / {st.retained}"],
                 ["failing mutants counted / stored", f"{st.failing_mutants} / {st.failures_stored}"],
                 ["coverage", "  ".join(f"{k} {v:.4f}" for k, v in st.coverage.items()) or "-"]]
    return f'<div class="kpis">{kpis}</div>' + table(["measure", "value"], rows) + (
        "" if d.has_stats else none("No fuzzer_stats yet: the campaign has not reported."))


def _plot(figs: dict[str, bytes], name: str, alt: str, empty: str) -> str:
    return img(figs[name], alt, "plot") if name in figs else none(empty)


def _mutators(d: ReportData, figs: dict[str, bytes]) -> str:
    stored = {k: len(v) for k, v in d.triage.by_mutator.items()}
    rows = []
    for name, m in sorted(d.stats.per_mutator.items(), key=lambda kv: -_yield(kv[1])):
        rows.append([name, m.mutants, m.retained, m.failures, m.new_pairs, stored.get(name, 0), m.spent,
                     num(_yield(m))])
    if not rows:
        return none("No mutant made yet.")
    return row(table(["mutator", "mutants", "retained", "failing", "new failing pairs", "failures stored",
                      "cost (forward passes)", "finds per 1000 forward passes"], rows, {1, 2, 3, 4, 5, 6, 7}),
               _plot(figs, "mutators", "per-mutator yield", ""))


def _yield(m: Any) -> float:
    """What the adaptive mutator choice counts: (retained + new failing pairs) per 1000 forward-pass
    equivalents spent (neurofuzz.fuzzer.mutator_choice); -1 for a mutator that made no mutant."""
    return 1000.0 * m.finds / m.spent if m.mutants else -1.0


def _tile(t: Any, b: tuple[float, float]) -> str:
    f = t.failure
    return (f'<div class="tile"><div class="pair"><figure>{img(image_png(t.seed, b), f"seed {f.root}")}'
            f'<figcaption>seed {f.root}</figcaption></figure><figure>{img(image_png(t.x, b), f"failure {f.id}")}'
            f'<figcaption>failure {f.id}</figcaption></figure></div>'
            f'<div class="lp">{f.label} → <span class="bad">{f.pred}</span></div>'
            f'<div>SSIM {f.ssim:.3f} · Linf {f.linf:.3f} · {esc(t.oracle)}</div>'
            f'<div>found at {f.time_found:.1f} s, iteration {f.iteration}</div>'
            f'<div class="chain">{esc(chain_text(t.chain))}</div></div>')


def _failing(d: ReportData) -> str:
    if not d.tiles:
        return none("No failure found: no mutant made the model fail an oracle.")
    shown = f"the first {len(d.tiles)} of {len(d.triage.failures)}" if len(d.tiles) < len(d.triage.failures) \
        else f"all {len(d.tiles)}"
    note = (f'<p class="sub">Showing {shown} found failures, most interesting first: one per cluster of '
            "near-duplicates, rarer confusions and smaller changes first.</p>")
    return note + '<div class="grid">' + "".join(_tile(t, d.bounds) for t in d.tiles) + "</div>"


def _confusion(d: ReportData, figs: dict[str, bytes]) -> str:
    if not d.confusion:
        return none("No failure found: nothing was confused.")
    n = max(d.n_classes, 1 + max(max(d.confusion), max(p for r in d.confusion.values() for p in r)))
    if n > 20:
        return _plot(figs, "confusion", "confusion matrix", "")
    head = ["true \\ predicted"] + [str(c) for c in range(n)]
    rows = [[str(t)] + [d.confusion.get(t, {}).get(p, "") for p in range(n)] for t in range(n)]
    return row(_plot(figs, "confusion", "confusion matrix", ""), table(head, rows, set(range(1, n + 1))))


def _classes(d: ReportData, figs: dict[str, bytes]) -> str:
    if not d.by_class:
        return none("No failure found.")
    rows = [[c, k, ", ".join(f"{p}: {v}" for p, v in d.confusion[c].items())] for c, k in d.by_class.items()]
    return row(_plot(figs, "classes", "failures per class", ""),
               table(["true class", "failures", "predicted as"], rows, {1}))


def _depth(d: ReportData, figs: dict[str, bytes]) -> str:
    if not d.depths:
        return none("The queue is empty.")
    return row(_plot(figs, "depth", "queue depth", ""),
               table(["depth", "queue entries"], [[k, v] for k, v in d.depths.items()], {0, 1}))


def _triage(d: ReportData) -> str:
    t = d.triage
    if not t.failures:
        return none("No failure to triage.")
    head = (f"<p>{len(t.failures)} distinct failures in {len(t.clusters)} clusters (near-duplicates of one "
            f"(seed, predicted class) within Linf {t.merge_linf:g} merged), from {len(t.by_root)} seeds, "
            f"{len(t.by_confusion)} confusions, {len(t.by_mutator)} mutators.</p>")

    def top(groups: dict, name, title: str) -> str:
        rows = [[name(k), len(v), ", ".join(map(str, v[:6])) + (" ..." if len(v) > 6 else "")]
                for k, v in sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:12]]
        return f"<h3>{esc(title)}</h3>" + table(["group", "failures", "ids"], rows, {1})

    return head + row(top(t.by_confusion, lambda k: f"{k[0]} → {k[1]}", "by confusion (true → predicted)"),
                      top(t.by_mutator, str, "by mutator (last step of the chain)"),
                      top(t.by_root, lambda k: f"seed {k}", "by root seed"))


def _minimised(d: ReportData) -> str:
    if not d.minimised:
        return none("No failure minimised yet: run `neurofuzz triage CAMP --minimise 8` and rebuild the report.")
    tiles = []
    for r in d.minimised:
        figs = [(r.get("seed"), f"seed {r.get('root')}"), (r.get("original"), f"found {r.get('id')}"),
                (r.get("x"), "minimised")]
        pics = "".join(f"<figure>{img(image_png(x, d.bounds), cap)}<figcaption>{esc(cap)}</figcaption></figure>"
                       for x, cap in figs if x is not None)
        tiles.append(
            f'<div class="tile" style="width:230px"><div class="pair">{pics}</div>'
            f'<div class="lp">{esc(r.get("label"))} → <span class="bad">{esc(r.get("pred"))}</span> '
            f'<span class="sub">({esc(r.get("status"))})</span></div>'
            f'<div>SSIM {num(r.get("original_ssim"), ".3f")} → {num(r.get("ssim"), ".3f")} · '
            f'Linf {num(r.get("original_linf"), ".3f")} → {num(r.get("linf"), ".3f")}</div>'
            f'<div class="chain">was: {esc(chain_text(r.get("original_chain") or []))}</div>'
            f'<div class="chain">now: {esc(chain_text(r.get("chain") or []))}</div></div>')
    return ('<p class="sub">The shortest chain and smallest parameters found that still fail the same way '
            "(stored in minimised/ beside the campaign).</p>" + '<div class="grid tri">' + "".join(tiles) + "</div>")


def render(d: ReportData, figs: dict[str, bytes]) -> str:
    """The report's HTML text for ``d`` and its figures (see :func:`plots.figures`)."""
    when = datetime.datetime.fromtimestamp(d.generated).strftime("%Y-%m-%d %H:%M:%S")
    banner = ""
    if d.status == "running":
        banner = ('<p class="banner">This campaign is running: the report shows it as of '
                  f"{esc(when)}; build it again for newer results.</p>")
    elif d.status.startswith("crashed"):
        banner = (f'<p class="banner">The campaign {esc(d.status)}: resume it with '
                  "neurofuzz fuzz --out DIR --resume.</p>")
    body = [
        section("setup", "Setup", _setup(d)),
        section("measures", "Fault-revealing measures", _measures(d)),
        row(section("coverage", "Coverage over time",
                    _plot(figs, "coverage", "coverage over time", "No progress recorded yet.")),
            section("failures-over-time", "Failures over time",
                    _plot(figs, "failures", "failures over time", "No progress recorded and no failure found."))),
        section("failing-inputs", "Failing inputs", _failing(d)),
        section("mutators", "Per-mutator yield", _mutators(d, figs)),
        section("confusion", "Confusion of failures", _confusion(d, figs)),
        section("classes", "Failures per class", _classes(d, figs)),
        section("depth", "Queue depth", _depth(d, figs)),
        section("triage", "Triage", _triage(d)),
        section("minimised", "Minimised failures", _minimised(d)),
    ]
    title = f"neurofuzz report: {d.path or '(in memory)'}"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"/><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"/><style>{CSS}</style></head><body>'
            f"<h1>neurofuzz campaign report</h1>"
            f'<p class="sub">{esc(d.path or "(in memory)")} · status <b>{esc(d.status)}</b> · '
            f"{d.queue} queue entries, {d.stored_failures} failures stored · generated {esc(when)}</p>"
            f"{banner}{''.join(body)}</body></html>\n")


def write_report(store: Any, out: str | Path, *, png_dir: str | Path | None = None, max_failures: int = 48,
                 merge_linf: float = 0.05) -> Path:
    """Write the HTML report of the campaign in ``store`` to ``out`` (atomically) and, with
    ``png_dir``, its figures as PNG files; returns ``out``."""
    data = collect(store, max_failures=max_failures, merge_linf=merge_linf)
    figs = plots.figures(data)
    out = Path(out)
    atomic_write_bytes(out, render(data, figs).encode("utf-8"), fsync=False)
    if png_dir is not None:
        plots.write_pngs(figs, png_dir)
    return out
