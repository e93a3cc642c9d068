import pickle

import optuna
import pytest
import yaml
from sweep_spaces import DSPRITES_YAML, PAPER_METHODS

from pipeline.search.grid import GridDefineByRun, config_id, grid_sampler_space
from pipeline.search.loader import available_search_spaces, load_search_space
from pipeline.search.optuna_search import OptunaDefineByRun, objectives
from pipeline.search.parser import HYPERPARAMETERS
from pipeline.search.successive_halving import SchedulerSpec
from pipeline.search.types import GRID_PARAMETER, SearchSpaceError, grid_points, trial_train_config
from tcwae.config import TrainConfig
from tcwae.methods import REGISTRY

SHIPPED = (
    "dsprites",
    "smallnorb",
    "shapes3d",
    "chairs",
    "celeba",
    "dsprites_table1a",
    "dsprites_methods",
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_dataset_and_table1a_ships_a_search_space():
    assert set(SHIPPED) <= set(available_search_spaces())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_search_space_loads_with_the_three_profiles(name):
    space = load_search_space(name)
    assert space.source == f"search_spaces/{name}.yaml"
    assert {"smoke", "cpu", "paper"} <= set(space.profiles)
    for profile_name in ("smoke", "cpu", "paper"):
        profile = space.profile(profile_name)
        assert profile.budget
        points = grid_points(profile)
        assert points
        for point in points:
            config = trial_train_config(profile, point)
            assert config.dataset == space.dataset
            assert config.method == point["method"]
            assert config.seed == point["seed"]
    smoke = space.profile("smoke")
    assert smoke.train["eval_profile"] == "smoke"
    assert smoke.train["steps"] <= 10
    paper = space.profile("paper")
    assert paper.train["eval_profile"] == "paper"
    assert paper.seeds == (0, 1, 2, 3, 4)
    assert paper.resources.workers * paper.resources.gpus_per_worker == 1
    assert paper.train["steps"] >= 300_000


@pytest.mark.parametrize("name", ["dsprites", "smallnorb", "shapes3d", "dsprites_table1a"])
def test_quantitative_spaces_rank_on_the_papers_four_scores_at_its_budget(name):
    profile = load_search_space(name).profile("paper")
    assert profile.rank_by == (
        ("rec", "min"),
        ("mig", "max"),
        ("factor_vae", "max"),
        ("sap", "max"),
    )
    assert (profile.train["steps"], profile.train["batch_size"]) == (300_000, 256)


@pytest.mark.parametrize("name", ["chairs", "celeba"])
def test_factorless_spaces_rank_on_reconstruction_only(name):
    space = load_search_space(name)
    assert space.rank_by == (("rec", "min"),)
    assert objectives(space.profile("cpu")) == (["rec"], ["min"])


def test_celeba_uses_the_papers_latent_size_and_discriminator_rate():
    config = trial_train_config(
        load_search_space("celeba").profile("paper"),
        {"method": "tcwae_gan", "beta": 10.0, "gamma": 10.0, "seed": 0},
    )
    assert (config.dz, config.disc_lr, config.batch_size) == (20, 1e-5, 64)


def test_dsprites_paper_grids():
    profile = load_search_space("dsprites").profile("paper")
    tcwae_grid = (1.0, 5.0, 10.0, 50.0, 100.0, 150.0)
    for method in ("tcwae_mws", "tcwae_gan"):
        params = profile.methods[method].params
        assert params["beta"].grid == params["gamma"].grid == tcwae_grid
        assert params["beta"].log and params["gamma"].log
        assert len(grid_points(profile, [method])) == 36 * 5
    assert profile.methods["beta_tcvae"].params["beta"].grid == (1, 2, 4, 6, 8, 10)
    assert profile.methods["factor_vae"].params["gamma"].grid == (10, 20, 30, 40, 50, 100)
    assert profile.methods["wae_mmd"].params["lam"].grid == (1, 5, 10, 25, 50, 100, 200)
    assert len(grid_points(profile)) == (36 + 36 + 7 + 6 + 6) * 5


def test_grid_points_are_every_configuration_once_per_seed_seed_major():
    profile = load_search_space("dsprites").profile("paper")
    points = grid_points(profile, ["tcwae_mws", "wae_mmd"])
    assert len(points) == (36 + 7) * 5
    assert len({config_id(p) for p in points}) == len(points)
    assert [p["seed"] for p in points[: 36 + 7]] == [0] * (36 + 7)
    assert points[0] == {"method": "tcwae_mws", "beta": 1.0, "gamma": 1.0, "seed": 0}
    assert {p["method"] for p in points} == {"tcwae_mws", "wae_mmd"}


def test_profile_grid_subsets_keep_the_files_ranges():
    space = load_search_space("dsprites")
    cpu = space.profile("cpu")
    assert list(cpu.methods) == ["tcwae_mws", "tcwae_gan", "wae_mmd", "beta_tcvae", "factor_vae"]
    beta = cpu.methods["tcwae_mws"].params["beta"]
    assert beta.grid == (50,)
    assert (beta.low, beta.high, beta.log) == (1, 150, True)
    assert len(grid_points(cpu)) == 6
    assert cpu.scheduler.type == "mo-asha"
    assert cpu.scheduler.rungs(trial_train_config(cpu, grid_points(cpu)[0]).steps) == (300, 900)
    assert len(grid_points(space.profile("smoke"))) >= 4


def test_table1a_runs_the_papers_chosen_values_with_cross_entropy():
    profile = load_search_space("dsprites_table1a").profile("cpu")
    assert not profile.searched
    assert len(profile.seeds) >= 3
    configs = {p["method"]: trial_train_config(profile, p) for p in grid_points(profile)}
    assert set(configs) == set(PAPER_METHODS)
    values = {method: config.hyperparameters for method, config in configs.items()}
    assert values["wae_mmd"] == {"lam": 200}
    assert values["tcwae_mws"] == {"beta": 50, "gamma": 100}
    assert values["tcwae_gan"] == {"beta": 100, "gamma": 5}
    assert values["beta_tcvae"] == {"beta": 8, "gamma": 1}
    assert values["factor_vae"] == {"gamma": 100}
    assert {c.cost for c in configs.values()} == {"xent"}
    assert len(grid_points(profile)) == 5 * len(profile.seeds)


def test_trial_train_config_layers_profile_method_and_point():
    profile = load_search_space("dsprites").profile("cpu_grid")
    config = trial_train_config(
        profile, {"method": "beta_tcvae", "beta": 6.0, "seed": 3, "beta_tcvae.beta": 6.0}
    )
    assert isinstance(config, TrainConfig)
    assert (config.method, config.seed) == ("beta_tcvae", 3)
    assert config.hyperparameters == {"beta": 6.0, "gamma": 1.0}
    assert (config.steps, config.batch_size, config.eval_profile) == (1000, 64, "quick")
    assert config.estimator == "mws"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"beta": 1.0, "seed": 0}, "no 'method'"),
        ({"method": "factor_vae", "gamma": 10.0, "seed": 0}, "method 'factor_vae' is not in"),
        ({"method": "wae_mmd", "seed": 0}, "missing 'lam'"),
        ({"method": "wae_mmd", "lam": 10.0, "seed": 0, "beta": 2.0}, "unknown key 'beta'"),
        ({"method": "wae_mmd", "lam": -1.0, "seed": 0}, "lam must be >= 0"),
    ],
)
def test_trial_train_config_rejects_params_outside_the_profile(params, message):
    profile = load_search_space("dsprites").profile("cpu_grid")
    with pytest.raises(SearchSpaceError, match=message) as raised:
        trial_train_config(profile, params)
    assert str(raised.value).startswith("search_spaces/dsprites.yaml: profiles.cpu_grid: trial ")


def test_select_restricts_methods_and_names_the_missing_one():
    profile = load_search_space("dsprites").profile("cpu_grid")
    assert list(profile.select(["wae_mmd", "tcwae_mws"]).methods) == ["tcwae_mws", "wae_mmd"]
    assert profile.select(None) is profile
    with pytest.raises(SearchSpaceError, match="method 'factor_vae' is not in this profile"):
        profile.select(["factor_vae"])


def test_bad_profile_name_lists_the_available_ones():
    space = load_search_space("dsprites")
    with pytest.raises(SearchSpaceError) as raised:
        space.profile("laptop")
    assert str(raised.value) == (
        "search_spaces/dsprites.yaml: profiles: no profile 'laptop'; available: smoke, cpu, "
        "cpu_grid, paper, study, factorqvae"
    )


def test_unknown_search_space_name_lists_the_shipped_ones():
    with pytest.raises(
        SearchSpaceError, match=r"no search space named 'mnist'; available: .*dsprites"
    ):
        load_search_space("mnist")


def test_optuna_define_by_run_samples_a_conditional_space_in_a_real_study():
    profile = load_search_space("dsprites").profile("paper")
    define = OptunaDefineByRun.from_profile(profile)
    metrics, modes = objectives(profile)
    study = optuna.create_study(
        directions=["minimize" if m == "min" else "maximize" for m in modes],
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    )
    seen_methods = set()
    for number in range(25):
        trial = study.ask()
        point = define(trial)
        method = point["method"]
        seen_methods.add(method)
        spec = profile.methods[method]
        assert set(point) == {"method", "seed", *spec.params}
        assert point["seed"] in profile.seeds
        for name, param in spec.params.items():
            assert param.low <= point[name] <= param.high
            distribution = trial.distributions[f"{method}.{name}"]
            assert distribution.log == param.log
        assert set(trial.params) == {"method", "seed", *(f"{method}.{n}" for n in spec.params)}
        ray_config = {**trial.params, **point}  # what Ray's OptunaSearch hands the trainable
        config = trial_train_config(profile, ray_config)
        assert config.method == method
        study.tell(trial, [float(number), 0.1, 0.5, 0.01][: len(metrics)])
    assert len(seen_methods) >= 3


def test_optuna_define_by_run_restricted_to_methods():
    profile = load_search_space("dsprites").profile("cpu_grid")
    define = OptunaDefineByRun.from_profile(profile, ["wae_mmd"])
    study = optuna.create_study()
    for _ in range(5):
        point = define(study.ask())
        assert point["method"] == "wae_mmd"
        assert 1 <= point["lam"] <= 200


def test_grid_sampler_enumerates_every_point_exactly_once():
    profile = load_search_space("dsprites").profile("cpu_grid")
    points = grid_points(profile)
    space = grid_sampler_space(points)
    assert list(space) == [GRID_PARAMETER]
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space, seed=0))
    define = GridDefineByRun(tuple(points))
    drawn = []
    for number in range(len(points)):
        trial = study.ask()
        drawn.append(define(trial))
        trial_train_config(profile, {**trial.params, **drawn[-1]})
        if number < len(points) - 1:
            study.tell(trial, 1.0)
    # GridSampler stops the study once the grid is done, which ask-and-tell reports as an error
    # (Ray's OptunaSearch logs it as a warning); the trial is recorded all the same.
    with pytest.raises(RuntimeError, match="Study.stop"):
        study.tell(trial, 1.0)
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == len(points)
    assert sorted(map(config_id, drawn)) == sorted(map(config_id, points))


def test_ray_optuna_search_runs_grid_mode_and_survives_a_pickle_round_trip(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    profile = load_search_space("dsprites").profile("smoke")
    points = grid_points(profile)
    metrics, modes = objectives(profile)
    searcher = OptunaSearch(
        space=GridDefineByRun(tuple(points)),
        metric=metrics,
        mode=modes,
        sampler=optuna.samplers.GridSampler(grid_sampler_space(points), seed=0),
    )
    first = searcher.suggest("trial_0")
    checkpoint = tmp_path / "searcher.pkl"
    searcher.save(str(checkpoint))
    restored = OptunaSearch(metric=metrics, mode=modes)
    restored.restore(str(checkpoint))
    configs = [first] + [restored.suggest(f"trial_{i}") for i in range(1, len(points))]
    for index in range(len(configs)):
        restored.on_trial_complete(
            f"trial_{index}", {"rec": 1.0, "mig": 0.1, "factor_vae": 0.5, "sap": 0.01}
        )
    assert sorted(c[GRID_PARAMETER] for c in configs) == sorted(map(config_id, points))
    for config in configs:
        assert trial_train_config(profile, config).steps == profile.train["steps"]


def test_define_by_run_spaces_pickle():
    profile = load_search_space("dsprites").profile("cpu_grid")
    for space in (
        OptunaDefineByRun.from_profile(profile),
        GridDefineByRun(tuple(grid_points(profile))),
    ):
        assert pickle.loads(pickle.dumps(space)) == space


def test_profile_to_dict_is_plain_data_for_mlflow():
    profile = load_search_space("dsprites").profile("cpu_grid")
    data = profile.to_dict()
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert data["methods"]["tcwae_mws"]["params"]["beta"]["grid"] == [1, 10, 50]
    assert data["resources"] == {"workers": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}


def test_scheduler_block_with_defaults_and_rungs_below_the_budget(tmp_path):
    raw = yaml.safe_load(DSPRITES_YAML.read_text())
    raw["profiles"]["cpu_grid"]["scheduler"] = {"type": "mo-asha", "grace": 100}
    raw["profiles"]["smoke"]["scheduler"] = {"type": "fifo"}
    raw["profiles"]["paper"]["scheduler"] = {
        "type": "mo-asha",
        "grace": 10000,
        "eta": 2,
        "rank_by": {"rec": "min", "mig": "max"},
        "selection": "pareto",
        "tie_break": "crowding",
        "rung_profile": "quick",
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    space = load_search_space(path)
    cpu = space.profile("cpu_grid").scheduler
    assert cpu == SchedulerSpec("mo-asha", 100, 3, space.rank_by, "pareto", "mean_rank", "rung")
    assert cpu.rungs(space.profile("cpu_grid").train["steps"]) == (100, 300, 900)
    assert space.profile("smoke").scheduler == SchedulerSpec("fifo")
    paper = space.profile("paper").scheduler
    assert (paper.eta, paper.rank_by, paper.tie_break) == (
        2,
        (("rec", "min"), ("mig", "max")),
        "crowding",
    )
    assert paper.rungs(300_000) == (10_000, 20_000, 40_000, 80_000, 160_000)
    data = space.profile("paper").to_dict()
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert data["scheduler"]["rank_by"] == {"rec": "min", "mig": "max"}
    assert load_search_space("dsprites").profile("cpu_grid").scheduler is None


def test_method_hyperparameters_cover_every_method():
    # one vocabulary: the registry's declarations; a method searches only what it reads
    assert set(HYPERPARAMETERS) == {p.name for m in REGISTRY.values() for p in m.hyperparameters}
