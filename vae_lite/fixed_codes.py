r"""A decoder taught chosen pictures at chosen codes (lesson 2).

The notes: *you can train a network to produce a picture of a cat for some arbitrarily chosen
latent values and a specific other picture (for example of a dog) for some other values.*
:func:`fit_decoder_to_codes` does exactly that. Given K codes :math:`z_k` (any points you like)
and K binary images :math:`x_k`, it fits a decoder :math:`f_\theta` (``networks.Decoder``) by
maximising the Bernoulli log-likelihood of each image at its own code,

.. math::
    \frac1K \sum_{k=1}^K \log p_\theta(x_k \mid z_k),
    \qquad \log p_\theta(x \mid z) = \sum_j x_j \ell_j - \operatorname{softplus}(\ell_j),
    \quad \ell = f_\theta(z),

with Adam. Nothing in that objective says what the decoder should draw *between* the codes:
the pictures there come from the network's smoothness alone. A VAE's training is what gives
every code of the prior a meaning; this module shows the mapping on its own.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vae_lite import _args
from vae_lite.distributions import log_bernoulli
from vae_lite.networks import Decoder


class FittedDecoder(NamedTuple):
    """The result of :func:`fit_decoder_to_codes`."""

    decoder: Decoder  # f_theta: codes (..., d) -> pixel logits (..., D)
    log_likelihood: jax.Array  # (num_steps + 1,): mean over k of log p(x_k | z_k) before each step, then at the end


def fit_decoder_to_codes(key, codes, images, *, hidden=(128,), num_steps=300, learning_rate=1e-2):
    """Fit a fresh decoder so that it draws ``images[k]`` at ``codes[k]`` (Adam on the mean log-likelihood).

    Args:
        key: a ``jax.random`` key (the decoder's initial weights).
        codes: ``(K, d)`` the chosen codes, all different.
        images: ``(K, D)`` binary images (0/1), one per code.
        hidden: the decoder's hidden layer widths.
        num_steps: Adam steps (full batch: all K pairs each step).
        learning_rate: Adam's step size.

    Returns:
        a :class:`FittedDecoder`. Introduced in lesson 2.
    """
    _args.prng_key("key", key)
    codes, images = _args.float_array("codes", codes), _args.float_array("images", images)
    num_steps = _args.count("num_steps", num_steps)
    _args.ndim("codes", codes, 2, "Pass one code per image, (K, d).")
    _args.image_batch("images", images)
    _args.equal("the number of images", len(images), len(codes), "Pass one code per image (the same K >= 1).")
    _args.count("the number of codes", len(codes))
    _args.finite("codes", codes, "Choose finite codes.")
    _args.binary("images", images, "Binarise them first, e.g. with data.binarize_fixed.")
    _args.distinct_rows("codes", codes, "a decoder draws one picture per code, so give every image its own code.")
    decoder = Decoder(codes.shape[1], tuple(hidden), images.shape[1], rngs=nnx.Rngs(params=key))
    graph, params = nnx.split(decoder)
    history, params = _fit(graph, params, codes, images, num_steps, float(learning_rate))
    return FittedDecoder(nnx.merge(graph, params), history)


def _mean_log_likelihood(graph, params, codes, images):
    return jnp.mean(log_bernoulli(images, nnx.merge(graph, params)(codes)))


@functools.partial(jax.jit, static_argnames=("graph", "num_steps"))
def _fit(graph, params, codes, images, num_steps, learning_rate):
    optimizer = optax.adam(learning_rate)

    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(_mean_log_likelihood, argnums=1)(graph, params, codes, images)
        updates, state = optimizer.update(jax.tree.map(jnp.negative, grads), state, params)
        return (optax.apply_updates(params, updates), state), value

    (params, _), history = jax.lax.scan(step, (params, optimizer.init(params)), length=num_steps)
    final = _mean_log_likelihood(graph, params, codes, images)
    return jnp.append(history, final), params
