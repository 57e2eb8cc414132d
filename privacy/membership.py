"""Shadow-model membership inference with MindArmour's four attack models (LR, KNN, RF, MLP),
each chosen by grid search.

Shokri, Stronati, Song and Shmatikov, "Membership Inference Attacks against Machine Learning
Models" (S&P 2017); MindArmour ``MembershipInference`` (one attack classifier on the model's
outputs, method and grid per entry of a config, scikit-learn ``GridSearchCV``).

The attacker trains *shadow* models that imitate the target on data whose membership it knows
(:func:`train_shadows`: each shadow on a random half of the attacker's pool; the other half are
its non-members), turns every (model, example) into features and fits one attack classifier per
method on them. Features of ``(model, x, y)`` (label-aware, as Nasr et al. 2019): the
probability vector sorted in decreasing order (top ``k`` = min(n_classes, 10)), the true-class
probability, the cross-entropy loss and the logit gap ``log p_y - log(1 - p_y)``.
MindArmour's own setting, where the "shadow" is the target itself with a known subset of its
members and non-members, is ``fit([(target, x_in, y_in, x_out, y_out)])``.

Example::

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> with torch.random.fork_rng():
    ...     net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(40, 1, 2, 2, generator=g), torch.randint(0, 3, (40,), generator=g)
    >>> atk = ShadowAttack(methods=("lr",), seed=0).fit([(net, x[:20], y[:20], x[20:], y[20:])])
    >>> sorted(atk.scores(net, x, y)), atk.scores(net, x, y)["lr"].shape
    (['lr'], (40,))
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.privacy._common import (
    TrainFn, check_pair, check_pool, logits_of, losses, random_halves, true_class_logit_gap,
)
from neurofuzz.privacy.metrics import MembershipMetrics, membership_metrics

#: method -> (estimator factory(seed), parameter grid); MindArmour's four methods.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "lr": {"C": [0.1, 1.0, 10.0]},
    "knn": {"n_neighbors": [3, 5, 7]},
    "rf": {"n_estimators": [50], "max_depth": [5, None], "min_samples_leaf": [1, 5]},
    "mlp": {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]},
}
MIN_PER_SIDE = 10


def _estimator(method: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    base = {"lr": lambda: LogisticRegression(max_iter=2000),
            "knn": lambda: KNeighborsClassifier(),
            "rf": lambda: RandomForestClassifier(random_state=seed),
            "mlp": lambda: MLPClassifier(max_iter=500, random_state=seed)}[method]()
    return make_pipeline(StandardScaler(), base)


def features(model: Any, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Attack features ``[n, k + 3]`` of ``model`` on ``(x, y)`` (see the module docstring)."""
    z = logits_of(model, x)
    p = torch.softmax(z, 1)
    k = min(p.shape[1], 10)
    top = p.sort(1, descending=True).values[:, :k]
    py = p.gather(1, y.view(-1, 1))
    return torch.cat([top, py, losses(z, y).view(-1, 1), true_class_logit_gap(z, y).view(-1, 1)], 1).numpy()


def train_shadows(train_fn: TrainFn, x: torch.Tensor, y: torch.Tensor, *, n_shadows: int = 2,
                  seed: int = 0) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Train ``n_shadows`` models with ``train_fn(x, y, seed)``, each on a random half of the pool."""
    x, y = check_pair(x, y, "shadow data")
    check_pool(len(x), k=n_shadows, n_classes=int(y.max()) + 1, minimum=MIN_PER_SIDE, what="shadow models")
    out = []
    for i, m in enumerate(random_halves(len(x), n_shadows, seed)):
        mi = torch.from_numpy(m)
        out.append((train_fn(x[mi], y[mi], seed + 1000 + i), x[mi], y[mi], x[~mi], y[~mi]))
    return out


class ShadowAttack:
    """Attack classifiers (one per method) trained on shadow models' outputs.

    Args:
        methods: subset of ``("lr", "knn", "rf", "mlp")``.
        grids: parameter grids per method (default :data:`GRIDS`); cv folds ``cv``.
        seed: seeds RF and MLP.
    """

    def __init__(self, *, methods: tuple[str, ...] = ("lr", "knn", "rf", "mlp"),
                 grids: dict[str, dict[str, list[Any]]] | None = None, cv: int = 3, seed: int = 0) -> None:
        bad = [m for m in methods if m not in GRIDS]
        if bad or not methods:
            raise UserError(f"attack methods must be among {list(GRIDS)}, got {list(methods)}")
        self.methods, self.grids, self.cv, self.seed = tuple(methods), {**GRIDS, **(grids or {})}, cv, seed
        self.models: dict[str, Any] = {}
        self.best_params: dict[str, dict[str, Any]] = {}

    def fit(self, shadows: list[tuple[Any, Any, Any, Any, Any]]) -> "ShadowAttack":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import GridSearchCV, StratifiedKFold

        feats, labels = [], []
        for model, xi, yi, xo, yo in shadows:
            xi, yi = check_pair(xi, yi, "shadow members")
            xo, yo = check_pair(xo, yo, "shadow non-members")
            if min(len(xi), len(xo)) < MIN_PER_SIDE:
                raise UserError(f"each shadow model needs at least {MIN_PER_SIDE} members and {MIN_PER_SIDE} "
                                f"non-members, got {len(xi)} and {len(xo)}; give the attacker more data")
            feats += [features(model, xi, yi), features(model, xo, yo)]
            labels += [np.ones(len(xi)), np.zeros(len(xo))]
        if not feats:
            raise UserError("the shadow attack needs at least one shadow model")
        f, lab = np.concatenate(feats), np.concatenate(labels)
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.seed)
        for m in self.methods:
            grid = {f"{_estimator(m, self.seed).steps[-1][0]}__{k}": v for k, v in self.grids[m].items()}
            gs = GridSearchCV(_estimator(m, self.seed), grid, scoring="roc_auc", cv=folds, n_jobs=1)
            with warnings.catch_warnings():  # an MLP stopped at max_iter is still a valid attack model
                warnings.simplefilter("ignore", ConvergenceWarning)
                gs.fit(f, lab)
            self.models[m], self.best_params[m] = gs.best_estimator_, gs.best_params_
        return self

    def scores(self, model: Any, x: Any, y: Any) -> dict[str, np.ndarray]:
        """Membership score per method (the attack classifier's probability of 'member')."""
        if not self.models:
            raise UserError("fit the shadow attack before scoring (ShadowAttack(...).fit(shadows))")
        x, y = check_pair(x, y, "examples to attack")
        f = features(model, x, y)
        return {m: est.predict_proba(f)[:, 1] for m, est in self.models.items()}

    def evaluate(self, model: Any, members: tuple[Any, Any],
                 nonmembers: tuple[Any, Any]) -> dict[str, MembershipMetrics]:
        si, so = self.scores(model, *members), self.scores(model, *nonmembers)
        truth = np.r_[np.ones(len(next(iter(si.values())))), np.zeros(len(next(iter(so.values()))))]
        # the attack classifier's own decision (p >= 0.5) is the threshold, as MindArmour's eval
        return {m: membership_metrics(np.r_[si[m], so[m]], truth, threshold=0.5) for m in self.models}
