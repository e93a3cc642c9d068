import numpy as np
import pytest
import torch
from science_helpers import one_thread, tiny_dsprites

from tcwae.config import ConfigError, TrainConfig
from tcwae.costs import l1_per_image
from tcwae.trainer import NonFiniteLossError, Trainer


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def flatten(state, prefix=""):
    """Every tensor and primitive of a nested state dict, keyed by its path."""
    if isinstance(state, dict):
        items = {}
        for key, value in state.items():
            items.update(flatten(value, f"{prefix}{key}/"))
        return items
    return {prefix: state}


@pytest.mark.parametrize("method", ["tcwae_gan", "beta_tcvae"])
def test_resume_from_checkpoint_continues_exactly(tmp_path, method):
    cfg = TrainConfig(method=method, steps=6, batch_size=4, report_every=2, checkpoint_every=3)
    dataset = tiny_dsprites()

    uninterrupted = Trainer(cfg, dataset)
    reports, checkpoints = {}, []

    def save(step):
        path = tmp_path / f"step{step}.pt"
        uninterrupted.save(path)
        checkpoints.append(path)

    uninterrupted.train(
        on_report=lambda step, losses: reports.update({step: losses}), on_checkpoint=save
    )
    assert [p.name for p in checkpoints] == ["step3.pt", "step6.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step3.pt", "step6.pt"]
    assert set(reports) == {2, 4, 6}

    raw = torch.load(checkpoints[0], weights_only=True)
    assert raw["step"] == 3 and isinstance(raw["generator"], torch.Tensor)

    resumed = Trainer(cfg, dataset)
    resumed.load(checkpoints[0])
    assert resumed.step == 3
    resumed_reports = {}
    final = resumed.train(on_report=lambda step, losses: resumed_reports.update({step: losses}))
    # The report at step 4 averages steps 3 and 4: the half-window saved at step 3 is restored.
    assert resumed_reports == {4: reports[4], 6: reports[6]}
    assert final == reports[6]

    expected, actual = flatten(uninterrupted.state_dict()), flatten(resumed.state_dict())
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, actual[key]), key
        else:
            assert value == actual[key], key


@pytest.mark.parametrize(
    ("corrupt", "term"),
    [
        # log-variance -inf: z = mu is finite, so the reconstruction is fine but the
        # Gaussian log-densities of the TC estimator are not.
        (lambda ae: ae.encoder.features[-1].bias.data[10:].fill_(-float("inf")), "tc"),
        (lambda ae: ae.decoder.upsample[-1].bias.data.fill_(float("nan")), "rec"),
    ],
)
def test_non_finite_loss_stops_with_step_and_term(corrupt, term):
    cfg = TrainConfig(method="tcwae_mws", steps=5, batch_size=4)
    trainer = Trainer(cfg, tiny_dsprites())
    trainer.train_step()
    trainer.train_step()
    corrupt(trainer.autoencoder)
    checkpoints = []
    with pytest.raises(NonFiniteLossError, match=rf"steps 1-5: loss terms .*'{term}' \(nan"):
        trainer.train(on_checkpoint=checkpoints.append)
    assert trainer.step == 5 and checkpoints == []


def test_represent_and_reconstruction_error():
    dataset = tiny_dsprites()
    trainer = Trainer(TrainConfig(method="wae_mmd", cost="l1", steps=2, batch_size=4), dataset)
    trainer.train()
    observations = dataset.images[:600].float().numpy() / 255
    codes = trainer.represent(observations)
    assert codes.shape == (600, 10) and codes.dtype == np.float32
    with torch.no_grad():
        means = trainer.autoencoder.encode(torch.from_numpy(observations))[0]
    np.testing.assert_allclose(codes, means.numpy(), rtol=1e-5, atol=1e-5)

    error = trainer.reconstruction_error(50, np.random.default_rng(0))
    indices = np.random.default_rng(0).choice(len(dataset), size=50, replace=False)
    x = dataset.images[indices].float() / 255
    with torch.no_grad():
        expected = l1_per_image(trainer.autoencoder.decode(trainer.autoencoder.encode(x)[0]), x)
    assert error == pytest.approx(expected.mean().item(), rel=1e-5)


def test_tracking_mig_during_training_leaves_the_run_unchanged():
    cfg = TrainConfig(method="tcwae_mws", steps=4, batch_size=4, report_every=2, seed=5)
    dataset = tiny_dsprites()
    plain, tracked = Trainer(cfg, dataset), Trainer(cfg, dataset)
    curve = []
    plain_losses = plain.train()
    tracked_losses = tracked.train(on_report=lambda step, _: curve.append(tracked.mig_now(64)))
    assert tracked_losses == plain_losses
    assert len(curve) == 2 and all(0.0 <= value <= 1.0 for value in curve)
    # the draw depends on (seed, step) only, so the same model gives the same value again
    assert tracked.mig_now(64) == curve[-1]
    assert tracked.has_factors


def test_negative_mig_every_is_rejected():
    with pytest.raises(ConfigError, match="mig_every must be >= 0"):
        TrainConfig(mig_every=-1).validate()


# A bf16 step rounds activations to 8 mantissa bits (relative error ~2^-9 per operation); over the
# Table-3 nets the loss terms of one step stay within 2% (relative) or 0.05 (absolute, for terms
# near zero) of float32's. The estimators run in float32 inside autocast in both.
BF16_RELATIVE_TOLERANCE = 0.02
BF16_ABSOLUTE_TOLERANCE = 0.05


@pytest.mark.parametrize("method", ["tcwae_mws", "tcwae_gan", "beta_tcvae"])
def test_one_bf16_step_matches_float32(method):
    dataset = tiny_dsprites()
    terms = {}
    for precision in ("float32", "bf16"):
        cfg = TrainConfig(method=method, steps=1, batch_size=16, precision=precision)
        trainer = Trainer(cfg, dataset)
        assert trainer.resolved_settings()["precision"] == precision
        terms[precision] = {name: value.item() for name, value in trainer.train_step().items()}
    assert terms["bf16"].keys() == terms["float32"].keys()
    for name, expected in terms["float32"].items():
        assert terms["bf16"][name] == pytest.approx(
            expected, rel=BF16_RELATIVE_TOLERANCE, abs=BF16_ABSOLUTE_TOLERANCE
        ), name


def test_precision_auto_follows_the_device(monkeypatch):
    import tcwae.trainer as trainer_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer_module, "bf16_supported", lambda device: True)
    assert trainer_module.resolve_precision("auto", cpu) == "bf16"
    assert trainer_module.resolve_precision("float32", cpu) == "float32"
    monkeypatch.setattr(trainer_module, "bf16_supported", lambda device: False)
    assert trainer_module.resolve_precision("auto", cpu) == "float32"
    assert trainer_module.resolve_precision("bf16", cpu) == "bf16"


def test_optimizer_presets_resolve_per_method_family_and_yield_to_explicit_keys():
    model, disc = TrainConfig(method="tcwae_gan", optimizer="authors").adam()
    assert (model.lr, model.betas, model.eps) == (8e-4, (0.9, 0.999), 1e-8)
    assert (disc.lr, disc.betas, disc.eps) == (1e-4, (0.5, 0.9), 1e-8)
    assert TrainConfig(method="beta_tcvae", optimizer="authors").adam()[0].lr == 5e-4
    assert TrainConfig(method="tcwae_mws", dataset="celeba").adam()[1].lr == 1e-5
    model, _ = TrainConfig(method="tcwae_mws", optimizer="paper").adam()
    assert (model.lr, model.eps) == (4e-4, 8e-4)
    model, _ = TrainConfig(method="tcwae_mws", optimizer="paper", lr=1e-3, adam_eps=1e-7).adam()
    assert (model.lr, model.eps) == (1e-3, 1e-7)
    with pytest.raises(ConfigError, match="optimizer='adamw' is not one of authors, paper"):
        TrainConfig.from_dict({"optimizer": "adamw"})
    with pytest.raises(ConfigError, match="adam_beta1 must be in"):
        TrainConfig.from_dict({"adam_beta1": 1.5})


def test_trainer_records_the_adam_it_built():
    cfg = TrainConfig(method="tcwae_gan", steps=1, batch_size=4, optimizer="paper")
    trainer = Trainer(cfg, tiny_dsprites())
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["eps"]) == (4e-4, 8e-4)
    settings = trainer.resolved_settings()
    assert settings["optimizer"] == "paper"
    assert (settings["adam.lr"], settings["adam.eps"], settings["disc_adam.lr"]) == (
        "0.0004",
        "0.0008",
        "0.0001",
    )


def test_channels_last_is_the_image_default_and_off_for_sequence_models():
    assert TrainConfig(method="tcwae_mws").channels_last is True
    assert TrainConfig(method="rwae_mmd", dataset="sprite_videos").channels_last is False
    assert TrainConfig(method="tcwae_mws", channels_last=False).channels_last is False


# NHWC changes only the order of the convolutions' sums: over a few steps (Adam included) the loss
# terms agree with NCHW's to float32 rounding.
@pytest.mark.parametrize("method", ["tcwae_mws", "factor_vae", "beta_tcvae"])
def test_channels_last_trains_like_nchw(method):
    dataset = tiny_dsprites()
    losses = {}
    for channels_last in (False, True):
        cfg = TrainConfig(
            method=method, steps=4, batch_size=16, report_every=4, channels_last=channels_last
        )
        losses[channels_last] = Trainer(cfg, dataset).train()
    assert losses[True].keys() == losses[False].keys()
    for name, expected in losses[False].items():
        assert losses[True][name] == pytest.approx(expected, rel=1e-3, abs=1e-4), name
