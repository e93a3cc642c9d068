"""search_spaces/sprite_videos.yaml: loads with three profiles and only sequence methods."""

import pytest
import yaml

from pipeline.search.loader import SEARCH_SPACE_DIR, load_search_space
from pipeline.search.types import SearchSpaceError, grid_points, trial_train_config
from tcwae.methods import SEQUENCE_METHODS


def test_sprite_videos_space_loads_with_the_three_profiles():
    space = load_search_space("sprite_videos")
    assert space.dataset == "sprite_videos" and set(space.methods) == set(SEQUENCE_METHODS)
    assert dict(space.rank_by) == {
        "rec": "min",
        "kept_dynamics_acc": "max",
        "kept_static_acc": "max",
    }
    for name in ("smoke", "cpu", "paper"):
        profile = space.profile(name)
        assert profile.budget and profile.train["eval_profile"] == name.replace("cpu", "quick")
        for point in grid_points(profile):
            config = trial_train_config(profile, point)
            assert config.dataset == "sprite_videos" and config.method in SEQUENCE_METHODS
    assert space.profile("smoke").train["steps"] <= 10
    cpu = space.profile("cpu")
    assert cpu.seeds == (0, 1, 2) and len(grid_points(cpu)) == 9
    paper = space.profile("paper").resources
    assert paper.workers * paper.gpus_per_worker == 1


@pytest.mark.parametrize(
    ("dataset", "method", "allowed"),
    [("sprite_videos", "wae_mmd", "rwae_mmd"), ("dsprites", "dsvae", "tcwae_mws")],
)
def test_methods_must_fit_the_data_set(tmp_path, dataset, method, allowed):
    raw = yaml.safe_load((SEARCH_SPACE_DIR / "sprite_videos.yaml").read_text())
    smoke = raw["profiles"]["smoke"]
    del smoke["methods"]
    raw.update(dataset=dataset, methods={method: {"cost": "xent", "params": {}}})
    raw["profiles"] = {"smoke": smoke}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SearchSpaceError, match=f"methods.{method}: unknown method; .*{allowed}"):
        load_search_space(path)


def test_successive_halving_is_refused_for_sequence_models(tmp_path):
    raw = yaml.safe_load((SEARCH_SPACE_DIR / "sprite_videos.yaml").read_text())
    raw["profiles"]["smoke"]["scheduler"] = {"type": "mo-asha", "grace": 2}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SearchSpaceError, match="smoke.scheduler.type: mo-asha on a sequence data"):
        load_search_space(path)
