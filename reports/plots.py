"""The report's figures, drawn with matplotlib (Agg backend, imported only when a figure is drawn;
without it: one line saying ``pip install 'neurofuzz[report]'``).

Each function takes plain data and returns the PNG bytes of one figure, or ``None`` when there
is nothing to draw. :func:`figures` draws every figure of a
:class:`~neurofuzz.reports.data.ReportData`; :func:`write_pngs` writes them to a folder.

* ``coverage``: each metric's coverage against campaign time (``plot_data``);
* ``failures``: failing mutants counted and stored against time (``plot_data``), and distinct
  failing (root seed, predicted class) pairs against the time they were found (the store);
* ``mutators``: per mutator, mutants made and (retained + failing) / mutants;
* ``confusion``: the confusion of found failures, true class against predicted class;
* ``classes``: found failures per true class; ``depth``: queue entries per chain depth.

Example::

    >>> png = coverage_plot([{"run_time": 0, "cov_nc": 0.5}, {"run_time": 10, "cov_nc": 0.7}])
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from neurofuzz.ground.errors import UserError

DPI = 100


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UserError("the report's plots need matplotlib: pip install 'neurofuzz[report]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()  # fixed margins (set in _figure): tight_layout would draw every figure twice
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def _figure(w: float = 6.0, h: float = 3.2, *, left: float = 0.8, right: float = 0.2, bottom: float = 0.5,
            top: float = 0.35) -> tuple[Any, Any]:
    """A figure of ``w`` x ``h`` inches with margins in inches (labels fit without a layout pass)."""
    fig, ax = _pyplot().subplots(figsize=(w, h))
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h)
    return fig, ax


def coverage_plot(rows: list[dict[str, float]]) -> bytes | None:
    metrics = [k for k in (rows[0] if rows else {}) if k.startswith("cov_")]
    if not rows or not metrics:
        return None
    fig, ax = _figure()
    t = [r.get("run_time", 0.0) for r in rows]
    for m in metrics:
        ax.plot(t, [r.get(m, float("nan")) for r in rows], label=m[4:], lw=1.6)
    ax.set(xlabel="campaign time (s)", ylabel="coverage", ylim=(0, 1.02), title="coverage per metric")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", ncol=len(metrics), fontsize=8)
    return _png(fig)


def failures_plot(rows: list[dict[str, float]], pairs: list[tuple[float, int]]) -> bytes | None:
    if not rows and not pairs:
        return None
    fig, ax = _figure()
    if rows:
        t = [r.get("run_time", 0.0) for r in rows]
        ax.plot(t, [r.get("failures_total", 0) for r in rows], label="failing mutants (counted)", lw=1.6)
        ax.plot(t, [r.get("failures_stored", 0) for r in rows], label="failures stored", lw=1.6)
    if pairs:
        end = max([pairs[-1][0]] + [r.get("run_time", 0.0) for r in rows])
        ax.step([0.0] + [p[0] for p in pairs] + [end], [0] + [p[1] for p in pairs] + [pairs[-1][1]], where="post",
                label="distinct (seed, predicted class)", lw=1.6)
    ax.set(xlabel="campaign time (s)", ylabel="count", title="failures over time")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def mutators_plot(per_mutator: dict[str, tuple[int, int, int]]) -> bytes | None:
    """``per_mutator``: name -> (mutants, retained, failing)."""
    if not per_mutator:
        return None
    names = list(per_mutator)
    fig, ax = _figure(6.0, 0.9 + 0.28 * len(names), left=1.5)
    y = list(range(len(names)))
    rate = [(r + f) / m if m else 0.0 for m, r, f in per_mutator.values()]
    ax.barh(y, rate, color="#4a7ab5")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="yield: (retained + failing) / mutants", title="per-mutator yield")
    for i, (m, _, _) in enumerate(per_mutator.values()):
        ax.text(rate[i], i, f" {m} mutants", va="center", fontsize=7)
    ax.set_xlim(0, max(rate + [1e-9]) * 1.35)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def confusion_plot(confusion: dict[int, dict[int, int]], n_classes: int) -> bytes | None:
    if not confusion or n_classes <= 0:
        return None
    import numpy as np

    n = max(n_classes, 1 + max(max(confusion), max(p for row in confusion.values() for p in row)))
    mat = np.zeros((n, n), dtype=np.int64)
    for t, row in confusion.items():
        for p, c in row.items():
            mat[t, p] = c
    side = min(7.0, 2.2 + 0.35 * n)
    fig, ax = _figure(side + 1.0, side, left=0.6, right=0.1)
    im = ax.imshow(mat, cmap="Reds")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 20:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        for t in range(n):
            for p in range(n):
                if mat[t, p]:
                    ax.text(p, t, str(mat[t, p]), ha="center", va="center", fontsize=7,
                            color="white" if mat[t, p] > mat.max() / 2 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title="confusion of failures")
    return _png(fig)


def classes_plot(by_class: dict[int, int], n_classes: int) -> bytes | None:
    if not by_class:
        return None
    n = max(n_classes, 1 + max(by_class))
    fig, ax = _figure(6.0, 2.8)
    ax.bar(range(n), [by_class.get(c, 0) for c in range(n)], color="#c0504d")
    if n <= 30:
        ax.set_xticks(range(n))
    ax.set(xlabel="true class", ylabel="failures", title="failures per class")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def depth_plot(depths: dict[int, int]) -> bytes | None:
    if not depths:
        return None
    fig, ax = _figure(6.0, 2.8)
    ax.bar(list(depths), list(depths.values()), color="#5b9a68")
    ax.set(xlabel="depth (mutations from the seed)", ylabel="queue entries", title="queue depth distribution")
    ax.set_xticks(list(depths))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def figures(data: Any) -> dict[str, bytes]:
    """Every figure of ``data`` (a :class:`~neurofuzz.reports.data.ReportData`) that has something
    to show: name -> PNG bytes."""
    by_yield = sorted(data.stats.per_mutator.items(),
                      key=lambda kv: -(kv[1].retained + kv[1].failures) / max(kv[1].mutants, 1))
    per_mut = {n: (m.mutants, m.retained, m.failures) for n, m in by_yield}
    out = {
        "coverage": coverage_plot(data.plot),
        "failures": failures_plot(data.plot, data.pairs_curve),
        "mutators": mutators_plot(per_mut),
        "confusion": confusion_plot(data.confusion, data.n_classes),
        "classes": classes_plot(data.by_class, data.n_classes),
        "depth": depth_plot(data.depths),
    }
    return {k: v for k, v in out.items() if v is not None}


def write_pngs(figs: dict[str, bytes], folder: str | Path) -> list[Path]:
    """Write each figure as ``<folder>/<name>.png`` (the folder is created); returns the paths."""
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise UserError(f"--png {d} is a file; give a folder for the PNG files")
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, png in figs.items():
        p = d / f"{name}.png"
        p.write_bytes(png)
        out.append(p)
    return out
