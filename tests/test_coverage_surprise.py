"""LSA / DSA and surprise coverage: hand-computed cases, a plain numpy reference on small data,
bucket edges, batch-order novelty, merge, the fit file and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofuzz.coverage import DSA, LSA, METRICS, SurpriseFit, build_metric
from neurofuzz.ground.errors import UserError


def small_fit(seed: int = 0, n: int = 40) -> SurpriseFit:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 3, generator=g)
    labels = torch.arange(n) % 3
    logits = 3 * torch.nn.functional.one_hot(labels, 3).float() + torch.randn(n, 3, generator=g)
    feats[:, 2] = 0.5  # a constant neuron: LSA must drop it
    return SurpriseFit(acts={"f": feats, "out": logits}, labels=labels, logits_layer="out")


def np_lsa(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """-log of a Gaussian KDE with Scott's bandwidth, written out from its definition."""
    n, d = train.shape
    h = np.cov(train, rowvar=False) * n ** (-2.0 / (d + 4))
    inv, det = np.linalg.inv(h), np.linalg.det(h)
    out = []
    for p in x:
        diff = train - p
        q = np.einsum("ij,jk,ik->i", diff, inv, diff)
        out.append(-np.log(np.mean(np.exp(-0.5 * q)) / np.sqrt((2 * np.pi) ** d * det)))
    return np.array(out)


def np_dsa(train: np.ndarray, labels: np.ndarray, x: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = []
    for p, c in zip(x, pred):
        same = [i for i in range(len(train)) if labels[i] == c]
        ia = min(same, key=lambda i: np.linalg.norm(train[i] - p))
        da = np.linalg.norm(train[ia] - p)
        db = min(np.linalg.norm(train[ia] - train[j]) for j in range(len(train)) if labels[j] != c)
        out.append(da / db)
    return np.array(out)


def test_dsa_hand_computed():
    fit = SurpriseFit(acts={"f": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]),
                            "out": torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])},
                      labels=torch.tensor([0, 1, 1]), logits_layer="out")
    m = DSA(fit=fit, buckets=4, upper=2.0)
    x = {"f": torch.tensor([[0.0, 0.5], [0.0, 2.0]]), "out": torch.tensor([[5.0, 0.0], [0.0, 1.0]])}
    # input 0: class 0, nearest (0,0) at 0.5, then (1,0) at 1 -> 0.5
    # input 1: class 1, nearest (0,3) at 1, then the class-0 point (0,0) at 3 -> 1/3
    assert m.surprise(x).tolist() == pytest.approx([0.5, 1 / 3])
    assert m.measure(x).tolist() == [[1], [0]]  # buckets of width 0.5
    assert m.sa_layers == ["f"] and m.needs_predictions


def test_lsa_and_dsa_match_numpy_reference():
    fit = small_fit()
    g = torch.Generator().manual_seed(5)
    xf = torch.randn(6, 3, generator=g)
    xo = torch.randn(6, 3, generator=g)
    x = {"f": xf, "out": xo}
    lsa = LSA(fit=fit, buckets=10)
    assert lsa.sa_layers == ["f", "out"] and lsa.keep.tolist() == [0, 1, 3, 4, 5]  # neuron 2 dropped
    train = torch.cat([fit.acts["f"], fit.acts["out"]], 1).numpy()[:, lsa.keep]
    test = torch.cat([xf, xo], 1).double().numpy()[:, lsa.keep]
    assert lsa.surprise(x).numpy() == pytest.approx(np_lsa(train, test), rel=1e-6)
    dsa = DSA(fit=fit, buckets=10)
    ref = np_dsa(fit.acts["f"].numpy(), fit.labels.numpy(), xf.double().numpy(), xo.argmax(1).numpy())
    assert dsa.surprise(x).numpy() == pytest.approx(ref, rel=1e-9)


def test_default_bounds_come_from_left_out_training_traces():
    fit = small_fit()
    dsa = DSA(fit=fit)
    feats, labels = fit.acts["f"].numpy(), fit.labels.numpy()
    loo = []
    for i in range(len(feats)):
        keep = np.arange(len(feats)) != i
        same = np.flatnonzero(keep & (labels == labels[i]))
        ia = same[np.argmin(np.linalg.norm(feats[same] - feats[i], axis=1))]
        db = np.linalg.norm(feats[labels != labels[i]] - feats[ia], axis=1).min()
        loo.append(np.linalg.norm(feats[ia] - feats[i]) / db)
    assert dsa.lower == 0.0 and dsa.upper == pytest.approx(2 * max(loo))
    lsa = LSA(fit=fit)
    t = torch.cat([fit.acts["f"], fit.acts["out"]], 1).numpy()[:, lsa.keep]
    # the left-out KDE keeps the full data's bandwidth: compare with scipy's own factor
    from scipy.stats import gaussian_kde
    full = gaussian_kde(t.T)
    loo = []
    for i in range(len(t)):
        diff = np.delete(t, i, 0) - t[i]
        q = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(full.covariance), diff)
        dens = np.mean(np.exp(-0.5 * q)) / np.sqrt(np.linalg.det(2 * np.pi * full.covariance))
        loo.append(-np.log(dens))
    assert lsa.lower == pytest.approx(min(loo), rel=1e-6)
    assert lsa.upper == pytest.approx(min(loo) + 2 * (max(loo) - min(loo)), rel=1e-6)


def test_buckets_edges_novelty_in_batch_order_and_merge():
    fit = small_fit()
    m = DSA(fit=fit, buckets=4, upper=2.0)
    sa = torch.tensor([0.0, 2.0, 0.49, 2.01, -0.1, float("nan"), 0.1])
    m._sa = lambda v: sa  # pin the SA: this test is about the buckets
    cells = m.measure({"f": torch.zeros(7, 3), "out": torch.zeros(7, 3)})
    assert cells[:, 0].tolist() == [0, 3, 0, -1, -1, -1, 0]  # upper in the last bucket; outside: none
    assert m.novelty(cells).tolist() == [1, 1, 0, 0, 0, 0, 0]
    w1, w2 = DSA(fit=fit, buckets=4, upper=2.0), DSA(fit=fit, buckets=4, upper=2.0)
    w1.commit(cells[:1]), w2.commit(cells[1:])
    w1.merge(w2)
    m.commit(cells)
    assert torch.equal(w1.covered, m.covered) and m.value() == 0.5
    with pytest.raises(UserError, match="different definition"):
        m.merge(DSA(fit=fit, buckets=5, upper=2.0))


def test_fit_file_round_trip_registry_and_errors(tmp_path):
    fit = small_fit()
    fit.save(tmp_path / "sa.pt")
    m = build_metric("dsa", layers={"ignored": 1}, fit=str(tmp_path / "sa.pt"), buckets=8)
    x = {"f": torch.randn(3, 3, generator=torch.Generator().manual_seed(1)), "out": torch.eye(3)}
    assert m.surprise(x).tolist() == pytest.approx(DSA(fit=fit, buckets=8).surprise(x).tolist())
    assert {"lsa", "dsa"} <= set(METRICS)
    with pytest.raises(UserError, match="not found"):
        build_metric("lsa", layers={"a": 1}, fit=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        build_metric("lsa", layers={"a": 1}, fit=str(tmp_path / "junk.pt"))
    with pytest.raises(UserError, match="logits_layer"):
        DSA(fit=SurpriseFit(acts={"f": torch.ones(4, 2)}, labels=torch.tensor([0, 1, 0, 1])))
    with pytest.raises(UserError, match="more traces than neurons"):
        LSA(fit=SurpriseFit(acts={"f": torch.eye(3, 4)}, labels=torch.zeros(3, dtype=torch.long)))
    with pytest.raises(UserError, match="lower < upper"):
        DSA(fit=fit, lower=1.0, upper=1.0)


def test_cli_campaign_with_surprise_feedback_and_bad_fit(tmp_path, capsys):
    from neurofuzz.corpus import CampaignStore
    from neurofuzz.fuzzer.cli import main
    from neurofuzz.fuzzer.zoo import builtin_target, load_digits32

    xt, yt = load_digits32("train")
    SurpriseFit.from_data(builtin_target(), xt[:300], yt[:300], layers=["fc2"], logits_layer="fc3").save(tmp_path / "sa.pt")
    x, y = load_digits32("test")
    np.savez(tmp_path / "seeds.npz", x=x[:12].numpy(), y=y[:12].numpy())
    toml = tmp_path / "c.toml"
    toml.write_text(f'feedback = ["dsa", "lsa"]\n[[mutators]]\nname = "gaussian_noise"\n[metrics]\n'
                    f'dsa = {{ fit = "{tmp_path / "sa.pt"}", buckets = 20 }}\nlsa = {{ fit = "{tmp_path / "sa.pt"}" }}\n')
    args = ["fuzz", "--config", str(toml), "--seeds", str(tmp_path / "seeds.npz"), "--iterations", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "camp")]) == 0, capsys.readouterr().err
    with CampaignStore.open(tmp_path / "camp", readonly=True) as s:
        assert len(list(s.entries(kind="queue"))) >= 12  # the seeds, plus whatever surprise kept
    toml.write_text(f'feedback = ["dsa"]\n[metrics]\ndsa = {{ fit = "{tmp_path / "nope.pt"}" }}\n')
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "camp2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurofuzz: error: ") and "not found" in err[0]


def test_merge_refuses_another_fit_and_nan_covers_nothing():
    a, b = DSA(fit=small_fit(0), upper=2.0), DSA(fit=small_fit(1), upper=2.0)
    with pytest.raises(UserError, match="different definition"):
        a.merge(b)
    lsa = LSA(fit=small_fit(0))
    x = {"f": torch.tensor([[float("nan"), 0.0, 0.5]]), "out": torch.zeros(1, 3)}
    assert torch.isnan(lsa.surprise(x)).all() and lsa.measure(x).tolist() == [[-1]]
    assert a.measure({"f": torch.tensor([[float("nan"), 0.0, 0.5]]), "out": torch.zeros(1, 3)}).tolist() == [[-1]]
