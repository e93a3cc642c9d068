"""Search-space files that cannot be used: each is one line naming the file, the key and what
is wrong (`SearchSpaceError`), raised before anything starts."""

import pytest
import yaml
from sweep_spaces import DSPRITES_YAML, PAPER_METHODS

from pipeline.search.loader import load_search_space
from pipeline.search.types import SearchSpaceError
from tcwae.methods import methods_for


def _setter(key_path, value):
    """An edit that sets (or, with value None, deletes) the entry at a dotted key path."""

    def edit(raw):
        *parents, last = key_path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return edit


def _drop_factor_vae_but_keep_it_in_a_profile(raw):
    del raw["methods"]["factor_vae"]
    raw["profiles"]["cpu_grid"]["methods"]["factor_vae"] = {"gamma": [10]}


BAD_CASES = [
    ("unknown top-level key", _setter("seeds_file", 3), "seeds_file: unknown key; expected one of"),
    (
        "unknown method key",
        _setter("methods.tcwae_mws.parms", {}),
        "methods.tcwae_mws.parms: unknown key; expected one of cost, params, fixed",
    ),
    (
        "unknown profile key",
        _setter("profiles.cpu_grid.gpus", 1),
        "profiles.cpu_grid.gpus: unknown key",
    ),
    (
        "unknown range key",
        _setter("methods.tcwae_mws.params.beta.range.step", 2),
        "methods.tcwae_mws.params.beta.range.step: unknown key; expected one of low, high, log",
    ),
    (
        "unknown resource key",
        _setter("profiles.cpu_grid.resources.tpus", 1),
        "profiles.cpu_grid.resources.tpus: unknown key",
    ),
    ("missing methods", _setter("methods", None), "methods: missing"),
    ("empty methods", _setter("methods", {}), "methods: empty"),
    (
        "unknown method",
        _setter("methods.vae", {"cost": "xent", "params": {}}),
        "methods.vae: unknown method; expected one of tcwae_mws",
    ),
    (
        "empty grid",
        _setter("methods.tcwae_gan.params.gamma.grid", []),
        "methods.tcwae_gan.params.gamma.grid: empty",
    ),
    (
        "range low > high",
        _setter("methods.tcwae_mws.params.beta.range", {"low": 200, "high": 150, "log": True}),
        "methods.tcwae_mws.params.beta.range: low 200 > high 150",
    ),
    (
        "grid value outside range",
        _setter("methods.wae_mmd.params.lam.grid", [1, 500]),
        "methods.wae_mmd.params.lam.grid[1]: 500 is outside the range [1, 200]",
    ),
    (
        "log with low 0",
        _setter("methods.factor_vae.params.gamma.range", {"low": 0, "high": 100, "log": True}),
        "methods.factor_vae.params.gamma.range: log: true needs low > 0",
    ),
    (
        "grid value TrainConfig rejects",
        _setter(
            "methods.factor_vae.params.gamma", {"grid": [-5, 10], "range": {"low": -5, "high": 100}}
        ),
        "methods.factor_vae.params.gamma.grid[0]: gamma must be >= 0, got -5.0",
    ),
    (
        "cost TrainConfig rejects",
        _setter("methods.tcwae_mws.cost", "l3"),
        "methods.tcwae_mws: cost='l3' is not one of xent, l1, l2sq",
    ),
    (
        "profile train TrainConfig rejects",
        _setter("profiles.cpu_grid.train.steps", 0),
        "profiles.cpu_grid.train: steps must be >= 1, got 0",
    ),
    (
        "profile train unknown TrainConfig key",
        _setter("profiles.cpu_grid.train.learning_rate", 0.1),
        "profiles.cpu_grid.train.learning_rate: unknown key; TrainConfig keys are",
    ),
    (
        "seed set by a profile's train",
        _setter("profiles.cpu_grid.train.seed", 1),
        "profiles.cpu_grid.train.seed: set by the profile's `seeds`, not here",
    ),
    (
        "parameter the method does not read",
        _setter("methods.wae_mmd.params.beta", {"grid": [1], "range": {"low": 1, "high": 1}}),
        "methods.wae_mmd.params.beta: wae_mmd cannot search 'beta'; it reads lam",
    ),
    (
        "parameter both fixed and searched",
        _setter("methods.beta_tcvae.fixed.beta", 4),
        "methods.beta_tcvae.params.beta: both searched and fixed",
    ),
    (
        "profile names a method the file lacks",
        _drop_factor_vae_but_keep_it_in_a_profile,
        "profiles.cpu.methods.factor_vae: not a method of this file",
    ),
    (
        "profile grid value outside range",
        _setter("profiles.cpu_grid.methods.tcwae_mws.beta", [1, 1000]),
        "profiles.cpu_grid.methods.tcwae_mws.beta[1]: 1000 is outside the range [1, 150]",
    ),
    (
        "empty seeds",
        _setter("profiles.paper.seeds", []),
        "profiles.paper.seeds: must be a non-empty",
    ),
    ("unknown dataset", _setter("dataset", "mnist"), "dataset: 'mnist' is not one of dsprites"),
    ("bad rank mode", _setter("rank_by.mig", "up"), "rank_by.mig: must be min or max, got 'up'"),
    ("unknown score", _setter("rank_by.elbo", "max"), "rank_by.elbo: unknown key"),
    (
        "no num_samples",
        _setter("profiles.smoke.num_samples", None),
        "profiles.smoke.num_samples: missing",
    ),
    *[
        (f"scheduler: {name}", _setter("profiles.cpu_grid.scheduler", block), message)
        for name, block, message in [
            (
                "unknown key",
                {"type": "mo-asha", "grace": 100, "rungs": 3},
                "profiles.cpu_grid.scheduler.rungs: unknown key; expected one of type, grace, eta",
            ),
            (
                "unknown type",
                {"type": "hyperband"},
                "profiles.cpu_grid.scheduler.type: must be one of fifo, mo-asha, got 'hyperband'",
            ),
            ("missing type", {"grace": 100}, "profiles.cpu_grid.scheduler.type: missing"),
            (
                "missing grace",
                {"type": "mo-asha"},
                "profiles.cpu_grid.scheduler.grace: missing (the first rung, in training steps)",
            ),
            (
                "fifo with rungs",
                {"type": "fifo", "grace": 100},
                "profiles.cpu_grid.scheduler.grace: only for type mo-asha",
            ),
            (
                "eta 1",
                {"type": "mo-asha", "grace": 100, "eta": 1},
                "profiles.cpu_grid.scheduler.eta: must be an integer >= 2, got 1",
            ),
            (
                "grace between reports",
                {"type": "mo-asha", "grace": 120},
                "profiles.cpu_grid.scheduler.grace: 120 is not a multiple of report_every (50)",
            ),
            (
                "grace at the budget",
                {"type": "mo-asha", "grace": 1000},
                "profiles.cpu_grid.scheduler.grace: 1000 leaves no rung below the profile's "
                "1000 steps",
            ),
            (
                "slow rung score",
                {"type": "mo-asha", "grace": 100, "rank_by": {"dci_disentanglement": "max"}},
                "profiles.cpu_grid.scheduler.rank_by.dci_disentanglement: not scored at rungs",
            ),
            (
                "bad rung mode",
                {"type": "mo-asha", "grace": 100, "rank_by": {"mig": "up"}},
                "profiles.cpu_grid.scheduler.rank_by.mig: must be min or max, got 'up'",
            ),
            (
                "unknown selection",
                {"type": "mo-asha", "grace": 100, "selection": "random"},
                "profiles.cpu_grid.scheduler.selection: must be one of pareto, mean_rank",
            ),
            (
                "tie break without fronts",
                {
                    "type": "mo-asha",
                    "grace": 100,
                    "selection": "mean_rank",
                    "tie_break": "crowding",
                },
                "profiles.cpu_grid.scheduler.tie_break: only for selection: pareto",
            ),
            (
                "unknown rung profile",
                {"type": "mo-asha", "grace": 100, "rung_profile": "tiny"},
                "profiles.cpu_grid.scheduler.rung_profile: must be one of smoke, rung, quick, "
                "paper",
            ),
            (
                "synchronous not a boolean",
                {"type": "mo-asha", "grace": 500, "synchronous": "yes"},
                "profiles.cpu_grid.scheduler.synchronous: must be true or false, got 'yes'",
            ),
            (
                "synchronous rung without a checkpoint",
                {"type": "mo-asha", "grace": 100, "synchronous": True},
                "profiles.cpu_grid.scheduler.grace: 100 is not a multiple of checkpoint_every "
                "(500): a synchronous rung pauses its trials",
            ),
        ]
    ],
    (
        "scheduler block with the file ranking on a slow score",
        lambda raw: (
            raw["rank_by"].update(dci_disentanglement="max"),
            raw["profiles"]["cpu"].update(scheduler={"type": "mo-asha", "grace": 100}),
        ),
        "profiles.cpu.scheduler: the file's rank_by has 'dci_disentanglement', which rungs do "
        "not score",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [case[1:] for case in BAD_CASES], ids=[case[0] for case in BAD_CASES]
)
def test_each_bad_yaml_case_is_one_clear_line_naming_file_and_key(tmp_path, edit, message):
    raw = yaml.safe_load(DSPRITES_YAML.read_text())
    edit(raw)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(SearchSpaceError) as raised:
        load_search_space(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


def test_the_unedited_copy_loads(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(DSPRITES_YAML.read_text()), sort_keys=False))
    assert load_search_space(path).profile("paper").methods.keys() == set(PAPER_METHODS)
    assert load_search_space(path).methods.keys() == set(methods_for(sequences=False))


def test_the_issues_example_message(tmp_path):
    text = DSPRITES_YAML.read_text().replace(
        "beta: {grid: [1, 5, 10, 50, 100, 150], range: {low: 1, high: 150, log: true}}",
        "beta: {grid: [1, 5, 10, 50, 100, 150], range: {low: 200, high: 150, log: true}}",
        1,
    )
    bad = tmp_path / "dsprites.yaml"
    bad.write_text(text)
    with pytest.raises(SearchSpaceError) as raised:
        load_search_space(bad)
    assert str(raised.value) == f"{bad}: methods.tcwae_mws.params.beta.range: low 200 > high 150"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "must be a mapping of key: value, got a list"),
        ("dataset: [unclosed\n", "not valid YAML"),
        ("dataset: dsprites\ndataset: smallnorb\n", "duplicate key 'dataset'"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError, match=message) as raised:
        load_search_space(path)
    assert "\n" not in str(raised.value)
