"""Networks: shapes, input checks, and that an encoder/decoder pair is what it says."""

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


# A 2-3-2 network with weights chosen by hand, and its outputs worked out on paper:
# x = (1, -1):  hidden pre-activations (-1, -1.5, 0.5) -> ReLU (0, 0, 0.5)  -> output (1.75, -0.25)
# x = (0.5, 2): hidden pre-activations (4.5, 2, -2.75) -> ReLU (4.5, 2, 0) -> output (0.75, 1.5)
HAND_LAYERS = (
    ([[1.0, -1.0, 0.5], [2.0, 1.0, -1.0]], [0.0, 0.5, -1.0]),  # kernel (in, out), bias (out,)
    ([[1.0, 0.0], [-2.0, 1.0], [3.0, 0.5]], [0.25, -0.5]),
)
HAND_X = jnp.array([[1.0, -1.0], [0.5, 2.0]])
HAND_OUT = np.array([[1.75, -0.25], [0.75, 1.5]])


def set_hand_weights(mlp):
    for layer, (kernel, bias) in zip(mlp.layers, HAND_LAYERS, strict=True):
        layer.kernel[...], layer.bias[...] = jnp.array(kernel), jnp.array(bias)


def test_mlp_against_outputs_worked_out_by_hand():
    """ReLU between the layers (negative pre-activations dropped), none after the last (-0.25 stays)."""
    mlp = MLP((2, 3, 2), rngs=nnx.Rngs(1))
    set_hand_weights(mlp)
    np.testing.assert_allclose(mlp(HAND_X), HAND_OUT, rtol=1e-6)
    np.testing.assert_allclose(mlp(HAND_X[1]), HAND_OUT[1], rtol=1e-6)  # one example, no batch axis


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
    """``code(x)``: the mean of q(z|x) for a VAE (the first half of the encoder's output: mu, then
    log_var), the whole deterministic code for an autoencoder; both against the hand-worked outputs."""
    vae = VAE(2, (3,), latent_dim=1, rngs=nnx.Rngs(0))
    ae = Autoencoder(2, (3,), latent_dim=2, rngs=nnx.Rngs(0))
    set_hand_weights(vae.encoder.net)
    set_hand_weights(ae.encoder.net)
    np.testing.assert_allclose(vae.code(HAND_X), HAND_OUT[:, :1], rtol=1e-6)  # mu
    np.testing.assert_allclose(vae.encoder(HAND_X)[1], HAND_OUT[:, 1:], rtol=1e-6)  # log_var
    np.testing.assert_allclose(ae.code(HAND_X), HAND_OUT, rtol=1e-6)
    assert vae.code(HAND_X).shape == (2, 1) and ae.code(HAND_X).shape == (2, 2)
    assert (vae.kind, ae.kind) == ("vae", "ae")
