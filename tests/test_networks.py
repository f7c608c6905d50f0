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


def test_one_method_gives_the_code_of_both_models():
    """``code(x)``: the mean of q(z|x) for a VAE, the deterministic code for an autoencoder."""
    x = jax.random.uniform(jax.random.key(3), (4, 64))
    vae = VAE(64, (16,), 3, rngs=nnx.Rngs(0))
    ae = Autoencoder(64, (16,), 3, rngs=nnx.Rngs(0))
    W1, b1 = vae.encoder.net.layers[0].kernel[...], vae.encoder.net.layers[0].bias[...]
    W2, b2 = vae.encoder.net.layers[1].kernel[...], vae.encoder.net.layers[1].bias[...]
    by_hand = (jax.nn.relu(x @ W1 + b1) @ W2 + b2)[:, :3]  # the first half of the output is mu
    np.testing.assert_allclose(vae.code(x), by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ae.code(x), ae.encoder(x), rtol=0, atol=0)
    assert vae.code(x).shape == ae.code(x).shape == (4, 3)
    assert (vae.kind, ae.kind) == ("vae", "ae")
