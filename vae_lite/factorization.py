r"""The likelihood of a whole data set and when it factorises (lesson 1).

For a data set X = (x_1, ..., x_N) and model parameters theta,

.. math:: p(X | \theta) = \prod_{i=1}^N p(x_i | \theta)

holds when the points are i.i.d. *given* theta: no latent variable is shared by all
points (each x_i may still have its own local z_i). This module holds the simplest
image model for which that is true (independent Bernoulli pixels), a counter-example
with a shared global latent (a Beta prior on the pixel probabilities, integrated out
exactly), and the minibatch estimate that the factorisation makes unbiased.
"""

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln

from vae_lite import _args


def _check_images(name, x, one_pixel=False):
    """Raise unless ``x`` is float images ``(num_images, pixels)`` (or, with ``one_pixel``, also ``(N,)``)."""
    _args.floating(name, x)
    if not (one_pixel and jnp.ndim(x) == 1):
        _args.image_batch(name, x)


def _check_pixels(x, probs):
    _args.at_least("x's number of axes", jnp.ndim(x), 1, "x must be images (..., pixels), not a scalar.")
    _args.shape("probs", probs, jnp.shape(x)[-1:],
                f"One probability per pixel of x {jnp.shape(x)}: pass probs of shape (pixels,).")


def fit_pixel_probs(x, pseudo_count=1.0):
    r"""Fit independent Bernoulli pixel probabilities to binary images.

    .. math:: \hat p_j = \frac{\sum_i x_{ij} + \alpha}{N + 2\alpha}

    ``pseudo_count`` alpha = 0 gives the maximum-likelihood estimate (the pixel means);
    alpha = 1 (Laplace smoothing) keeps every probability strictly inside (0, 1), so a
    pixel that is always off in training does not give a test image log-probability -inf.

    Args:
        x: ``(num_images, pixels)`` binary images (float).
        pseudo_count: alpha >= 0.

    Returns:
        ``(pixels,)`` probabilities. Introduced in lesson 1.
    """
    _check_images("x", x)
    _args.in_range("pseudo_count", _args.number("pseudo_count", pseudo_count), 0, math.inf,
                   "Pass 0 for the maximum-likelihood estimate or 1 for Laplace smoothing.")
    return (jnp.sum(x, axis=0) + pseudo_count) / (x.shape[0] + 2 * pseudo_count)


def image_log_likelihood(x, probs):
    r"""Log-probability of binary images under independent Bernoulli pixels (per-pixel factorisation).

    .. math:: \log p(x | p) = \sum_{j=1}^D x_j \log p_j + (1 - x_j) \log(1 - p_j)

    Args:
        x: ``(..., pixels)`` binary images (float).
        probs: ``(pixels,)`` pixel probabilities in (0, 1).

    Returns:
        ``(...)`` log-probabilities, one per image. Introduced in lesson 1
        (exercise ``ex01_image_log_lik``).
    """
    _args.floating("x", x)
    _check_pixels(x, probs)
    return _bernoulli_pixels_log_lik(x, probs)


@jax.jit  # one fused loop: no (images, pixels) intermediates, whatever the size of x
def _bernoulli_pixels_log_lik(x, probs):
    # xlogy keeps 0 * log 0 = 0, so a probability of exactly 0 or 1 is fine where it is not contradicted
    return jnp.sum(jax.scipy.special.xlogy(x, probs) + jax.scipy.special.xlog1py(1 - x, -probs), axis=-1)


def dataset_log_likelihood(x, probs):
    r"""log p(X) of a whole data set under the i.i.d. per-pixel Bernoulli model.

    .. math:: \log p(X | p) = \sum_{i=1}^N \log p(x_i | p)

    Args:
        x: ``(num_images, pixels)`` binary images.
        probs: ``(pixels,)`` pixel probabilities.

    Returns:
        scalar. Introduced in lesson 1.
    """
    _check_images("x", x)
    return jnp.sum(image_log_likelihood(x, probs))


def beta_bernoulli_log_marginal(x, a=1.0, b=1.0):
    r"""Exact log p(X) when every pixel's probability theta_j is shared by ALL images and integrated out.

    .. math:: \log p(X) = \sum_j \log \int \prod_i \theta_j^{x_{ij}} (1-\theta_j)^{1-x_{ij}}
        \,\mathrm{Beta}(\theta_j; a, b)\, d\theta_j
        = \sum_j \log B(a + k_j, b + N - k_j) - \log B(a, b),
        \quad k_j = \textstyle\sum_i x_{ij}

    theta is a *global* latent variable: given it the images are independent, but
    integrated out it couples them, so log p(X) != sum_i log p(x_i).

    Args:
        x: ``(N,)`` one pixel across N images, or ``(N, pixels)`` images (each pixel
            with its own shared theta_j; the result sums over pixels).
        a, b: Beta prior parameters (> 0), scalars or ``(pixels,)``.

    Returns:
        scalar log p(x_1, ..., x_N). Introduced in lesson 1 (exercise ``ex01_shared_theta``).
    """
    _check_images("x", x, one_pixel=True)
    num_images = x.shape[0]
    k = jnp.sum(x, axis=0)  # () or (pixels,)
    return jnp.sum(betaln(a + k, b + num_images - k) - betaln(a, b))


def beta_bernoulli_single_log_marginals(x, a=1.0, b=1.0):
    r"""log p(x_i) of each image *on its own* under the same Beta-Bernoulli model.

    With N = 1 the integral is the prior mean: p(x_ij = 1) = a / (a + b), so

    .. math:: \log p(x_i) = \sum_j x_{ij} \log\frac{a}{a+b} + (1 - x_{ij}) \log\frac{b}{a+b}

    Args:
        x: ``(N, pixels)`` binary images.
        a, b: Beta prior parameters (> 0), scalars or ``(pixels,)``.

    Returns:
        ``(N,)`` log-marginals; their sum is what log p(X) would be if theta were not shared.
        Introduced in lesson 1.
    """
    _check_images("x", x)
    prior_mean = jnp.broadcast_to(a / (a + b), x.shape[-1:])
    return image_log_likelihood(x, prior_mean)


def minibatch_log_likelihood(key, log_likelihood, x, batch_size):
    r"""Unbiased minibatch estimate of a sum over data points.

    .. math:: \sum_{i=1}^N \ell(x_i) \approx \frac{N}{M} \sum_{i \in B} \ell(x_i),
        \quad B \text{ a uniformly random subset of size } M

    Valid only because log p(X) *is* a sum over points (the factorisation above).

    Args:
        key: a ``jax.random`` key choosing the minibatch (M distinct images, uniformly at random).
        log_likelihood: ``(M, pixels) -> (M,)`` per-point log-likelihoods.
        x: ``(N, pixels)`` the data set.
        batch_size: M, 1 <= M <= N.

    Returns:
        scalar estimate of sum_i log_likelihood(x)_i. Introduced in lesson 1.
    """
    _args.prng_key("key", key)
    _check_images("x", x)
    num_points = x.shape[0]
    batch_size = _args.count("batch_size", batch_size)
    _args.at_most("batch_size", batch_size, num_points,
                  f"a minibatch holds distinct images and x holds N = {num_points}; pass batch_size <= {num_points}.")
    # the M largest of N i.i.d. uniforms sit at a uniformly random M-subset of the indices
    # (as random.choice(replace=False), but O(N) instead of a full random permutation)
    idx = jax.lax.top_k(jax.random.uniform(key, (num_points,)), batch_size)[1]
    values = log_likelihood(x[idx])
    _args.shape("log_likelihood(x)", values, (batch_size,),
                "log_likelihood must return one value per image: sum over pixels, e.g. jnp.sum(..., axis=-1).")
    return num_points / batch_size * jnp.sum(values)
