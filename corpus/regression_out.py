"""Gates and outputs of a :class:`~neurofuzz.corpus.regression.RegressionReport`: the text report,
the JSON document and JUnit XML for CI systems, and the gate that decides the exit status.

A :class:`Gate` holds when every condition given holds: ``fail_on="new-regressions"`` (no input
correct before and wrong now), ``fail_on="failures"`` (no input wrong now), ``max_new`` (at most
that many new regressions), ``min_accuracy`` (the new model's accuracy on the replayed inputs).
JUnit XML has one test case per input, named by id; a new regression is a ``<failure>`` whose
message carries the lineage, the other categories pass (still-failing inputs are known failures,
marked by a ``category`` property, like xfail).

Example::

    >>> from neurofuzz.corpus.regression import InputResult, RegressionReport
    >>> r = RegressionReport([InputResult(7, "queue", None, 1, 3, 3, [{"mutator": "rotate", "params": {"angle": 2.0}}],
    ...                                   before=1, after=4, conf_before=None, conf_after=0.1)])
    >>> Gate(fail_on="new-regressions").problems(r)
    ['1 new regression(s) (the gate allows 0): ids 7']
    >>> Gate(max_new=1).holds(r), Gate(min_accuracy=0.5).holds(r)
    (True, False)
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from neurofuzz.corpus.regression import CATEGORIES, RegressionReport
from neurofuzz.ground.errors import UserError

FAIL_ON = ("new-regressions", "failures", "none")


@dataclass(frozen=True)
class Gate:
    """What a replay must satisfy (see the module docstring); the default gate always holds."""

    fail_on: str = "none"
    max_new: int | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.fail_on not in FAIL_ON:
            raise UserError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")
        if self.max_new is not None and (isinstance(self.max_new, bool) or self.max_new < 0):
            raise UserError(f"--max-new must be a whole number >= 0, got {self.max_new}")
        if self.min_accuracy is not None and not (0.0 <= self.min_accuracy <= 1.0):
            raise UserError(f"--min-accuracy must lie in [0, 1], got {self.min_accuracy}")

    def problems(self, report: RegressionReport) -> list[str]:
        """One line per broken condition (empty: the gate holds)."""
        out = []
        new = report.ids("new_regression")
        allowed = self.max_new if self.max_new is not None else (0 if self.fail_on == "new-regressions" else None)
        if allowed is not None and len(new) > allowed:
            out.append(f"{len(new)} new regression(s) (the gate allows {allowed}): ids {_ids(new)}")
        if self.fail_on == "failures":
            wrong = [r.id for r in report.results if r.after != r.label]
            if wrong:
                out.append(f"{len(wrong)} input(s) misclassified now: ids {_ids(wrong)}")
        if self.min_accuracy is not None:
            acc = report.accuracy
            if not (acc >= self.min_accuracy):  # NaN (nothing replayed) fails too
                out.append(f"accuracy {acc:.4f} on {report.n} {report.which} input(s) is below {self.min_accuracy:g}")
        return out

    def holds(self, report: RegressionReport) -> bool:
        return not self.problems(report)


def _ids(ids: list[int], k: int = 20) -> str:
    return ", ".join(map(str, ids[:k])) + (f" ... ({len(ids) - k} more)" if len(ids) > k else "")


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4f}"


def format_text(report: RegressionReport, *, top: int = 10, gate: Gate | None = None) -> str:
    """The human-readable report: categories, groups, the new regressions with their lineage,
    the largest confidence drops, and the gate's verdict."""
    c = report.counts
    lines = [f"replayed {report.n} inputs ({report.which}) against {report.baseline}: accuracy "
             f"{_pct(report.accuracy_before)} -> {_pct(report.accuracy)}",
             "  " + ", ".join(f"{k.replace('_', ' ')} {c[k]}" for k in CATEGORIES) + f"; prediction changed {c['changed']}",
             *(f"  note: {n}" for n in report.notes)]
    for by in ("kind", "oracle", "mutator", "class"):
        lines.append(f"by {by}:")
        for name, g in report.groups(by).items():
            lines.append(f"  {name:<22} n={g['n']:<5} " + " ".join(f"{k}={g[k]}" for k in CATEGORIES)
                         + f" changed={g['changed']}")
    new = [r for r in report.results if r.category == "new_regression"]
    lines.append(f"new regressions: {len(new)}" + (" (id: before -> after, p(label); lineage)" if new else ""))
    for r in new[:max(top, 0) * 5]:
        conf = f"{r.conf_before:.3f} -> {r.conf_after:.3f}" if r.conf_before is not None else f"now {r.conf_after:.3f}"
        lines.append(f"  {r.id}: {r.before} -> {r.after}, p {conf}; {r.lineage()}")
    if len(new) > top * 5:
        lines.append(f"  ... {len(new) - top * 5} more (see --json)")
    drops = report.largest_drops(top)
    if drops:
        lines.append(f"largest confidence drops (top {len(drops)}):")
        lines.extend(f"  {r.id}: p(label {r.label}) {r.conf_before:.3f} -> {r.conf_after:.3f} ({r.category})"
                     for r in drops)
    elif report.results and report.results[0].conf_before is None:
        lines.append("confidence deltas: need a baseline model (--baseline); the store keeps classes only")
    if gate is not None:
        probs = gate.problems(report)
        lines.append("gate: " + ("holds" if not probs else "FAILS: " + "; ".join(probs)))
    return "\n".join(lines)


def to_dict(report: RegressionReport, *, gate: Gate | None = None, top: int = 10) -> dict[str, Any]:
    """The JSON document: counts, groups, every input's result, the largest drops, the gate."""
    d: dict[str, Any] = {"baseline": report.baseline, "which": report.which, "n": report.n,
                         "accuracy_before": _nan_none(report.accuracy_before), "accuracy": _nan_none(report.accuracy),
                         "counts": report.counts, "notes": list(report.notes),
                         **{f"{c}_ids": report.ids(c) for c in CATEGORIES},
                         "groups": {by: report.groups(by) for by in ("kind", "oracle", "mutator", "class")},
                         "largest_drops": [r.id for r in report.largest_drops(top)],
                         "inputs": [r.to_dict() for r in report.results]}
    d["new_regression_lineage"] = {str(r.id): r.lineage() for r in report.results if r.category == "new_regression"}
    if gate is not None:
        probs = gate.problems(report)
        d["gate"] = {"holds": not probs, "problems": probs, "fail_on": gate.fail_on, "max_new": gate.max_new,
                     "min_accuracy": gate.min_accuracy}
    return d


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def to_json(report: RegressionReport, *, gate: Gate | None = None) -> str:
    return json.dumps(to_dict(report, gate=gate), indent=2)


def junit_xml(report: RegressionReport, *, suite: str = "neurofuzz.replay") -> str:
    """JUnit XML: one ``<testcase>`` per input; new regressions are ``<failure>`` elements."""
    new = report.ids("new_regression")
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(report.n), failures=str(len(new)), errors="0",
                       skipped="0")
    for r in report.results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.kind}", name=f"entry_{r.id}")
        props = ET.SubElement(tc, "properties")
        for k, v in (("category", r.category), ("label", r.label), ("before", r.before), ("after", r.after),
                     ("oracle", r.oracle or "-"), ("mutator", r.mutator)):
            ET.SubElement(props, "property", name=k, value=str(v))
        if r.category == "new_regression":
            f = ET.SubElement(tc, "failure", message=f"entry {r.id}: new regression, class {r.before} -> {r.after} "
                                                     f"(label {r.label})", type="NewRegression")
            f.text = r.lineage()
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
