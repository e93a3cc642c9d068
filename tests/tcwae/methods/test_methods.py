"""The method registry and the methods added to seed 001's five: beta-VAE, AnnealedVAE, DIP-VAE-I
and -II, FactorQVAE and QVAE. Each one's loss terms on a tiny batch against a hand computation
(numpy, float64, from the networks' own outputs), plus the declarations the config reads."""

import importlib
import math
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from science_helpers import one_thread, tiny_dsprites

from tcwae import methods
from tcwae.config import CONFIG_KEYS, ConfigError, TrainConfig
from tcwae.methods import CARDS, METHODS, REGISTRY, StepRandomness, build_method, method_class
from tcwae.methods.annealed_vae import capacity
from tcwae.methods.base import Method
from tcwae.methods.factor_qvae import (
    INTENSITY_EPS,
    codebook_perplexity,
    gumbel_temperature,
    permute_latents,
    uniform_prior_kl,
)
from tcwae.metrics.evaluation import code_indices
from tcwae.trainer import Trainer

README = Path(__file__).resolve().parents[3] / "README.md"
BATCH = 12


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def batch() -> torch.Tensor:
    dataset = tiny_dsprites()
    picks = torch.arange(0, len(dataset), len(dataset) // BATCH)[:BATCH]
    return dataset.images[picks].float() / 255


def build(method: str, **values) -> torch.nn.Module:
    cfg = TrainConfig.from_dict({"method": method, "batch_size": BATCH, "seed": 2, **values})
    dataset = tiny_dsprites()
    return build_method(cfg, dataset.num_channels, len(dataset))


def numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()


def bernoulli_nll(logits: np.ndarray, x: np.ndarray) -> float:
    """-log p(x|z) of a Bernoulli decoder, summed over pixels, mean over images."""
    log_p = -np.logaddexp(0, -logits)
    log_not_p = -np.logaddexp(0, logits)
    return float(-(x * log_p + (1 - x) * log_not_p).reshape(len(x), -1).sum(1).mean())


def gaussian_parts(method: torch.nn.Module, x: torch.Tensor, codes: torch.Tensor):
    """mu, logvar of the batch and the Bernoulli NLL of the codes the forward pass sampled."""
    with torch.no_grad():
        mu, logvar = method.autoencoder.encode(x)
        logits = method.autoencoder.decode(codes)
    return numpy(mu), numpy(logvar), bernoulli_nll(numpy(logits), numpy(x))


def kl_to_prior(mu: np.ndarray, logvar: np.ndarray) -> float:
    return float((0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).sum(1).mean())


# ----------------------------------------------------------------------------------------------
# Registry and declarations


def test_every_card_declares_itself_and_names_its_model_class():
    assert METHODS == tuple(card.name for card in CARDS)
    for name, card in REGISTRY.items():
        assert card.name == name and card.label and card.paper
        assert card.optimizer_family in ("wae", "vae", "factorqvae")
        assert method_class(name).name == name
        for parameter in card.hyperparameters:
            assert parameter.meaning and parameter.name in CONFIG_KEYS
            assert parameter.name not in TrainConfig.__dataclass_fields__


def test_every_method_defined_in_a_module_is_registered():
    """A method is a `Method` subclass that sets `name`; one left out of `CARDS` fails here."""
    package = Path(methods.__file__).parent
    defined = {}
    for module in pkgutil.iter_modules([str(package)]):
        loaded = importlib.import_module(f"tcwae.methods.{module.name}")
        for value in vars(loaded).values():
            if (
                isinstance(value, type)
                and issubclass(value, Method)
                and value.__module__ == loaded.__name__
                and "name" in vars(value)
            ):
                defined[value.name] = value
    assert set(defined) == set(METHODS)
    assert all(method_class(name) is cls for name, cls in defined.items())


def test_the_registry_and_the_config_import_no_torch():
    code = "import sys, tcwae.config, tcwae.methods; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_lazily_served_names_are_the_torch_modules_exports():
    # tcwae.methods cannot read tcwae.methods.models.__all__ without importing torch.
    models = importlib.import_module("tcwae.methods.models")
    assert methods._MODEL_NAMES == set(models.__all__)
    assert all(getattr(methods, name) is getattr(models, name) for name in models.__all__)


def test_a_method_given_a_parameter_it_does_not_read_is_refused_in_one_line():
    with pytest.raises(ConfigError) as raised:
        TrainConfig.from_dict({"method": "wae_mmd", "lam": 3, "beta": 2})
    assert str(raised.value) == "config: wae_mmd does not read 'beta'; it reads lam"
    with pytest.raises(ConfigError, match="dip_vae_i does not read 'gamma'"):
        TrainConfig.from_dict({"method": "dip_vae_i", "gamma": 2})
    with pytest.raises(ConfigError, match="codebook_size must be an integer, got 2.5"):
        TrainConfig.from_dict({"method": "factor_qvae", "codebook_size": 2.5})
    with pytest.raises(ConfigError, match="anneal_steps must be >= 1"):
        TrainConfig.from_dict({"method": "annealed_vae", "anneal_steps": 0})


def test_defaults_come_from_the_declarations_and_round_trip_through_flat_keys():
    config = TrainConfig.from_dict({"method": "annealed_vae", "c_max": 5})
    assert config.hyperparameters == {"gamma": 1000.0, "c_max": 5.0, "anneal_steps": 100_000}
    flat = config.to_dict()
    assert list(flat)[list(flat).index("method") + 1 : list(flat).index("cost")] == [
        "gamma",
        "c_max",
        "anneal_steps",
    ]
    assert TrainConfig.from_dict(flat) == config
    assert TrainConfig.from_dict({"method": "beta_tcvae"}).hyperparameters == {
        "beta": 1.0,
        "gamma": 1.0,
    }


def test_latent_size_defaults_to_the_methods_choice_for_the_data_set():
    assert TrainConfig(method="tcwae_mws", dataset="shapes3d").dz == 10
    assert TrainConfig(method="factor_qvae", dataset="shapes3d").dz == 12
    assert TrainConfig(method="qvae", dataset="smallnorb").dz == 8
    assert TrainConfig(method="factor_qvae", dataset="celeba").dz == 10
    assert TrainConfig(method="factor_qvae", dataset="shapes3d", dz=5).dz == 5


@pytest.mark.parametrize(
    ("method", "model_lr", "disc_lr"),
    [("tcwae_gan", 8e-4, 1e-4), ("dip_vae_ii", 5e-4, 1e-4), ("factor_qvae", 1e-3, 1e-3)],
)
def test_each_method_declares_its_optimizer_family(method, model_lr, disc_lr):
    model, disc = TrainConfig(method=method).adam()
    assert (model.lr, disc.lr) == (model_lr, disc_lr)
    model, disc = TrainConfig(method=method, optimizer="paper").adam()
    assert model.lr == (1e-3 if method == "factor_qvae" else 4e-4)


def test_readme_lists_every_method_with_its_paper_and_hyperparameters():
    rows = {
        match.group(1): match.group(0)
        for match in re.finditer(r"^\| `(\w+)` \|.*$", README.read_text(), re.MULTILINE)
    }
    for name, method in REGISTRY.items():
        assert name in rows, name
        assert method.label in rows[name]
        for parameter in method.hyperparameters:
            assert f"`{parameter.name}`" in rows[name], (name, parameter.name)


# ----------------------------------------------------------------------------------------------
# Loss terms against hand computations


def test_beta_vae_is_the_nll_plus_beta_times_the_analytic_kl():
    method = build("beta_vae", beta=4.0)
    x = batch()
    output = method(x)
    mu, logvar, nll = gaussian_parts(method, x, output.codes)
    terms = {name: value.item() for name, value in output.terms.items()}
    assert set(terms) == {"rec", "kl", "loss"}
    assert terms["rec"] == pytest.approx(nll, rel=1e-5)
    assert terms["kl"] == pytest.approx(kl_to_prior(mu, logvar), rel=1e-5, abs=1e-6)
    assert terms["loss"] == pytest.approx(nll + 4.0 * kl_to_prior(mu, logvar), rel=1e-5)


@pytest.mark.parametrize("step", [0, 30, 100, 250])
def test_annealed_vae_pulls_the_kl_towards_a_linearly_rising_capacity(step):
    method = build("annealed_vae", gamma=50.0, c_max=0.2, anneal_steps=100)
    x = batch()
    output = method(x, step=step)
    mu, logvar, nll = gaussian_parts(method, x, output.codes)
    kl = kl_to_prior(mu, logvar)
    expected_capacity = 0.2 * min(step, 100) / 100
    assert capacity(step, 0.2, 100) == pytest.approx(expected_capacity)
    terms = {name: value.item() for name, value in output.terms.items()}
    assert terms["kl"] == pytest.approx(kl, rel=1e-5, abs=1e-6)
    assert terms["capacity_gap"] == pytest.approx(abs(kl - expected_capacity), rel=1e-4, abs=1e-6)
    assert terms["loss"] == pytest.approx(nll + 50.0 * abs(kl - expected_capacity), rel=1e-5)


@pytest.mark.parametrize(("variant", "factor"), [("dip_vae_i", 10.0), ("dip_vae_ii", 1.0)])
def test_dip_vae_penalises_the_covariance_off_the_identity(variant, factor):
    method = build(variant, lambda_od=3.0)
    x = batch()
    output = method(x)
    mu, logvar, nll = gaussian_parts(method, x, output.codes)
    covariance = np.cov(mu, rowvar=False, bias=True)
    if variant == "dip_vae_ii":
        covariance = covariance + np.diag(np.exp(logvar).mean(0))
    off_diagonal = covariance - np.diag(np.diag(covariance))
    penalty = 3.0 * (off_diagonal**2).sum() + factor * 3.0 * ((np.diag(covariance) - 1) ** 2).sum()
    terms = {name: value.item() for name, value in output.terms.items()}
    assert set(terms) == {"rec", "kl", "dip", "loss"}
    assert terms["dip"] == pytest.approx(penalty, rel=1e-4)
    expected = nll + kl_to_prior(mu, logvar) + penalty
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["factor_qvae", "qvae"])
def test_quantised_terms_match_a_hand_computation(variant):
    values = {"kl_weight": 0.3, "codebook_size": 8}
    if variant == "factor_qvae":
        values["gamma"] = 0.7
    method = build(variant, **values)
    x = batch()
    step = 20_000
    diagnostics = StepRandomness(torch.Generator().manual_seed(9))
    output = method(x, step=step, diagnostics=diagnostics)

    # the run's generator: its first draw is the step's Gumbel uniforms, [B, dz * K]
    uniform = numpy(torch.rand(BATCH, 10 * 8, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        scalars = numpy(method.autoencoder.encoder(x))
    codebook = numpy(method.autoencoder.codebook)
    distances = (scalars[:, :, None] - codebook) ** 2
    tau = math.exp(-1e-5 * step)
    logits = (-distances - np.log(-np.log(uniform.reshape(BATCH, 10, 8)))) / tau
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    soft_values = weights @ codebook
    with torch.no_grad():
        intensities = method.autoencoder.decoder(torch.from_numpy(soft_values).float())
    rec = float(((numpy(intensities) - (numpy(x) - 0.5)) ** 2).mean())
    q = np.exp(-distances) / np.exp(-distances).sum(-1, keepdims=True)
    kl = float((q * np.log(q * 8)).sum(-1).mean())
    usage = np.bincount(weights.argmax(-1).ravel(), minlength=8) / weights[..., 0].size
    perplexity = math.exp(-(usage[usage > 0] * np.log(usage[usage > 0])).sum())

    terms = {name: value.item() for name, value in output.terms.items()}
    assert terms["rec"] == pytest.approx(rec, rel=1e-4)
    assert terms["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert terms["perplexity"] == pytest.approx(perplexity, rel=1e-4)
    assert terms["temperature"] == pytest.approx(tau)
    np.testing.assert_allclose(numpy(output.codes), weights.reshape(BATCH, -1), atol=1e-5)
    expected = rec + 0.3 * kl
    if variant == "factor_qvae":
        with torch.no_grad():
            disc_logits = numpy(method.discriminators[0](output.codes))
        tc = float((disc_logits[:, 0] - disc_logits[:, 1]).mean())
        assert terms["tc"] == pytest.approx(tc, rel=1e-4, abs=1e-6)
        expected += 0.7 * tc
        disc_loss = method.discriminator_loss(output.codes)
        assert disc_loss.requires_grad and math.isfinite(disc_loss.item())
    else:
        assert "tc" not in terms and not method.adversarial
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)
    # terms that only a report step logs
    assert {"perplexity", "temperature"}.isdisjoint(method(x, step=step).terms)


def test_quantised_discriminator_layers_are_the_references():
    method = build("factor_qvae", codebook_size=8)
    layers = [m for m in method.discriminators[0].modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(80, 1000)] + [
        (1000, 1000)
    ] * 4 + [(1000, 2)]


def test_permuting_latents_moves_each_latents_weight_vector_as_a_whole():
    weights = torch.softmax(torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0)), -1)
    keys = torch.rand(6, 3, generator=torch.Generator().manual_seed(1))
    permuted = permute_latents(weights, keys)
    for latent in range(3):
        order = keys[:, latent].argsort()
        assert torch.equal(permuted[:, latent], weights[order, latent])


def test_quantisation_helpers_on_known_cases():
    assert gumbel_temperature(0) == 1.0
    assert gumbel_temperature(100_000) == pytest.approx(math.exp(-1.0))
    equal = torch.zeros(5, 3, 16)
    assert uniform_prior_kl(equal).item() == pytest.approx(0.0, abs=1e-6)
    one_code = torch.full((5, 3, 16), 1e4)
    one_code[..., 7] = 0.0
    assert uniform_prior_kl(one_code).item() == pytest.approx(math.log(16), rel=1e-5)
    spread = torch.eye(4).repeat(2, 1).view(2, 4, 4)  # every code chosen equally often
    assert codebook_perplexity(spread).item() == pytest.approx(4.0, rel=1e-5)


def test_quantised_representation_is_the_nearest_code_and_scores_as_indices():
    dataset = tiny_dsprites()
    cfg = TrainConfig.from_dict({"method": "factor_qvae", "steps": 2, "batch_size": 4})
    trainer = Trainer(cfg, dataset)
    trainer.train()
    observations = dataset.images[:64].float().numpy() / 255
    codes = trainer.represent(observations)
    codebook = trainer.codebook()
    assert codes.shape == (64, 10) and codebook.shape == (64,)
    with torch.no_grad():
        scalars = numpy(trainer.autoencoder.encoder(torch.from_numpy(observations)))
    nearest = np.abs(scalars[..., None] - codebook).argmin(-1)
    np.testing.assert_array_equal(codes, codebook[nearest])
    np.testing.assert_array_equal(code_indices(codes, codebook), nearest)
    assert Trainer(TrainConfig(method="beta_vae", batch_size=4), dataset).codebook() is None


def test_quantised_decode_gives_the_logits_of_the_centred_intensities():
    method = build("qvae", codebook_size=8)
    codes = torch.randn(5, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        intensities = method.autoencoder.decoder(codes)
        pixels = torch.sigmoid(method.autoencoder.decode(codes))
    expected = (intensities + 0.5).clamp(INTENSITY_EPS, 1 - INTENSITY_EPS)
    torch.testing.assert_close(pixels, expected, rtol=1e-4, atol=1e-6)


def test_qvae_keeps_its_codes_in_use_on_dsprites():
    """The collapse that MSE on sigmoid outputs caused: on dSprites the encoder's scalars left the
    codebook's range within ten steps, after which every latent took the last code, the code
    posterior was one-hot (KL = log K) and the reconstruction stopped improving."""
    cfg = TrainConfig.from_dict(
        {"method": "qvae", "steps": 60, "batch_size": 32, "report_every": 60, "seed": 0}
    )
    with one_thread():
        trainer = Trainer(cfg, tiny_dsprites())
        first = trainer.train_step()
        for _ in range(cfg.steps - 2):
            trainer.train_step()
        last = trainer.train_step()
    assert last["kl"].item() < 0.5 * math.log(64)
    assert last["perplexity"].item() > 1.5
    assert last["rec"].item() < first["rec"].item()
