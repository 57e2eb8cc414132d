"""FuzzConfig: defaults, TOML loading, round trips, and one clear UserError per bad input."""

from __future__ import annotations

import json
import textwrap

import pytest

from neurofuzz.fuzzer import config as config_module
from neurofuzz.fuzzer.config import DEFAULT_MUTATORS, Budget, Constraint, FuzzConfig
from neurofuzz.fuzzer.errors import UserError

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
    assert set(cfg.metrics) == {"nc", "tknc", "kmnc", "nbc", "snac"}
    assert cfg.feedback == ["nbc", "snac"]
    assert cfg.scheduler == {"name": "power"}
    assert cfg.oracles == ["misclassified", "nonfinite"]
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
    assert cfg.oracles == ["misclassified", "prediction_changed", "nonfinite"]
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
    ("[budget]\nseconds = -1\n", r"budgets must be >= 0"),
    ("[budget]\niterations = -5\n", r"budgets must be >= 0"),
    ("[budget]\nhours = 1\n", r"bad config.*hours"),
    ("[constraint]\nalpha = 1.5\n", r"alpha, beta and ssim must lie in \[0, 1\]"),
    ("[constraint]\nbeta = -0.1\n", r"alpha, beta and ssim must lie in \[0, 1\]"),
    ("seeds_per_batch = 0\n", r"seeds_per_batch and mutants_per_seed must be >= 1"),
    ("mutants_per_seed = -2\n", r"seeds_per_batch and mutants_per_seed must be >= 1"),
    ("seed = 1\nseed = 2\n", r"not valid TOML"),
    ("[budget\nseconds = 1\n", r"not valid TOML"),
    ("seed = \n", r"not valid TOML"),
]


@pytest.mark.parametrize("text,match", BAD_TOML)
def test_bad_toml_is_a_user_error(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as e:
        FuzzConfig.from_toml(p)
    assert "\n" not in str(e.value).strip() or "TOML" in str(e.value)


def test_invalid_toml_names_the_file(tmp_path):
    p = write(tmp_path, "[budget\n")
    with pytest.raises(UserError) as e:
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
    with pytest.raises(UserError) as e:
        FuzzConfig.from_dict({"seed": 1, "mutatorz": []})
    assert "mutatorz" in str(e.value) and "mutators" in str(e.value)


# ---------------------------------------------------------------------------- bugs found
@pytest.mark.parametrize("text", [
    'seeds_per_batch = "8"\n',
    'scheduler = "power"\n',
    '[budget]\nseconds = "60"\n',
    '[constraint]\nalpha = "0.1"\n',
])
def test_wrong_value_type_is_a_user_error(tmp_path, text):
    with pytest.raises(UserError):
        load(tmp_path, text)


def test_unknown_feedback_metric_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nbcc"):
        load(tmp_path, 'feedback = ["nbcc"]\n')


@pytest.mark.parametrize("text", ["[metrics]\nnc = { thresh = 0.5 }\n", "[metrics]\nkmnc = { k = 0 }\n"])
def test_bad_metric_params_are_rejected_by_validate(tmp_path, text):
    with pytest.raises(UserError):
        load(tmp_path, text)


@pytest.mark.parametrize("text", ["[scheduler]\nname = 'decay'\ngamma = -1\n",
                                  "[scheduler]\nname = 'uniform'\ngamma = 3\n"])
def test_bad_scheduler_params_are_rejected_by_validate(tmp_path, text):
    with pytest.raises(UserError):
        load(tmp_path, text)
