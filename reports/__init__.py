"""neurofuzz.reports: what a user reads after (or during) a campaign.

* :mod:`~neurofuzz.reports.html` — :func:`write_report`: one self-contained HTML file (setup,
  fault-revealing measures, plots, per-mutator yield, a grid of failing inputs beside their seeds,
  confusion matrix, per-class failures, queue depth, triage groups, minimised failures).
* :mod:`~neurofuzz.reports.plots` — the matplotlib figures (Agg backend, imported lazily), as PNG.
* :mod:`~neurofuzz.reports.triage` — :func:`triage`: failures grouped by root seed, confusion and
  mutator, near-duplicates merged.
* :mod:`~neurofuzz.reports.minimise` — :func:`minimise`: the smallest mutation parameters and the
  shortest chain that still fail (the DNN counterpart of afl-tmin), stored beside the campaign.
* :mod:`~neurofuzz.reports.live` — the live progress view (budget bar, ETA, rates, last find).
* :mod:`~neurofuzz.reports.model_coverage` — coverage of any model on any data (``neurofuzz coverage``).

The fault-revealing measures themselves are :mod:`neurofuzz.evaluators.faults_found`.
"""
