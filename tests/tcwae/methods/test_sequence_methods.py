"""R-WAE(MMD), R-WAE(GAN) and DSVAE: each equation and each loss term against a hand computation,
the networks' shapes and generation paths, and a short run that lowers the loss."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from science_helpers import one_thread

from tcwae.config import ConfigError, TrainConfig
from tcwae.data import small_dsprites, small_sprite_videos
from tcwae.methods import (
    SEQUENCE_METHODS,
    build_method,
    discriminator_cross_entropy,
    hyperparameter_names,
    method_card,
    method_class,
    methods_for,
)
from tcwae.methods.sequential import (
    aggregate_categorical_kl,
    density_ratio_divergence,
    diagonal_gaussian_kl,
    dynamic_mmd,
    mean_categorical_kl,
    sequence_reconstruction,
    time_tagged,
    weighted_sequence_loss,
)
from tcwae.sequence_nets import DSVAEAutoencoder, SequenceAutoencoder, gumbel_softmax_sample
from tcwae.trainer import Trainer

HYPER = dict(ds=4, dz=3, rnn_hidden=16, beta=3.0, gamma=7.0)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@functools.cache
def videos():
    return small_sprite_videos()


def tiny_batch(count: int = 3) -> torch.Tensor:
    return videos().float_batch(torch.arange(0, 3 * count, 3))  # [count, 8, 3, 64, 64]


def naive_imq_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """MMD^2 of WAE-MMD written out pair by pair (the estimator's definition, no vectorising)."""
    n, dims = x.shape
    total = 0.0
    for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2.0 * dims * scale

        def k(a, b, c=c):
            return c / (c + float(((a - b) ** 2).sum()))

        within_x = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        cross = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
        total += within_x + within_y - 2 * cross
    return total


# Equations, each on numbers worked out by hand.


def test_reconstruction_sums_the_frame_costs_and_averages_the_sequences() -> None:
    x = torch.zeros(2, 3, 1, 64, 64)
    x[1, 2, 0, :2, :] = 1.0  # 128 white pixels in the last frame of the second sequence
    logits = torch.zeros_like(x)  # sigmoid 0.5 everywhere
    # l2sq: every pixel costs 0.25; 3 frames x 4096 pixels per sequence.
    assert sequence_reconstruction(logits, x, "l2sq").item() == pytest.approx(3 * 4096 * 0.25)
    # xent: every pixel costs log 2 whatever its target.
    expected = 3 * 4096 * math.log(2)
    assert sequence_reconstruction(logits, x, "xent").item() == pytest.approx(expected, rel=1e-6)
    logits[1, 2] = 20.0  # the second sequence's last frame predicted all white
    l1 = sequence_reconstruction(logits, x, "l1").item()
    wrong = 4096 - 128  # black pixels predicted white, each off by sigmoid(20) ~ 1
    assert l1 == pytest.approx((3 * 4096 * 0.5 + 2 * 4096 * 0.5 + wrong) / 2, rel=1e-6)


def test_diagonal_gaussian_kl_matches_the_closed_form_by_hand() -> None:
    zero = torch.zeros(1, 2)
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension; KL(N(0, e^2) || N(0, 1)) = (e^2 - 1 - 2) / 2.
    assert diagonal_gaussian_kl(torch.ones(1, 2), zero, zero, zero).item() == pytest.approx(1.0)
    logvar_q = torch.tensor([[2.0, 0.0]])
    expected = 0.5 * (math.exp(2.0) - 1.0 - 2.0)
    assert diagonal_gaussian_kl(zero, logvar_q, zero, zero).item() == pytest.approx(expected)
    # Against a prior N(1, e^1): 0.5 [1 - 0 + (1 + 1) / e - 1] per dimension.
    value = diagonal_gaussian_kl(zero, zero, torch.ones(1, 2), torch.ones(1, 2)).item()
    assert value == pytest.approx(2 * 0.5 * 2 / math.e)


def test_categorical_kls_to_the_uniform_prior() -> None:
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    uniform = torch.full((2, 2), 0.5)
    # Aggregate: both sequences on action 0 is log 2 from uniform; one each is uniform.
    assert aggregate_categorical_kl(same).item() == pytest.approx(math.log(2))
    assert aggregate_categorical_kl(spread).item() == pytest.approx(0.0, abs=1e-7)
    # Per sequence: a confident posterior costs log 2 however the batch spreads.
    assert mean_categorical_kl(spread).item() == pytest.approx(math.log(2))
    assert mean_categorical_kl(uniform).item() == pytest.approx(0.0, abs=1e-7)


def test_gumbel_softmax_with_zero_noise_is_the_tempered_softmax() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    uniform = torch.full((1, 3), math.exp(-1.0))  # -log(-log u) = 0
    sample = gumbel_softmax_sample(logits, uniform, temperature=0.5)
    expected = torch.tensor([math.exp(2), 1.0, math.exp(-2)]) / (math.exp(2) + 1 + math.exp(-2))
    torch.testing.assert_close(sample[0], expected)


def test_dynamic_mmd_sums_the_per_frame_imq_mmd() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4, 2, 3, generator=generator)
    prior_z = torch.randn(4, 2, 3, generator=generator) + 1.0
    expected = naive_imq_mmd(z[:, 0], prior_z[:, 0]) + naive_imq_mmd(z[:, 1], prior_z[:, 1])
    assert dynamic_mmd(z, prior_z).item() == pytest.approx(expected, rel=1e-5)


def test_time_tagged_rows_carry_the_frame_index() -> None:
    z = torch.arange(12.0).view(2, 3, 2)
    rows = time_tagged(z)
    assert rows.tolist() == [
        [0, 1, 0],
        [2, 3, 1],
        [4, 5, 2],
        [6, 7, 0],
        [8, 9, 1],
        [10, 11, 2],
    ]


def test_density_ratio_divergence_and_discriminator_loss_by_hand() -> None:
    logits_query = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # log q/p estimates 2 and 0
    logits_prior = torch.tensor([[0.0, 1.0]])  # log p/q estimate 1
    assert density_ratio_divergence(logits_query, logits_prior).item() == pytest.approx(1.0 + 1.0)
    # Cross-entropy: -log softmax of the true class, each class averaged then halved.
    log2 = math.log(2)
    query_ce = (math.log(1 + math.exp(-2.0)) + log2) / 2
    prior_ce = math.log(1 + math.exp(-1.0))
    expected = 0.5 * (query_ce + prior_ce)
    loss = discriminator_cross_entropy(logits_query, logits_prior).item()
    assert loss == pytest.approx(expected, rel=1e-6)


def test_weighted_loss_puts_beta_on_the_sequence_codes_and_gamma_on_the_frames() -> None:
    terms = [torch.tensor(value) for value in (100.0, 2.0, 5.0, 0.5)]
    assert weighted_sequence_loss(*terms, beta=3.0, gamma=7.0).item() == 100 + 3 * 2.5 + 7 * 5


# Each method's terms on a tiny batch, recomputed by hand from the networks' outputs.


def build(method: str, seed: int = 0, **changes) -> torch.nn.Module:
    values = {"dataset": "sprite_videos", "method": method, "seed": seed, **HYPER, **changes}
    return build_method(TrainConfig.from_dict(values), 3, len(videos()))


def replay(model, x: torch.Tensor, seed: int, prior_samples: bool) -> tuple[dict, torch.Generator]:
    """The autoencoder's outputs on the noise a method draws from `seed`, in its order."""
    generator = torch.Generator().manual_seed(seed)
    settings, dz, (batch, frames) = model.settings, model.cfg.dz, x.shape[:2]
    noise = [
        torch.randn(batch, settings.ds, generator=generator),
        torch.randn(batch, frames * dz, generator=generator).view(batch, frames, -1),
        torch.randn(batch, frames * dz, generator=generator).view(batch, frames, -1)
        if prior_samples
        else None,
    ]
    if settings.num_actions:
        noise.append(torch.rand(batch, settings.num_actions, generator=generator))
    with torch.no_grad():
        return model.autoencoder(x, *noise), generator


@pytest.mark.parametrize("num_actions", [0, 3])
def test_rwae_mmd_terms_by_hand(num_actions: int) -> None:
    model, x = build("rwae_mmd", num_actions=num_actions, cost="l2sq"), tiny_batch()
    output = model(x)
    terms = output.terms
    out, generator = replay(model, x, 0, prior_samples=True)
    prior_s = torch.randn(3, 4, generator=generator)
    expected_rec = ((torch.sigmoid(out["logits"]) - x) ** 2).sum(dim=(1, 2, 3, 4)).mean()
    assert terms["rec"].item() == pytest.approx(expected_rec.item(), rel=1e-5)
    assert terms["static"].item() == pytest.approx(naive_imq_mmd(out["s"], prior_s), rel=1e-4)
    frames = [naive_imq_mmd(out["z"][:, t], out["prior_z"][:, t]) for t in range(8)]
    assert terms["dynamic"].item() == pytest.approx(sum(frames), rel=1e-4, abs=1e-6)
    if num_actions:
        aggregate = out["action_probs"].mean(0)
        expected = sum(q * math.log(3 * q) for q in aggregate.tolist())
        assert terms["action"].item() == pytest.approx(expected, rel=1e-4, abs=1e-7)
    else:
        assert terms["action"].item() == 0.0
    t = {name: value.item() for name, value in terms.items()}
    expected_loss = t["rec"] + 3 * (t["static"] + t["action"]) + 7 * t["dynamic"]
    assert t["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert terms["loss"].requires_grad and not output.codes.requires_grad
    assert output.codes.shape == (3, 4 + 2 * 8 * 3)


def test_rwae_gan_terms_and_discriminator_step_by_hand() -> None:
    model, x = build("rwae_gan"), tiny_batch()
    output = model(x)
    terms = output.terms
    out, generator = replay(model, x, 0, prior_samples=True)
    prior_s = torch.randn(3, 4, generator=generator)
    static_disc, dynamic_disc = model.discriminators
    with torch.no_grad():
        on_q, on_p = static_disc(out["s"]), static_disc(prior_s)
        static = (on_q[:, 0] - on_q[:, 1]).mean() + (on_p[:, 1] - on_p[:, 0]).mean()
        frames = torch.arange(8.0).repeat(3)[:, None]
        on_q = dynamic_disc(torch.cat([out["z"].flatten(0, 1), frames], 1))
        on_p = dynamic_disc(torch.cat([out["prior_z"].flatten(0, 1), frames], 1))
        dynamic = 8 * ((on_q[:, 0] - on_q[:, 1]).mean() + (on_p[:, 1] - on_p[:, 0]).mean())
    expected_rec = F.binary_cross_entropy_with_logits(out["logits"], x, reduction="sum") / 3
    assert terms["rec"].item() == pytest.approx(expected_rec.item(), rel=1e-5)
    assert terms["static"].item() == pytest.approx(static.item(), rel=1e-4, abs=1e-6)
    assert terms["dynamic"].item() == pytest.approx(dynamic.item(), rel=1e-4, abs=1e-6)

    # The model step trains encoder, prior and decoder, never the discriminators.
    terms["loss"].backward()
    assert all(p.grad is None for p in model.discriminators.parameters())
    assert model.autoencoder.prior_head.weight.grad.abs().sum() > 0
    # The discriminator step sees detached codes: its gradient reaches only the discriminators.
    model.zero_grad(set_to_none=True)
    disc_loss = model.discriminator_loss(output.codes)
    disc_loss.backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert all(p.grad is not None for p in model.discriminators.parameters())
    s, z, prior_z = model.unpack_codes(output.codes)
    torch.testing.assert_close(z, out["z"])
    torch.testing.assert_close(prior_z, out["prior_z"])
    # Its prior samples for s are the next draw of the same stream.
    prior_s = torch.randn(3, 4, generator=generator)
    with torch.no_grad():
        static_ce = discriminator_cross_entropy(static_disc(s), static_disc(prior_s))
        dynamic_ce = discriminator_cross_entropy(
            dynamic_disc(time_tagged(z)), dynamic_disc(time_tagged(prior_z))
        )
    assert disc_loss.item() == pytest.approx((static_ce + dynamic_ce).item(), rel=1e-5)


@pytest.mark.parametrize("num_actions", [0, 2])
def test_dsvae_terms_are_the_closed_form_kls(num_actions: int) -> None:
    model, x = build("dsvae", num_actions=num_actions, cost="l1"), tiny_batch()
    output = model(x)
    terms = output.terms
    out, _ = replay(model, x, 0, prior_samples=False)
    normal = torch.distributions.Normal
    static = torch.distributions.kl_divergence(
        normal(out["s_mu"], (0.5 * out["s_logvar"]).exp()), normal(0.0, 1.0)
    )
    dynamic = torch.distributions.kl_divergence(
        normal(out["z_mu"], (0.5 * out["z_logvar"]).exp()),
        normal(out["prior_mu"], (0.5 * out["prior_logvar"]).exp()),
    )
    # Bernoulli likelihood whatever the configured cost, as for the image VAE baselines.
    expected_rec = F.binary_cross_entropy_with_logits(out["logits"], x, reduction="sum") / 3
    assert terms["rec"].item() == pytest.approx(expected_rec.item(), rel=1e-5)
    assert terms["static"].item() == pytest.approx(static.sum(1).mean().item(), rel=1e-5)
    assert terms["dynamic"].item() == pytest.approx(dynamic.sum((1, 2)).mean().item(), rel=1e-5)
    if num_actions:
        q = out["action_probs"]
        assert terms["action"].item() == pytest.approx(
            (q * (q * 2).log()).sum(1).mean().item(), rel=1e-5, abs=1e-7
        )
    with pytest.raises(TypeError, match="no discriminator"):
        model.discriminator_loss(output.codes)


# The networks.


@pytest.mark.parametrize("network", [SequenceAutoencoder, DSVAEAutoencoder])
def test_autoencoder_shapes_generation_and_swap(network) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = network(3, ds=4, dz=3, hidden=16, num_actions=2).eval()
    x = tiny_batch(2)
    with torch.no_grad():
        codes = net.infer(x)
        assert codes["s"].shape == (2, 4) and codes["z"].shape == (2, 8, 3)
        assert codes["action"].sum(1).tolist() == [1.0, 1.0]  # one-hot
        again = net.infer(x)
        assert all(torch.equal(codes[k], again[k]) for k in codes)
        noise = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(1))
        dynamics = net.sample_dynamics(noise)
        assert dynamics.shape == (2, 8, 3)
        # Each step of the roll-out is the teacher-forced prior along the same codes.
        mu, logvar = net.prior(dynamics)
        torch.testing.assert_close(dynamics, mu + (0.5 * logvar).exp() * noise)
        swapped = net.decode(codes["s"].flip(0), codes["z"], codes["action"])
        assert swapped.shape == x.shape
    with pytest.raises(ValueError, match="even"):
        network(3, ds=4, dz=3, hidden=15)


def frame_jacobian_norms(net, s: torch.Tensor, z: torch.Tensor, action: torch.Tensor):
    """|d logits_t / d z_u| summed over pixels and batch: [T (frame t), T (code u)]."""
    rows = []
    for t in range(z.shape[1]):
        codes = z.clone().requires_grad_(True)
        net.decode(s, codes, action)[:, t].sum().backward()
        rows.append(codes.grad.abs().sum(dim=(0, 2)))
    return torch.stack(rows)


def test_dsvae_frame_t_depends_on_z_t_and_s_alone() -> None:
    # DSVAE's p(x_t | z_t, s): changing any other z_u (z_{t-1} included) leaves frame t exactly
    # as it was; R-WAE's decoder LSTM makes frame t depend on z_1..z_t.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dsvae = DSVAEAutoencoder(3, ds=4, dz=3, hidden=16, num_actions=2).eval()
        rwae = SequenceAutoencoder(3, ds=4, dz=3, hidden=16, num_actions=2).eval()
        s, z = torch.randn(2, 4), torch.randn(2, 8, 3)
    action = F.one_hot(torch.tensor([0, 1]), 2).float()
    with torch.no_grad():
        frames = dsvae.decode(s, z, action)
        for t in range(1, 8):
            other = z.clone()
            other[:, :t] += 1.0  # z_1..z_{t-1}, z_{t-1} among them
            other[:, t + 1 :] -= 1.0
            moved = dsvae.decode(s, other, action)
            assert torch.equal(moved[:, t], frames[:, t]), t
            assert not torch.equal(moved[:, t - 1], frames[:, t - 1])
    jacobian = frame_jacobian_norms(dsvae, s, z, action)
    assert (jacobian.diagonal() > 0).all()
    assert (jacobian - torch.diag(jacobian.diagonal())).abs().max() == 0
    recurrent = frame_jacobian_norms(rwae, s, z, action)
    causal = torch.ones(8, 8).tril().bool()
    assert (recurrent[causal] > 0).all() and recurrent[~causal].abs().max() == 0


def test_dsvae_posterior_is_the_full_q_given_s_and_every_frame() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DSVAEAutoencoder(3, ds=4, dz=3, hidden=16).eval()
    x = tiny_batch(2)
    with torch.no_grad():
        frames = net.encode_frames(x)
        s = torch.randn(2, 4)
        mu, logvar, z = net.dynamic_posterior(frames, s, None)
        assert torch.equal(z, mu) and mu.shape == logvar.shape == (2, 8, 3)
        # Conditioned on s ...
        assert not torch.allclose(net.dynamic_posterior(frames, s + 1.0, None)[0], mu)
        # ... and on later frames (the bidirectional LSTM): z_1 changes with x_8.
        later = x.clone()
        later[:, -1] = 1.0 - later[:, -1]
        assert not torch.allclose(
            net.dynamic_posterior(net.encode_frames(later), s, None)[0][:, 0], mu[:, 0]
        )
        noise = torch.randn(2, 8, 3)
        _, _, sample = net.dynamic_posterior(frames, s, noise)
        torch.testing.assert_close(sample, mu + (0.5 * logvar).exp() * noise)
    assert isinstance(build("dsvae").autoencoder, DSVAEAutoencoder)
    assert type(build("rwae_mmd").autoencoder) is SequenceAutoencoder


# Through the trainer.


def sequence_config(method: str, **changes) -> TrainConfig:
    values = dict(
        dataset="sprite_videos",
        method=method,
        ds=4,
        dz=3,
        rnn_hidden=32,
        batch_size=4,
        steps=20,
        report_every=5,
        lr=2e-3,
        adam_eps=1e-8,
        seed=1,
    )
    return TrainConfig.from_dict({**values, **changes})


@pytest.mark.parametrize("method", SEQUENCE_METHODS)
def test_twenty_steps_lower_the_loss(method: str) -> None:
    reports = []
    trainer = Trainer(sequence_config(method), videos())
    trainer.train(on_report=lambda step, losses: reports.append(losses))
    assert len(reports) == 4
    assert reports[-1]["rec"] < 0.5 * reports[0]["rec"], [r["rec"] for r in reports]
    assert reports[-1]["loss"] < 0.5 * reports[0]["loss"]
    assert ("disc_loss" in reports[-1]) == (method == "rwae_gan")


def test_sequence_methods_and_data_sets_must_match() -> None:
    with pytest.raises(ConfigError, match="holds images but method rwae_mmd .*tcwae_mws"):
        Trainer(sequence_config("rwae_mmd", dataset="dsprites"), small_dsprites((1, 1, 2, 2, 2)))
    with pytest.raises(ConfigError, match="holds sequences but method wae_mmd .*rwae_mmd"):
        Trainer(TrainConfig(method="wae_mmd", dataset="sprite_videos", batch_size=4), videos())
    with pytest.raises(ConfigError, match="image-model options"):
        sequence_config("dsvae", channels_last=True)
    with pytest.raises(ConfigError, match="rnn_hidden must be even"):
        sequence_config("dsvae", rnn_hidden=34 - 1)
    with pytest.raises(ConfigError, match="num_actions must be >= 0"):
        sequence_config("dsvae", num_actions=-1)
    with pytest.raises(ConfigError, match="mig_every must be 0 for a sequence model"):
        sequence_config("rwae_mmd", mig_every=10)
    with pytest.raises(ConfigError, match="wae_mmd does not read 'ds'"):
        sequence_config("wae_mmd")


def test_sequence_methods_are_registered_with_their_declarations() -> None:
    assert SEQUENCE_METHODS and not set(SEQUENCE_METHODS) & set(methods_for(sequences=False))
    for name in SEQUENCE_METHODS:
        assert method_card(name).sequences and not method_card(name).channels_last
        assert hyperparameter_names(name) == ("beta", "gamma", "ds", "rnn_hidden", "num_actions")
    families = {name: method_card(name).optimizer_family for name in SEQUENCE_METHODS}
    assert families == {"rwae_mmd": "wae", "rwae_gan": "wae", "dsvae": "vae"}
    assert [method_class(name).num_discriminators for name in SEQUENCE_METHODS] == [0, 2, 0]
    config = sequence_config("rwae_gan")
    assert config.hyperparameters["num_actions"] == 0 and config.adam()[0].lr == 2e-3
