"""Flax NNX encoder, decoder, VAE and plain autoencoder (core; lessons 2, 6-8).

The modules only hold parameters and map arrays to arrays; the losses that use them
are pure functions in :mod:`vae_lite.training`. Images enter as flat rows
``(batch, pixels)``: 64 for the 8x8 digits, 784 for 28x28 MNIST.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vae_lite import _args


class MLP(nnx.Module):
    """Dense layers with ReLU between them (none after the last).

    Args:
        sizes: ``(in, hidden..., out)`` layer widths.
    """

    def __init__(self, sizes, *, rngs: nnx.Rngs):
        self.sizes = tuple(int(s) for s in sizes)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class Encoder(nnx.Module):
    """Gaussian encoder q(z|x) = N(mu(x), diag exp(log_var(x))).

    ``encoder(x)`` maps ``(..., pixels)`` to ``(mu, log_var)``, each ``(..., latent_dim)``.
    Introduced in lesson 6.
    """

    def __init__(self, num_pixels, hidden, latent_dim, *, rngs: nnx.Rngs):
        self.num_pixels, self.latent_dim = num_pixels, latent_dim
        self.net = MLP((num_pixels, *hidden, 2 * latent_dim), rngs=rngs)

    def __call__(self, x):
        _args.last_axis("x", x, self.num_pixels)
        mu, log_var = jnp.split(self.net(x), 2, axis=-1)
        return mu, log_var


class Decoder(nnx.Module):
    """Bernoulli decoder p(x|z): ``decoder(z)`` maps ``(..., latent_dim)`` to pixel logits ``(..., pixels)``.

    Introduced in lesson 2.
    """

    def __init__(self, latent_dim, hidden, num_pixels, *, rngs: nnx.Rngs):
        self.num_pixels, self.latent_dim = num_pixels, latent_dim
        self.net = MLP((latent_dim, *hidden, num_pixels), rngs=rngs)

    def __call__(self, z):
        _args.last_axis("z", z, self.latent_dim, "Pass one latent vector per row.")
        return self.net(z)


class VAE(nnx.Module):
    """A variational autoencoder: a Gaussian encoder and a Bernoulli decoder.

    Args:
        num_pixels: 64 (8x8 digits) or 784 (28x28 MNIST).
        hidden: hidden widths of the encoder; the decoder mirrors them.
        latent_dim: dimension of z.

    Introduced in lesson 6; ``hidden=(400,), latent_dim=20`` is the standard model.
    """

    kind = "vae"  # the name training.TrainConfig(model=...) uses

    def __init__(self, num_pixels, hidden=(400,), latent_dim=20, *, rngs: nnx.Rngs):
        hidden = tuple(hidden)
        self.encoder = Encoder(num_pixels, hidden, latent_dim, rngs=rngs)
        self.decoder = Decoder(latent_dim, hidden[::-1], num_pixels, rngs=rngs)

    def code(self, x):
        """The code of images ``x (..., pixels)``: the mean of q(z|x), ``(..., latent_dim)``.

        The same method on :class:`Autoencoder` gives its deterministic code, so plots and
        the explorer treat both models alike. Introduced in lesson 6.
        """
        return self.encoder(x)[0]

    @property
    def latent_dim(self):
        return self.encoder.latent_dim

    @property
    def num_pixels(self):
        return self.encoder.num_pixels


class CodeEncoder(nnx.Module):
    """Deterministic encoder of a plain autoencoder: ``(..., pixels)`` to a code ``(..., latent_dim)``."""

    def __init__(self, num_pixels, hidden, latent_dim, *, rngs: nnx.Rngs):
        self.num_pixels, self.latent_dim = num_pixels, latent_dim
        self.net = MLP((num_pixels, *hidden, latent_dim), rngs=rngs)

    def __call__(self, x):
        _args.last_axis("x", x, self.num_pixels)
        return self.net(x)


class Autoencoder(nnx.Module):
    """A plain (deterministic) autoencoder: ``encoder(x)`` is the code z itself.

    Same layer sizes as :class:`VAE`; the decoder still outputs Bernoulli logits.
    Introduced in lesson 2.
    """

    kind = "ae"

    def __init__(self, num_pixels, hidden=(400,), latent_dim=20, *, rngs: nnx.Rngs):
        hidden = tuple(hidden)
        self.encoder = CodeEncoder(num_pixels, hidden, latent_dim, rngs=rngs)
        self.decoder = Decoder(latent_dim, hidden[::-1], num_pixels, rngs=rngs)

    def code(self, x):
        """The code of images ``x (..., pixels)``: ``encoder(x)``, ``(..., latent_dim)`` (as :meth:`VAE.code`)."""
        return self.encoder(x)

    latent_dim = VAE.latent_dim
    num_pixels = VAE.num_pixels
