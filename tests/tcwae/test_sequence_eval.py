"""The judge (trained once, cached), generation with kept codes, judged scores and pictures."""

import functools

import numpy as np
import pytest
import torch
from science_helpers import one_thread

from tcwae import sequence_eval
from tcwae.data import small_sprite_videos
from tcwae.data import sprite_videos as sprite_module
from tcwae.metrics import sequence_judge
from tcwae.metrics.sequence_judge import (
    JUDGE_FORMAT,
    accuracy_on,
    judge_path,
    load_or_train_judge,
    roll_on_torus,
    train_judge,
)
from tcwae.pictures import tile_grid_size
from tcwae.sequence_eval import (
    evaluate_sequence_model,
    generate_from_priors,
    generate_keeping,
    save_generated_sequences,
    save_swap_picture,
    score_and_draw,
)
from tcwae.sequence_nets import SequenceAutoencoder

GRID = (1, 6, 1, 4, 3)  # colour, motion, rotation: 72 sequences, 60 to train on, 12 held out


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@functools.cache
def videos():
    return small_sprite_videos(GRID, split="train")


@functools.cache
def held_out():
    return sprite_module.held_out_part(videos())


@functools.cache
def trained_judge():
    return train_judge(videos(), held_out(), steps=40, seed=0)


@functools.cache
def autoencoder(num_actions: int = 0) -> SequenceAutoencoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SequenceAutoencoder(3, ds=4, dz=3, hidden=16, num_actions=num_actions)


def test_judge_trains_on_the_training_part_and_reports_held_out_accuracy() -> None:
    judge, record = trained_judge()
    assert (record.trained_on, record.held_out, record.steps) == (60, 12, 40)
    assert record.factor_names == ("shape", "colour", "scale", "motion", "rotation")
    shape, colour, scale, motion, rotation = record.factor_accuracy
    assert shape == scale == 1.0  # one value each: the judge cannot get them wrong
    assert (record.accuracy, record.factor_accuracy) == accuracy_on(judge, held_out())
    assert record.accuracy <= min(colour, motion, rotation)
    assert record.scores()["judge_accuracy_shape"] == 1.0
    logits = judge(videos().float_batch(torch.arange(3)))
    assert [head.shape for head in logits] == [(3, size) for size in GRID]


def test_judge_training_rolls_each_sequence_by_one_shift_for_all_its_frames() -> None:
    sequences = videos().float_batch(torch.arange(4))
    rolled = roll_on_torus(sequences, torch.Generator().manual_seed(1))
    for original, moved in zip(sequences, rolled, strict=True):
        shifts = [
            (dy, dx)
            for dy in range(64)
            for dx in range(64)
            if torch.equal(torch.roll(original, (dy, dx), dims=(-2, -1)), moved)
        ]
        assert shifts, "every frame of a sequence moves by the same (dy, dx) on the torus"
    assert not torch.equal(rolled, sequences)


def test_judge_is_trained_once_then_read_from_the_data_root(tmp_path, monkeypatch) -> None:
    calls = []
    original = sequence_judge.train_judge

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(sequence_judge, "train_judge", counting)
    judge, record = load_or_train_judge(videos(), held_out(), tmp_path, steps=2, seed=0)
    path = judge_path(tmp_path, videos(), 2, 0)
    assert path.exists() and path.parent == tmp_path / "judges" and len(calls) == 1
    again, record_again = load_or_train_judge(videos(), held_out(), tmp_path, steps=2, seed=0)
    assert len(calls) == 1 and record_again == record
    for name, value in judge.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value)
    path.write_bytes(b"not a checkpoint")  # a damaged file is retrained and replaced
    load_or_train_judge(videos(), held_out(), tmp_path, steps=2, seed=0)
    assert len(calls) == 2 and torch.load(path, weights_only=True)["format"] == JUDGE_FORMAT
    assert not list(path.parent.glob(".*.tmp"))


def test_the_judges_cache_key_names_its_training_part_and_the_renderer(monkeypatch) -> None:
    # A judge trained on every sequence (before the split) or on another renderer's images is
    # never read back for the training part.
    path = judge_path("root", videos(), 1500, 0)
    assert path.name.startswith("sprite_videos-1x6x1x4x3-train")
    assert judge_path("root", small_sprite_videos(GRID), 1500, 0) != path
    assert judge_path("root", held_out(), 1500, 0) != path
    monkeypatch.setattr(sprite_module, "RENDERER_VERSION", 1)
    assert judge_path("root", videos(), 1500, 0) != path


@pytest.mark.parametrize("num_actions", [0, 2])
def test_generation_keeps_the_chosen_code_and_draws_the_rest(num_actions: int) -> None:
    net = autoencoder(num_actions).eval()
    x = videos().float_batch(torch.arange(3))
    with torch.no_grad():
        codes = net.infer(x)
        kept_static = generate_keeping(net, x, "static", torch.Generator().manual_seed(5))
        generator = torch.Generator().manual_seed(5)
        z = net.sample_dynamics(torch.randn(3, 8, 3, generator=generator))
        if num_actions:
            action = torch.nn.functional.one_hot(
                torch.randint(num_actions, (3,), generator=generator), num_actions
            ).float()
        else:
            action = torch.zeros(3, 0)
        expected = torch.sigmoid(net.decode(codes["s"], z, action))
        torch.testing.assert_close(kept_static, expected)

        kept_dynamics = generate_keeping(net, x, "dynamics", torch.Generator().manual_seed(5))
        s = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
        expected = torch.sigmoid(net.decode(s, codes["z"], codes["action"]))
        torch.testing.assert_close(kept_dynamics, expected)
        prior = generate_from_priors(net, 2, 8, torch.Generator().manual_seed(1))
        assert prior.shape == (2, 8, 3, 64, 64) and 0 <= prior.min() and prior.max() <= 1
    with pytest.raises(ValueError, match="keep must be one of"):
        generate_keeping(net, x, "motion", torch.Generator())


def test_evaluation_returns_both_directions_with_standard_errors_and_is_seeded() -> None:
    judge, _ = trained_judge()
    net = autoencoder().train()
    first = evaluate_sequence_model(net, held_out(), judge, np.random.default_rng(0), 24)
    again = evaluate_sequence_model(net, held_out(), judge, np.random.default_rng(0), 24)
    assert first == again and net.training
    for keep, kept, other in (
        ("static", ("shape", "colour", "scale"), ("motion", "rotation")),
        ("dynamics", ("motion", "rotation"), ("shape", "colour", "scale")),
    ):
        names = ("acc", "is", "h_y", "h_y_given_x", "resampled_acc")
        names += tuple(f"acc_{factor}" for factor in kept)
        names += tuple(f"resampled_acc_{factor}" for factor in other)
        for name in names:
            assert f"kept_{keep}_{name}" in first and f"kept_{keep}_{name}_se" in first
            assert first[f"kept_{keep}_{name}_se"] >= 0.0
        assert 0.0 <= first[f"kept_{keep}_acc"] <= 1.0
        assert first[f"kept_{keep}_is"] >= 1.0 - 1e-9
    assert first["kept_dynamics_acc"] <= first["kept_dynamics_acc_motion"]
    # Shape and scale have one value, so the judge cannot get them wrong.
    assert first["kept_static_acc_shape"] == first["kept_static_acc_scale"] == 1.0
    assert first["kept_dynamics_resampled_acc_shape"] == 1.0
    # 24 generations: 4 for each of the 6 colours, 2 for each of the 12 dynamic classes.
    assert (first["kept_static_per_class"], first["kept_dynamics_per_class"]) == (4.0, 2.0)
    acc = first["kept_static_acc"]
    assert first["kept_static_acc_se"] == pytest.approx(np.sqrt(acc * (1 - acc) / 24))
    assert first["rec"] > 0 and first["eval_sequences"] == 24 and first["eval_held_out"] == 12


def test_generations_are_balanced_over_the_kept_classes() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    rows = sequence_eval.class_balanced_sources(labels, 4, np.random.default_rng(0))
    assert np.bincount(labels[rows]).tolist() == [4, 4, 4]
    assert np.bincount(rows[labels[rows] == 0]).tolist() in ([2, 1, 1], [1, 2, 1], [1, 1, 2])
    assert sequence_eval.generations_per_class(1440, 72) == 20
    assert sequence_eval.generations_per_class(1440, 24) == 60


def test_swap_and_generated_pictures(tmp_path) -> None:
    net = autoencoder(2)
    images = videos().images
    swap = tmp_path / "swap.png"
    save_swap_picture(net, images[:2], images[2:4], swap)
    generated = tmp_path / "generated.png"
    save_generated_sequences(net, images[:2], generated, num_prior=3)
    from matplotlib.image import imread

    assert imread(swap).shape[:2] == tile_grid_size(8, 8, True, True)
    assert imread(generated).shape[:2] == tile_grid_size(2 * 3 + 3, 8, True, True)


def test_score_and_draw_gives_everything_a_run_records(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sequence_eval.JUDGE_STEPS, "smoke", 2)  # the cached judge's steps
    rng = np.random.default_rng(0)
    scores, pictures = score_and_draw(autoencoder(), videos(), tmp_path, "smoke", rng, tmp_path)
    assert judge_path(tmp_path, videos(), 2, 0).exists()
    assert scores["eval_sequences"] == sequence_eval.SEQUENCE_EVAL_SIZES["smoke"]
    assert scores["eval_held_out"] == 12
    assert {
        "judge_accuracy",
        "judge_accuracy_motion",
        "kept_static_acc",
        "kept_dynamics_is",
    } <= set(scores)
    assert [path.name for path in pictures] == ["swap.png", "sequences.png"]
    assert all(path.exists() for path in pictures)
    assert set(sequence_eval.SEQUENCE_SCORES) <= set(scores)


def test_a_model_is_never_judged_on_sequences_it_trained_on(tmp_path) -> None:
    everything = small_sprite_videos(GRID)  # held-out sequences included
    with pytest.raises(ValueError, match="held-out sequences are in the data set"):
        score_and_draw(
            autoencoder(), everything, tmp_path, "smoke", np.random.default_rng(0), tmp_path
        )


def test_every_evaluation_profile_has_sequence_sizes() -> None:
    from tcwae.config import EVAL_PROFILES
    from tcwae.sequence_eval import JUDGE_STEPS, SEQUENCE_EVAL_SIZES

    assert set(SEQUENCE_EVAL_SIZES) == set(JUDGE_STEPS) == set(EVAL_PROFILES)
