"""FuzzConfig: defaults, TOML loading, round trips, and one clear UserError per bad input."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest

from neurofuzz.fuzzer import config as config_module
from neurofuzz.fuzzer.config import DEFAULT_MUTATORS, Budget, Constraint, FuzzConfig
from neurofuzz.ground.errors import UserError

FULL = """
seed = 7
seeds_per_batch = 4
mutants_per_seed = 16
feedback = ["kmnc", "nbc"]
oracles = ["misclassified", "prediction_changed", "nonfinite"]
guided = false
save_all_failures = true
stats_interval = 0.5
fsync_every_write = true
checkpoint_interval = 12.5

[metrics]
nc = { threshold = 0.25, scaled = false }
kmnc = { k = 10 }
nbc = { std_widen = 0.5 }

[scheduler]
name = "decay"
gamma = 5.0
p_min = 0.1
stratify = false

[[mutators]]
name = "gaussian_noise"
std = [0.01, 0.1]

[[mutators]]
name = "rotate"
angle = [-15, 15]
padding = "border"

[[mutators]]
name = "contrast"

[constraint]
alpha = 0.05
beta = 0.3
ssim = 0.5
enabled = false

[budget]
seconds = 60
iterations = 100
mutants = 5000
plateau_seconds = 30.5
"""


def write(tmp_path, text: str, name: str = "campaign.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(tmp_path, text: str) -> FuzzConfig:
    return FuzzConfig.from_toml(write(tmp_path, text))


# ---------------------------------------------------------------------------- valid configs
def test_defaults_validate():
    cfg = FuzzConfig()
    assert cfg.validate() is cfg
    assert cfg.mutators == DEFAULT_MUTATORS and cfg.mutators is not DEFAULT_MUTATORS
    assert cfg.mutators[0] is not DEFAULT_MUTATORS[0]  # instances do not share mutable defaults
    assert set(cfg.metrics) == {"nc", "tknc", "kmnc", "nbc", "snac", "kmnc_fine"}
    assert cfg.metrics["kmnc_fine"] == {"metric": "kmnc", "k": 1000} and cfg.feedback_patience == 25
    assert cfg.feedback == ["nbc", "snac"]
    assert cfg.scheduler == {"name": "power"}
    assert cfg.oracles == [{"name": "misclassified"}, {"name": "nonfinite"}]
    assert cfg.oracle_names() == ["misclassified", "nonfinite"]
    assert cfg.constraint == Constraint() and cfg.budget == Budget()
    assert cfg.budget.unlimited()


def test_default_instances_do_not_share_state():
    a, b = FuzzConfig(), FuzzConfig()
    a.metrics["nc"]["threshold"] = 0.9
    a.mutators.append({"name": "jpeg"})
    assert b.metrics["nc"]["threshold"] == 0.5 and len(b.mutators) == len(DEFAULT_MUTATORS)


def test_full_toml_file(tmp_path):
    cfg = load(tmp_path, FULL)
    assert isinstance(cfg, FuzzConfig)
    assert (cfg.seed, cfg.seeds_per_batch, cfg.mutants_per_seed) == (7, 4, 16)
    assert cfg.feedback == ["kmnc", "nbc"]
    assert cfg.oracles == [{"name": "misclassified"}, {"name": "prediction_changed"}, {"name": "nonfinite"}]
    assert cfg.oracle_names() == ["misclassified", "prediction_changed", "nonfinite"]
    assert cfg.guided is False and cfg.save_all_failures is True and cfg.fsync_every_write is True
    assert cfg.stats_interval == 0.5 and cfg.checkpoint_interval == 12.5
    assert cfg.metrics == {"nc": {"threshold": 0.25, "scaled": False}, "kmnc": {"k": 10}, "nbc": {"std_widen": 0.5}}
    assert cfg.scheduler == {"name": "decay", "gamma": 5.0, "p_min": 0.1, "stratify": False}
    assert cfg.mutators == [
        {"name": "gaussian_noise", "std": [0.01, 0.1]},
        {"name": "rotate", "angle": [-15, 15], "padding": "border"},
        {"name": "contrast"},
    ]
    assert isinstance(cfg.constraint, Constraint) and isinstance(cfg.budget, Budget)
    assert cfg.constraint == Constraint(alpha=0.05, beta=0.3, ssim=0.5, enabled=False)
    assert cfg.budget == Budget(seconds=60, iterations=100, mutants=5000, plateau_seconds=30.5)
    assert not cfg.budget.unlimited()


def test_partial_toml_keeps_defaults(tmp_path):
    cfg = load(tmp_path, """
        seed = 3
        [budget]
        iterations = 5
    """)
    assert cfg.seed == 3 and cfg.budget == Budget(iterations=5)
    assert cfg.constraint == Constraint() and cfg.mutators == DEFAULT_MUTATORS
    assert cfg.scheduler == {"name": "power"}


def test_docstring_example_is_a_valid_config(tmp_path):
    doc = config_module.__doc__
    block = doc.split("``campaign.toml``::", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line)
    cfg = load(tmp_path, "\n".join(lines))
    assert cfg.seed == 7 and cfg.scheduler["name"] == "power"
    assert cfg.metrics == {"nc": {"threshold": 0.5}, "kmnc": {"k": 100}, "nbc": {}}
    assert cfg.feedback == ["nbc"]  # snac is not among the metrics: dropped
    assert cfg.budget == Budget(seconds=60, iterations=0)


def test_feedback_falls_back_to_all_metrics():
    cfg = FuzzConfig(metrics={"nc": {}, "tknc": {"k": 1}}).validate()
    assert cfg.feedback == ["nc", "tknc"]


def test_constructor_accepts_dicts():
    cfg = FuzzConfig(constraint={"alpha": 0.1, "enabled": False}, budget={"seconds": 5, "mutants": 10})
    assert cfg.constraint == Constraint(alpha=0.1, beta=0.2, enabled=False)
    assert cfg.budget == Budget(seconds=5, mutants=10)
    cfg.validate()


def test_constructor_rejects_unknown_dict_keys():
    with pytest.raises(UserError, match="bad config.*alhpa"):
        FuzzConfig(constraint={"alhpa": 0.1})
    with pytest.raises(UserError, match="bad config.*minutes"):
        FuzzConfig(budget={"minutes": 5})


def test_to_dict_from_dict_round_trip(tmp_path):
    cfg = load(tmp_path, FULL)
    d = cfg.to_dict()
    assert d["constraint"] == {"alpha": 0.05, "beta": 0.3, "ssim": 0.5, "enabled": False}
    assert d["budget"]["mutants"] == 5000
    assert FuzzConfig.from_dict(d) == cfg
    # through JSON, as stored in a campaign's fuzzer_setup
    assert FuzzConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert FuzzConfig.from_dict(FuzzConfig().to_dict()) == FuzzConfig().validate()


def test_to_dict_is_a_deep_copy():
    cfg = FuzzConfig()
    d = cfg.to_dict()
    d["metrics"]["nc"]["threshold"] = 0.9
    d["mutators"].clear()
    assert cfg.metrics["nc"]["threshold"] == 0.5 and cfg.mutators


# ---------------------------------------------------------------------------- errors
BAD_TOML = [
    ("seeds = 3\n", r"unknown config key\(s\) \['seeds'\].*seeds_per_batch"),
    ("[[mutators]]\nname = 'blurr'\n", r"unknown mutator 'blurr'.*gaussian_blur"),
    ("[[mutators]]\nname = 'gaussian_noise'\nstd = [0.5, 2.0]\n", r"gaussian_noise\.std.*out of range.*\[0, 1\]"),
    ("[[mutators]]\nname = 'gaussian_noise'\nstd = [0.2, 0.1]\n", r"gaussian_noise\.std.*lo <= hi"),
    ("[[mutators]]\nname = 'gaussian_noise'\nsigma = 0.1\n", r"gaussian_noise: unknown parameter.*sigma.*std"),
    ("[[mutators]]\nstd = 0.1\n", r"needs a name"),
    ("mutators = []\n", r"no mutators"),
    ("[metrics]\nncc = {}\n", r"unknown coverage metric 'ncc'.*kmnc"),
    ("metrics = {}\n", r"no coverage metrics"),
    ("oracles = ['crash']\n", r"unknown oracle 'crash'.*misclassified"),
    ("[scheduler]\nname = 'fifo'\n", r"unknown scheduler 'fifo'.*power"),
    ("[scheduler]\ngamma = 3\n", r"unknown scheduler None"),
    ("[budget]\nseconds = -1\n", r"budget\.seconds must be >= 0 \(seconds; 0 = no limit\), got -1"),
    ("[budget]\niterations = -5\n", r"budget\.iterations must lie in \[0, 2\*\*63-1\] \(0 = no limit\), got -5"),
    ("[budget]\nhours = 1\n", r"bad config: unknown budget key\(s\) \['hours'\]; valid: seconds, iterations"),
    ("[constraint]\nalpha = 1.5\n", r"constraint\.alpha must be in \[0, 1\], got 1\.5"),
    ("[constraint]\nbeta = -0.1\n", r"constraint\.beta must be in \[0, 1\], got -0\.1"),
    ("seeds_per_batch = 0\n", r"seeds_per_batch must lie in \[1, 4096\], got 0"),
    ("mutants_per_seed = -2\n", r"mutants_per_seed must lie in \[1, 65536\], got -2"),
    ("seed = 1\nseed = 2\n", r"not valid TOML"),
    ("[budget\nseconds = 1\n", r"not valid TOML"),
    ("seed = \n", r"not valid TOML"),
]


@pytest.mark.parametrize("text,match", BAD_TOML)
def test_bad_toml_is_a_user_error(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as e:
        FuzzConfig.from_toml(p)
    assert "\n" not in str(e.value)  # one line, whatever went wrong
    assert str(p) in str(e.value)  # and it names the file


def test_invalid_toml_names_the_file(tmp_path):
    p = write(tmp_path, "[budget\n")
    with pytest.raises(UserError, match="not valid TOML") as e:
        FuzzConfig.from_toml(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.toml"
    with pytest.raises(UserError, match=r"config file .*nope\.toml not found"):
        FuzzConfig.from_toml(p)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UserError, match="cannot read config file"):
        FuzzConfig.from_toml(tmp_path)


def test_non_utf8_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_bytes(b"seed = 1\n# \xff\xfe\n")
    with pytest.raises(UserError, match="bad.toml"):
        FuzzConfig.from_toml(p)


def test_from_dict_unknown_key_lists_valid_keys():
    with pytest.raises(UserError, match=r"unknown config key\(s\) \['mutatorz'\]; valid: .*'mutators'"):
        FuzzConfig.from_dict({"seed": 1, "mutatorz": []})


# ---------------------------------------------------------------------------- bugs found
@pytest.mark.parametrize("text, match", [
    ('seeds_per_batch = "8"\n', r"seeds_per_batch must be a whole number, got '8'"),
    ('scheduler = "power"\n', r"scheduler must be a table, e.g. \[scheduler\] name = \"power\", got 'power'"),
    ('[budget]\nseconds = "60"\n', r"budget\.seconds must be a number \(seconds; 0 = no limit\), got '60'"),
    ('[constraint]\nalpha = "0.1"\n', r"constraint\.alpha must be a number, got '0\.1'"),
])
def test_wrong_value_type_is_a_user_error(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load(tmp_path, text)


def test_unknown_feedback_metric_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nbcc"):
        load(tmp_path, 'feedback = ["nbcc"]\n')


@pytest.mark.parametrize("text, match", [("[metrics]\nnc = { thresh = 0.5 }\n", "thresh"),
                                         ("[metrics]\nkmnc = { k = 0 }\n", "k")])
def test_bad_metric_params_are_rejected_by_validate(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load(tmp_path, text)


@pytest.mark.parametrize("text", ["[scheduler]\nname = 'decay'\ngamma = -1\n",
                                  "[scheduler]\nname = 'uniform'\ngamma = 3\n"])
def test_bad_scheduler_params_are_rejected_by_validate(tmp_path, text):
    with pytest.raises(UserError, match="gamma"):
        load(tmp_path, text)


# ---------------------------------------------------------------------------- types, finiteness, limits
@pytest.mark.parametrize("text, match", [
    ('stats_interval = "fast"\n', r"stats_interval must be a number \(seconds\), got 'fast'"),
    ("stats_interval = -1\n", r"stats_interval must be >= 0 \(seconds\), got -1"),
    ("stats_interval = nan\n", r"stats_interval must be a finite number"),
    ("checkpoint_interval = inf\n", r"checkpoint_interval must be a finite number"),
    ('guided = "no"\n', r"guided must be true or false, got 'no'"),
    ("save_all_failures = 1\n", r"save_all_failures must be true or false, got 1"),
    ("fsync_every_write = 0\n", r"fsync_every_write must be true or false, got 0"),
    ("mutator_choice = 3\n", r"mutator_choice must be 'adaptive' or 'uniform', got 3"),
    ("seed = -1\n", r"seed must lie in \[0, 2\*\*63-1\], got -1"),
    ("seed = 1.5\n", r"seed must be a whole number, got 1.5"),
    ("seed = true\n", r"seed must be a whole number, got True"),
    ("mutants_per_seed = 2000000000\n", r"mutants_per_seed must lie in \[1, 65536\], got 2000000000"),
    ("seeds_per_batch = 5000\n", r"seeds_per_batch must lie in \[1, 4096\], got 5000"),
    ("seeds_per_batch = 512\nmutants_per_seed = 512\n", r"512 \* 512 = 262144 mutants per iteration, more than 65536"),
    ("[budget]\nseconds = nan\n", r"budget\.seconds must be a finite number \(seconds; 0 = no limit\), got nan"),
    ("[budget]\nplateau_seconds = inf\n", r"budget\.plateau_seconds must be a finite number"),
    ("[budget]\niterations = 1.5\n", r"budget\.iterations must be a whole number \(0 = no limit\), got 1.5"),
    ("[budget]\nmutants = true\n", r"budget\.mutants must be a whole number"),
    ("[constraint]\nalpha = nan\n", r"constraint\.alpha must be a finite number, got nan"),
    ("[constraint]\nssim = inf\n", r"constraint\.ssim must be a finite number"),
    ('[constraint]\nenabled = "yes"\n', r"constraint\.enabled must be true or false, got 'yes'"),
    ("budget = 3\n", r"budget must be a table"),
    ('constraint = "strict"\n', r"constraint must be a table"),
    ('[[mutators]]\nname = "gaussian_noise"\nstd = [0.01, nan]\n', r"mutators\[0\]\.std\[1\] must be a finite number"),
    ("[metrics]\nnc = { threshold = nan }\n", r"metrics\.nc\.threshold must be a finite number"),
    ("[scheduler]\nname = 'decay'\ngamma = inf\n", r"scheduler\.gamma must be a finite number"),
    ('feedback = "nbc"\n', r'feedback must be a list of metric names, e.g. feedback = \["nbc"\]'),
    ('feedback = ["nc"]\n[metrics]\nkmnc = {}\n', r"feedback metric\(s\) \['nc'\] are not configured under \[metrics\]"),
    ('metrics = "nc"\n', r"metrics must be a table of name = parameters"),
    ('mutators = "rotate"\n', r"mutators must be a list of mutator names or tables"),
    ('oracles = "misclassified"\n', r"oracles must be a list of oracle names or tables"),
    ("oracles = [3]\n", r"each oracles entry needs a name.*entry 0 is 3"),
    ('oracles = ["misclassified", "misclassified"]\n', r"oracle 'misclassified' is listed twice"),
    ('oracles = [{name = "misclassified", level = 3}]\n', r"oracle 'misclassified' does not take parameters level"),
    ('oracles = [{name = "disagreement", reference = "x.pt"}]\n', r"disagreement oracle's reference is not a config value"),
    ('oracles = [{name = "disagreement", margin = 1}]\n', r"oracle 'disagreement' does not take parameters margin"),
    ('oracles = [{name = "misclassified", level = nan}]\n', r"oracles\[0\]\.level must be a finite number"),
])
def test_every_field_is_checked(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as e:
        FuzzConfig.from_toml(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": 2**80}, r"seed must lie in \[0, 2\*\*63-1\], got 1208925819614629174706176"),
    ({"seed": 2**63}, r"seed must lie in \[0, 2\*\*63-1\]"),
    ({"stats_interval": float("nan")}, r"stats_interval must be a finite number"),
    ({"budget": Budget(seconds=1)}, None),
    ({"oracles": [object()]}, r"each oracles entry needs a name"),
    ({"mutators": [{"name": "contrast", "factor": object()}]}, r"mutators\[0\]\.factor must be a number, string"),
])
def test_constructor_checks_python_values(kwargs, match):
    if match is None:
        FuzzConfig(**kwargs)
        return
    with pytest.raises(UserError, match=match):
        FuzzConfig(**kwargs)


def test_edge_values_are_accepted_and_normalised():
    cfg = FuzzConfig(seed=2**63 - 1, seeds_per_batch=256, mutants_per_seed=256, stats_interval=0, checkpoint_interval=1,
                     budget={"seconds": 5, "plateau_seconds": 0}, constraint={"alpha": 0, "beta": 1})
    assert cfg.seed == 2**63 - 1 and cfg.seeds_per_batch * cfg.mutants_per_seed == 65536
    assert isinstance(cfg.stats_interval, float) and isinstance(cfg.budget.seconds, float)
    assert isinstance(cfg.constraint.alpha, float) and cfg.constraint.beta == 1.0
    assert FuzzConfig(seed=np.int64(3)).seed == 3 and type(FuzzConfig(seed=np.int64(3)).seed) is int


@pytest.mark.parametrize("cls, kwargs, match", [
    (Budget, {"seconds": float("nan")}, r"budget\.seconds must be a finite number"),
    (Budget, {"seconds": float("inf")}, r"budget\.seconds must be a finite number"),
    (Budget, {"plateau_seconds": -1.0}, r"budget\.plateau_seconds must be >= 0"),
    (Budget, {"iterations": 2**63}, r"budget\.iterations must lie in \[0, 2\*\*63-1\]"),
    (Constraint, {"beta": float("nan")}, r"constraint\.beta must be a finite number"),
    (Constraint, {"enabled": "no"}, r"constraint\.enabled must be true or false"),
])
def test_budget_and_constraint_check_their_fields(cls, kwargs, match):
    with pytest.raises(UserError, match=match):
        cls(**kwargs)


def test_assignment_is_checked_like_construction():
    cfg = FuzzConfig()
    with pytest.raises(UserError, match=r"budget\.seconds must be a finite number"):
        cfg.budget.seconds = float("nan")
    with pytest.raises(UserError, match=r"seed must lie in"):
        cfg.seed = 2**80
    with pytest.raises(UserError, match="65536"):
        cfg.mutants_per_seed = 10000
    assert cfg == FuzzConfig()  # refused assignments changed nothing
    cfg.oracles = ["prediction_changed"]
    assert cfg.oracles == [{"name": "prediction_changed"}]
    cfg.budget = {"iterations": 3}
    assert cfg.budget == Budget(iterations=3)


def test_dataclasses_replace_checks_the_new_values():
    cfg = FuzzConfig()
    with pytest.raises(UserError, match=r"seed must lie in"):
        dataclasses.replace(cfg, seed=-5)
    new = dataclasses.replace(cfg, oracles=[*cfg.oracles, "disagreement"])
    assert new.oracle_names() == ["misclassified", "nonfinite", "disagreement"]
    assert cfg.oracle_names() == ["misclassified", "nonfinite"]


def test_instances_never_share_budget_or_constraint():
    b = Budget(seconds=5)
    a, c = FuzzConfig(budget=b), FuzzConfig(budget=b)
    a.budget.seconds = 7
    assert c.budget.seconds == 5 and b.seconds == 5


def test_oracles_accept_strings_and_tables(tmp_path):
    cfg = load(tmp_path, 'oracles = ["misclassified", {name = "nonfinite"}, {name = "disagreement"}]\n')
    assert cfg.oracles == [{"name": "misclassified"}, {"name": "nonfinite"}, {"name": "disagreement"}]
    assert cfg.oracle_names() == ["misclassified", "nonfinite", "disagreement"]
    assert FuzzConfig(oracles=[]).oracle_names() == []


def test_validation_runs_once_at_construction(monkeypatch):
    """Building a config checks every mutator once; validate() (kept for old callers) and
    to_dict() check nothing again and change nothing."""
    import neurofuzz.mutators

    calls = []
    real = neurofuzz.mutators.create
    monkeypatch.setattr(neurofuzz.mutators, "create", lambda name, **kw: calls.append(name) or real(name, **kw))
    cfg = FuzzConfig(metrics={"nc": {}, "tknc": {"k": 1}})
    assert len(calls) == len(DEFAULT_MUTATORS)
    before = cfg.to_dict()
    assert cfg.validate() is cfg and cfg.validate() is cfg
    assert cfg.to_dict() == before and len(calls) == len(DEFAULT_MUTATORS)


def test_normalised_values_are_a_fixed_point(tmp_path):
    cfg = load(tmp_path, 'oracles = ["misclassified"]\nfeedback = ["nbc", "snac", "nbc"]\n[budget]\nseconds = 5\n')
    assert cfg.feedback == ["nbc", "snac"] and cfg.budget.seconds == 5.0
    again = FuzzConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.to_dict() == cfg.to_dict()
