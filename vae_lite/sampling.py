r"""Latent-variable models and ancestral sampling from p(x, z) = p(z) p(x | z) (lesson 2).

Two generative stories with the same shape:

* a discrete latent, the mixture of Bernoullis: z ~ Categorical(w), x_j | z ~ Bernoulli(p_{z j});
* a continuous latent and a decoder network: z ~ N(0, I), x_j | z ~ Bernoulli(sigmoid(decoder(z))_j).

Ancestral sampling draws the parent first, then the child given the parent. The mixture
is fitted by expectation-maximisation (EM), one compiled ``jax.lax.scan``. A plain
autoencoder's decoder becomes a generator the same way once its codes get a density: the
Gaussian fitted to them (:func:`sample_fitted_gaussian`).
"""

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vae_lite import _args


def _check_mixture(weights, probs, x=None):
    fix = "Pass weights (K,) and probs (K, pixels): one weight and one row of pixel probabilities per component."
    _args.ndim("weights", weights, 1, fix)
    _args.ndim("probs", probs, 2, fix)
    _args.equal("probs' number of rows", jnp.shape(probs)[0], jnp.shape(weights)[0],
                f"weights and probs must have the same K (components); got weights {jnp.shape(weights)}. {fix}")
    if x is not None:
        _args.last_axis("x", x, jnp.shape(probs)[1],
                        f"x must match probs {jnp.shape(probs)}; flatten images first: x.reshape(len(x), -1).")


def _logit(probs):
    return jnp.log(probs) - jnp.log1p(-probs)


def sample_mixture(key, weights, probs, num_samples):
    r"""Ancestral samples from a mixture of Bernoullis.

    .. math:: z_n \sim \mathrm{Categorical}(w), \qquad x_{nj} \mid z_n \sim \mathrm{Bernoulli}(p_{z_n j})

    Args:
        key: a ``jax.random`` key.
        weights: ``(K,)`` mixture weights (non-negative, summing to one).
        probs: ``(K, pixels)`` pixel probabilities of each component.
        num_samples: n.

    Returns:
        ``(z (n,) int32 component ids, x (n, pixels) float32 in {0, 1})``.
        Introduced in lesson 2 (exercise ``ex02_mixture_sample``).
    """
    _args.prng_key("key", key)
    _check_mixture(weights, probs)
    key_z, key_x = jax.random.split(key)
    z = jax.random.categorical(key_z, jnp.log(weights), shape=(_args.count("num_samples", num_samples),))
    x = jax.random.bernoulli(key_x, probs[z]).astype(jnp.float32)
    return z.astype(jnp.int32), x


def component_log_likelihoods(x, weights, probs):
    r"""log w_k + log p(x | z = k) for every component: ``(..., pixels) -> (..., K)``.

    .. math:: \log w_k + \sum_j x_j \log p_{kj} + (1 - x_j) \log(1 - p_{kj})

    Introduced in lesson 2.
    """
    _check_mixture(weights, probs, x)
    # one matmul instead of an (..., K, pixels) array: x.log p + (1 - x).log(1 - p) = x.logit(p) + sum log(1 - p)
    return x @ _logit(probs).T + jnp.sum(jnp.log1p(-probs), axis=-1) + jnp.log(weights)


def mixture_log_likelihood(x, weights, probs):
    r"""log p(x) of a mixture of Bernoullis, the discrete latent summed out.

    .. math:: \log p(x) = \log \sum_k w_k \prod_j p_{kj}^{x_j} (1 - p_{kj})^{1 - x_j}

    The sum over k is a ``logsumexp``: each term is ~e^{-100} for an MNIST image.

    Args:
        x: ``(..., pixels)`` binary images.
        weights: ``(K,)``; probs: ``(K, pixels)`` in (0, 1).

    Returns:
        ``(...)`` log-probabilities. Introduced in lesson 2.
    """
    return jax.nn.logsumexp(component_log_likelihoods(x, weights, probs), axis=-1)


def responsibilities(x, weights, probs):
    """Posterior over the discrete latent, p(z = k | x): ``(..., pixels) -> (..., K)``. Lesson 2."""
    return jax.nn.softmax(component_log_likelihoods(x, weights, probs), axis=-1)


class MixtureFit(NamedTuple):
    """Result of :func:`fit_mixture_em`.

    Attributes:
        weights: ``(K,)``; probs: ``(K, pixels)``.
        log_likelihood: ``(num_iters + 1,)`` mean log p(x_i) per image before each
            iteration and after the last.
        objective: ``(num_iters + 1,)`` what EM increases monotonically: the mean
            log-likelihood plus the Beta(1 + alpha, 1 + alpha) log-prior of probs divided by N.
    """

    weights: jnp.ndarray
    probs: jnp.ndarray
    log_likelihood: jnp.ndarray
    objective: jnp.ndarray


@partial(jax.jit, static_argnames=("num_components", "num_iters"))
def _fit_mixture_em(key, x, num_components, num_iters, pseudo_count):
    num_points = x.shape[0]
    # start each component at a training image, softened into [0.25, 0.75], chosen like k-means++:
    # each new one with probability proportional to its squared distance from those already chosen
    keys = jax.random.split(key, num_components)
    chosen = [jax.random.randint(keys[0], (), 0, num_points)]
    min_sq_dist = jnp.sum((x - x[chosen[0]]) ** 2, axis=-1)
    for k in range(1, num_components):
        chosen.append(jax.random.categorical(keys[k], jnp.log(min_sq_dist + 1e-12)))
        min_sq_dist = jnp.minimum(min_sq_dist, jnp.sum((x - x[chosen[-1]]) ** 2, axis=-1))
    probs = 0.25 + 0.5 * x[jnp.stack(chosen)]
    weights = jnp.full((num_components,), 1.0 / num_components)

    def evaluate(weights, probs):
        log_joint = component_log_likelihoods(x, weights, probs)  # (N, K)
        log_px = jax.nn.logsumexp(log_joint, axis=-1)
        log_prior = pseudo_count * jnp.sum(jnp.log(probs) + jnp.log1p(-probs))
        mean_ll = jnp.mean(log_px)
        return jnp.exp(log_joint - log_px[:, None]), mean_ll, mean_ll + log_prior / num_points

    def step(params, _):
        weights, probs = params
        resp, mean_ll, objective = evaluate(weights, probs)  # E-step
        counts = jnp.sum(resp, axis=0)  # (K,)
        weights = counts / num_points  # M-step
        probs = (resp.T @ x + pseudo_count) / (counts[:, None] + 2 * pseudo_count)
        return (weights, probs), (mean_ll, objective)

    (weights, probs), (lls, objectives) = jax.lax.scan(step, (weights, probs), None, length=num_iters)
    _, last_ll, last_objective = evaluate(weights, probs)
    return MixtureFit(weights, probs, jnp.append(lls, last_ll), jnp.append(objectives, last_objective))


def fit_mixture_em(key, x, num_components, num_iters=30, pseudo_count=1.0):
    r"""Fit a mixture of Bernoullis to binary images by expectation-maximisation.

    E-step: responsibilities r_ik = p(z_i = k | x_i). M-step:

    .. math:: w_k = \frac{1}{N}\sum_i r_{ik}, \qquad
        p_{kj} = \frac{\sum_i r_{ik} x_{ij} + \alpha}{\sum_i r_{ik} + 2\alpha}

    Each iteration cannot decrease ``objective`` (the log-likelihood plus a
    Beta(1 + alpha, 1 + alpha) prior on each p_kj that keeps them inside (0, 1)).

    Args:
        key: a ``jax.random`` key choosing the starting images (k-means++ style).
        x: ``(N, pixels)`` binary images.
        num_components: K.
        num_iters: EM iterations (one compiled scan).
        pseudo_count: alpha > 0.

    Returns:
        a :class:`MixtureFit`. Introduced in lesson 2.
    """
    _args.prng_key("key", key)
    _args.floating("x", x)
    _args.image_batch("x", x)
    num_components, num_iters = _args.count("num_components", num_components), _args.count("num_iters", num_iters)
    _args.at_most("num_components", num_components, x.shape[0],
                  f"each component starts at its own image and x holds N = {x.shape[0]}; pass at most {x.shape[0]}.")
    _args.in_range("pseudo_count", _args.number("pseudo_count", pseudo_count), 0, math.inf,
                   "A probability of exactly 0 or 1 gives log 0; pass e.g. pseudo_count=1.0.", closed=False)
    return _fit_mixture_em(key, jnp.asarray(x), num_components, num_iters, float(pseudo_count))


def ancestral_sample(key, decoder, latent_dim, num_samples):
    r"""Ancestral samples from a decoder model: z ~ N(0, I), then x ~ Bernoulli(sigmoid(decoder(z))).

    Args:
        key: a ``jax.random`` key.
        decoder: maps ``(num_samples, latent_dim)`` to pixel logits ``(num_samples, pixels)``
            (e.g. a trained :class:`vae_lite.networks.Decoder`).
        latent_dim: d.
        num_samples: n.

    Returns:
        ``(z (n, d), x (n, pixels) float32 in {0, 1})``; ``jax.nn.sigmoid(decoder(z))``
        gives the mean images. Introduced in lesson 2.
    """
    _args.prng_key("key", key)
    num_samples, latent_dim = _args.count("num_samples", num_samples), _args.count("latent_dim", latent_dim)
    key_z, key_x = jax.random.split(key)
    z = jax.random.normal(key_z, (num_samples, latent_dim))
    logits = decoder(z)
    fix = "decoder must map z (n, latent_dim) to pixel logits (n, pixels), one row per code."
    _args.ndim("decoder(z)", logits, 2, fix)
    _args.equal("decoder(z)'s number of rows", jnp.shape(logits)[0], num_samples, fix)
    return z, jax.random.bernoulli(key_x, jax.nn.sigmoid(logits)).astype(jnp.float32)


def nearest_distance(x, reference, batch_size=256):
    r"""Euclidean distance from each image to its nearest neighbour in a reference set.

    .. math:: d_i = \min_n \lVert x_i - r_n \rVert_2

    A tempting sample-quality score (a generated digit that looks like a digit lies close
    to some training image) with a known flaw: it rewards blur, since a grey smear is never
    far from any training image; lesson 2 shows blurred digits scoring closer than real ones
    and judges samples with :func:`vae_lite.classifier.confident_share` instead. Batched over
    ``x`` to bound memory at ``batch_size * N``.

    Args:
        x: ``(n, pixels)`` images; reference: ``(N, pixels)``.

    Returns:
        ``(n,)`` distances. Introduced in lesson 2.
    """
    _args.floating("x", x)
    _args.image_batch("x", x)
    _args.image_batch("reference", reference)
    _args.equal("reference's pixels", jnp.shape(reference)[1], jnp.shape(x)[1],
                f"x {jnp.shape(x)} and reference {jnp.shape(reference)} must have the same pixels; "
                "flatten both the same way.")
    reference = jnp.asarray(reference, dtype=x.dtype)
    ref_sq = jnp.sum(reference**2, axis=-1)

    def one(xi):
        # |x - r|^2 = |x|^2 + |r|^2 - 2 x.r, clipped at 0 against round-off
        return jnp.sqrt(jnp.maximum(jnp.min(ref_sq - 2 * reference @ xi) + xi @ xi, 0.0))

    return jax.lax.map(one, jnp.asarray(x), batch_size=batch_size)


def moment_matched_kl(z):
    r"""KL(N(m, C) || N(0, I)) for the Gaussian with the sample mean m and covariance C of codes ``z``.

    .. math:: \tfrac12\big[\operatorname{tr} C + m^\top m - d - \log\det C\big]

    A one-number summary of how far a cloud of codes is from the prior N(0, I): about 0
    (up to sampling noise, ~d(d+3)/(4n)) for samples of N(0, I); large when the codes are
    shifted, scaled or correlated. (Zero is necessary, not sufficient, for normality.)

    Args:
        z: ``(n, d)`` codes, n > d.

    Returns:
        scalar in nats. Introduced in lesson 2.
    """
    _args.floating("z", z)
    _args.ndim("z", z, 2, "Pass codes (n, d), one per row; for one latent dimension z.reshape(-1, 1).")
    _args.at_least("z's number of codes n", z.shape[0], z.shape[1] + 1,
                   f"the covariance of d = {z.shape[1]} dimensions needs n > d codes to be invertible; pass more codes.")
    mean = jnp.mean(z, axis=0)
    cov = jnp.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
    _, log_det = jnp.linalg.slogdet(cov)
    return 0.5 * (jnp.trace(cov) + mean @ mean - z.shape[1] - log_det)


def sample_fitted_gaussian(key, codes, num_samples):
    r"""Samples from the Gaussian fitted to a cloud of codes: their mean and full covariance.

    .. math:: m = \frac1n \sum_i z_i, \qquad S = \frac1n \sum_i (z_i - m)(z_i - m)^\top, \qquad
        z = m + A\varepsilon, \;\; \varepsilon \sim \mathcal N(0, I_d), \;\; A A^\top = S

    The maximum-likelihood Gaussian N(m, S) of the codes, and draws from it: z = m + A eps has
    mean m and covariance A A^T = S for any square root A of S. Here A = U diag(sqrt(lambda)) from
    the eigendecomposition S = U diag(lambda) U^T, which exists also when S is singular (codes that
    fill fewer than d directions); round-off eigenvalues below 0 are set to 0. Lesson 2 uses it as a
    fair generator for a plain autoencoder: decode samples of the simplest density fitted to the
    codes its encoder actually produces, instead of samples of N(0, I).

    Args:
        key: a ``jax.random`` key.
        codes: ``(n, d)`` codes, n >= 2 (e.g. ``autoencoder.code(x)``).
        num_samples: how many draws.

    Returns:
        ``(num_samples, d)`` draws of N(m, S). Introduced in lesson 2 (exercise ``ex02_fair_generator``).
    """
    _args.prng_key("key", key)
    _args.floating("codes", codes)
    fix = "Pass codes (n, d) with n >= 2 codes, one per row; for one latent dimension codes.reshape(-1, 1)."
    _args.ndim("codes", codes, 2, fix)
    _args.at_least("codes' number of rows n", jnp.shape(codes)[0], 2, f"a covariance needs n >= 2 codes. {fix}")
    _args.finite("codes", codes)
    num_samples = _args.count("num_samples", num_samples)
    codes = jnp.asarray(codes)
    mean = jnp.mean(codes, axis=0)  # (d,)
    centred = codes - mean  # centring first keeps float32 accurate when |m| is large
    cov = centred.T @ centred / codes.shape[0]  # (d, d)
    eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
    root = eigenvectors * jnp.sqrt(jnp.maximum(eigenvalues, 0.0))  # (d, d), root @ root.T = cov
    eps = jax.random.normal(key, (num_samples, codes.shape[1]), dtype=codes.dtype)
    return mean + eps @ root.T
