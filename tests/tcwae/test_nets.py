import pytest
import torch
from torch import nn

from tcwae.nets import Autoencoder, Decoder, Discriminator, Encoder


def conv_params(in_channels: int, out_channels: int) -> int:
    """A 4x4 (transposed) convolution with bias."""
    return 4 * 4 * in_channels * out_channels + out_channels


def linear_params(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("nchan", [1, 3])
def test_parameter_counts_follow_table_3(nchan):
    dz = 10
    encoder = (
        conv_params(nchan, 32)
        + conv_params(32, 32)
        + conv_params(32, 64)
        + conv_params(64, 64)
        + linear_params(4 * 4 * 64, 256)
        + linear_params(256, 2 * dz)
    )
    decoder = (
        linear_params(dz, 256)
        + linear_params(256, 4 * 4 * 64)
        + conv_params(64, 64)
        + conv_params(64, 32)
        + conv_params(32, 32)
        + conv_params(32, nchan)
    )
    discriminator = linear_params(dz, 1000) + 5 * linear_params(1000, 1000) + linear_params(1000, 2)
    assert count(Encoder(nchan, dz)) == encoder
    assert count(Decoder(nchan, dz)) == decoder
    assert count(Discriminator(dz)) == discriminator == 5_018_002
    assert count(Autoencoder(nchan, dz)) == encoder + decoder
    if nchan == 1:
        assert encoder == 382_932


def test_discriminator_has_six_leaky_relu_hidden_layers():
    layers = list(Discriminator(10).layers)
    activations = [layer for layer in layers if isinstance(layer, nn.LeakyReLU)]
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    assert len(activations) == 6 and all(a.negative_slope == 0.2 for a in activations)
    assert [layer.out_features for layer in linears] == [1000] * 6 + [2]


@pytest.mark.parametrize("nchan", [1, 3])
def test_shapes(nchan):
    torch.manual_seed(0)
    dz, n = 7, 5
    x = torch.rand(n, nchan, 64, 64)
    mu, logvar = Encoder(nchan, dz)(x)
    assert mu.shape == logvar.shape == (n, dz)
    assert Decoder(nchan, dz)(mu).shape == (n, nchan, 64, 64)
    assert Discriminator(dz)(mu).shape == (n, 2)

    autoencoder = Autoencoder(nchan, dz)
    means, logvars = autoencoder.encode(x)
    torch.testing.assert_close(autoencoder(x), means)
    noise = torch.randn(n, dz)
    mu, logvar, z, logits = autoencoder(x, noise)
    torch.testing.assert_close(mu, means)
    torch.testing.assert_close(logvar, logvars)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * noise)
    assert logits.shape == (n, nchan, 64, 64)
    torch.testing.assert_close(logits, autoencoder.decode(z))
    assert (logits < 0).any(), "the decoder must output logits, not probabilities"


def test_softplus_variance_is_the_authors_parameterisation():
    from tcwae.nets import softplus_log_variance

    raw = torch.tensor([-30.0, -1.0, 0.0, 3.0, 600.0])
    variance = torch.nn.functional.softplus(raw.clamp(-20, 500))
    torch.testing.assert_close(softplus_log_variance(raw).exp(), variance + 1e-10)


def test_authors_init_draws_conv_glorot_and_dense_normal():
    from tcwae.nets import authors_discriminator_init, authors_init

    torch.manual_seed(0)
    autoencoder = Autoencoder(1, 10)
    autoencoder.apply(authors_init)
    conv = autoencoder.encoder.features[0]
    bound = (6 / (conv.in_channels * 16 + conv.out_channels * 16)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    dense = autoencoder.encoder.features[-3]
    assert isinstance(dense, nn.Linear)
    assert dense.weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert all(m.bias.abs().sum() == 0 for m in autoencoder.modules() if hasattr(m, "bias"))
    discriminator = Discriminator(10, width=50, depth=2)
    discriminator.apply(authors_discriminator_init)
    first = discriminator.layers[0]
    assert first.weight.abs().max() <= (6 / 60) ** 0.5
