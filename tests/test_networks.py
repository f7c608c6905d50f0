"""Networks: shapes, input checks, and that an encoder/decoder pair is what it says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_lite.networks import MLP, VAE, Autoencoder


@pytest.mark.parametrize("num_pixels", [64, 784])
def test_vae_shapes_for_8x8_and_28x28(num_pixels):
    model = VAE(num_pixels, hidden=(32, 16), latent_dim=3, rngs=nnx.Rngs(0))
    mu, log_var = model.encoder(jnp.zeros((5, num_pixels)))
    assert mu.shape == log_var.shape == (5, 3)
    assert model.decoder(mu).shape == (5, num_pixels)
    assert (model.latent_dim, model.num_pixels) == (3, num_pixels)


def test_autoencoder_code_shape():
    model = Autoencoder(64, hidden=(16,), latent_dim=2, rngs=nnx.Rngs(0))
    assert model.encoder(jnp.zeros((7, 64))).shape == (7, 2)
    assert model.decoder(jnp.zeros((7, 2))).shape == (7, 64)


def test_mlp_matches_manual_computation():
    mlp = MLP((4, 3, 2), rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (5, 4))
    l0, l1 = mlp.layers
    manual = jax.nn.relu(x @ l0.kernel[...] + l0.bias[...]) @ l1.kernel[...] + l1.bias[...]
    np.testing.assert_allclose(mlp(x), manual, rtol=1e-5, atol=1e-6)


def test_same_seed_same_parameters():
    a = VAE(64, (8,), 2, rngs=nnx.Rngs(5))
    b = VAE(64, (8,), 2, rngs=nnx.Rngs(5))
    x = jnp.ones((1, 64))
    np.testing.assert_array_equal(a.encoder(x)[0], b.encoder(x)[0])


def test_wrong_image_shape_raises():
    model = VAE(784, (8,), 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\(\.\.\., 784\).*\(3, 28, 28\)"):
        model.encoder(jnp.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="latent"):
        model.decoder(jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="floating-point array, got dtype int32"):
        model.encoder(jnp.zeros((3, 784), dtype=jnp.int32))
