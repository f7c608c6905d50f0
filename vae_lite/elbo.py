r"""The evidence lower bound and importance-sampled log-evidence (lesson 4).

The estimators take a ``log_joint(z) -> log p(x, z)`` for one latent vector ``z``
``(latent_dim,)``, so the same code serves the exact linear-Gaussian model, a 2-D
grid model and a trained VAE's decoder. q is always a Gaussian N(mu, diag e^{log_var})
with ``mu, log_var: (latent_dim,)``; batch over data points with ``jax.vmap``.

Two equivalent forms of the same bound (both derived in lesson 4):

.. math::
    \mathcal{L}(q) = \mathbb{E}_q[\log p(x, z)] + \mathbb{H}[q]
                   = \mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z)),
    \qquad \log p(x) = \mathcal{L}(q) + \mathrm{KL}(q \,\|\, p(z \mid x)).
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from vae_lite import _args
from vae_lite.distributions import (
    LOG_2PI,
    kl_normal_std,
    log_normal_diag,
    log_normal_std,
    reparameterize,
)
from vae_lite.posterior import SAMPLE_BLOCK, _per_sample, decoder_log_joint

# SAMPLE_BLOCK and _per_sample: the one blocking rule of the estimators, introduced with lesson 3's naive estimator.


def _log_weights(key, log_joint, mu, log_var, num_samples):
    """``log p(x, z_s) - log q(z_s)`` for ``num_samples`` draws z_s ~ q, shape ``(num_samples,)``."""
    _args.prng_key("key", key)
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    return _log_weights_compiled(key, _args.function("log_joint", log_joint), mu, log_var, num_samples)


# Compiled as one program: a decoder's (num_samples, pixels) intermediates are fused, not
# kept one per operation. log_joint is a Partial (see _args.function): one compilation per
# underlying function, shapes and sample count, not one per data point.
@functools.partial(jax.jit, static_argnames="num_samples")
def _log_weights_compiled(key, log_joint, mu, log_var, num_samples):
    z = reparameterize(key, mu, log_var, num_samples)  # (num_samples, latent_dim)
    values = _per_sample(log_joint, z)
    _args.one_value_per_sample("log_joint", values, num_samples)  # at trace time: costs nothing per call
    return values - log_normal_diag(z, mu, log_var)


def elbo(key, log_joint, mu, log_var, num_samples):
    r"""Monte Carlo ELBO of q = N(mu, diag e^{log_var}).

    .. math:: \mathcal{L}(q) = \mathbb{E}_{q(z)}[\log p(x, z) - \log q(z)]
        \approx \frac1S \sum_s \log p(x, z_s) - \log q(z_s)

    Args:
        key: a ``jax.random`` key.
        log_joint: ``z (latent_dim,) -> log p(x, z)`` (scalar).
        mu, log_var: ``(latent_dim,)`` parameters of q.
        num_samples: number S of reparameterised samples.

    Returns:
        scalar estimate (differentiable in ``mu`` and ``log_var``). Introduced in lesson 4.
    """
    return jnp.mean(_log_weights(key, log_joint, mu, log_var, num_samples))


def log_evidence_is(key, log_joint, mu, log_var, num_samples):
    r"""Importance-sampled log p(x) with q as the proposal (the IWAE bound).

    .. math:: \log \hat p(x) = \log \frac1S \sum_s \frac{p(x, z_s)}{q(z_s)}, \quad z_s \sim q

    A lower bound in expectation for every S (S = 1 is the ELBO) that tightens to
    log p(x) as S grows. Args as for :func:`elbo`. Introduced in lesson 4.
    """
    log_w = _log_weights(key, log_joint, mu, log_var, num_samples)
    return jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])  # log-mean-exp, stable


def gaussian_entropy(log_var):
    r"""Entropy of N(mu, diag e^{log_var}) in nats: :math:`\tfrac12 \sum_j (\log 2\pi e + \text{log\_var}_j)`.

    Args:
        log_var: ``(..., latent_dim)``.

    Returns:
        ``(...)``. Introduced in lesson 4.
    """
    _args.floating("log_var", log_var)
    return 0.5 * jnp.sum(LOG_2PI + 1.0 + log_var, axis=-1)


def elbo_entropy_form(key, log_joint, mu, log_var, num_samples):
    r"""ELBO as expected log joint (Monte Carlo) plus the entropy of q (closed form).

    .. math:: \mathcal{L}(q) = \mathbb{E}_q[\log p(x, z)] + \mathbb{H}[q]

    Same arguments as :func:`elbo`; with the same key it uses the same samples.
    Returns a scalar. Introduced in lesson 4.
    """
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    _args.prng_key("key", key)
    z = reparameterize(key, mu, log_var, num_samples)
    values = _per_sample(log_joint, z)
    _args.one_value_per_sample("log_joint", values, num_samples)
    return jnp.mean(values) + gaussian_entropy(log_var)


def elbo_kl_form(key, log_likelihood, mu, log_var, num_samples):
    r"""ELBO as expected reconstruction log-likelihood minus the closed-form KL to N(0, I).

    .. math:: \mathcal{L}(q) = \mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, \mathcal{N}(0, I))

    The neural-net reading: reconstruction term minus a regulariser.

    Args:
        key: a ``jax.random`` key.
        log_likelihood: ``z (latent_dim,) -> log p(x | z)`` (the prior must be N(0, I)).
        mu, log_var: ``(latent_dim,)`` parameters of q.
        num_samples: number S of samples for the reconstruction term.

    Returns:
        scalar. Introduced in lesson 4.
    """
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    _args.prng_key("key", key)
    z = reparameterize(key, mu, log_var, num_samples)
    values = _per_sample(log_likelihood, z)
    _args.one_value_per_sample("log_likelihood", values, num_samples, what="log p(x | z)")
    return jnp.mean(values) - kl_normal_std(mu, log_var)


def kl_normal_std_mc(key, mu, log_var, num_samples):
    r"""Monte Carlo estimate of KL(N(mu, diag e^{log_var}) || N(0, I)).

    .. math:: \mathrm{KL} \approx \frac1S \sum_s \log q(z_s) - \log p(z_s), \quad z_s \sim q

    Unbiased, but noisy; compare :func:`vae_lite.distributions.kl_normal_std`.
    Args as for :func:`elbo` (no ``log_joint``). Returns a scalar. Introduced in lesson 4.
    """
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    _args.prng_key("key", key)
    z = reparameterize(key, mu, log_var, num_samples)
    return jnp.mean(log_normal_diag(z, mu, log_var) - log_normal_std(z))


def kl_gaussians(mean_q, cov_q, mean_p, cov_p):
    r"""KL(N(mean_q, cov_q) || N(mean_p, cov_p)) for full covariance matrices, in closed form.

    .. math:: \tfrac12 \big[\operatorname{tr}(\Sigma_p^{-1}\Sigma_q) + (m_p - m_q)^\top
        \Sigma_p^{-1}(m_p - m_q) - d + \log\det\Sigma_p - \log\det\Sigma_q\big]

    Args:
        mean_q, mean_p: ``(d,)``.
        cov_q, cov_p: ``(d, d)`` symmetric positive definite.

    Returns:
        scalar (nats). Introduced in lesson 4 (the gap between log p(x) and the ELBO).
    """
    _args.ndim("mean_q", mean_q, 1, "Means are (d,) and covariances (d, d).")
    d = jnp.shape(mean_q)[0]
    for name, a, expected in (("mean_p", mean_p, (d,)), ("cov_q", cov_q, (d, d)), ("cov_p", cov_p, (d, d))):
        _args.shape(name, a, expected, f"mean_q is ({d},): means are (d,) and covariances (d, d).")
    chol_p = jnp.linalg.cholesky(cov_p)
    solve = lambda b: jax.scipy.linalg.cho_solve((chol_p, True), b)  # noqa: E731
    diff = mean_p - mean_q
    logdet_p = 2.0 * jnp.sum(jnp.log(jnp.diag(chol_p)))
    logdet_q = jnp.linalg.slogdet(cov_q)[1]
    return 0.5 * (jnp.trace(solve(cov_q)) + diff @ solve(diff) - d + logdet_p - logdet_q)


def _vae_log_weights(key, model, x, num_samples):
    """``(batch, num_samples)`` log-weights log p(x, z) - log q(z|x) for a VAE's encoder and decoder."""
    _args.prng_key("key", key)
    num_samples = _args.count("num_samples", num_samples)
    _args.image_batch("x", x)
    return _vae_log_weights_compiled(key, model, jnp.asarray(x), num_samples)


@functools.partial(nnx.jit, static_argnames="num_samples")  # one program per model and batch shape
def _vae_log_weights_compiled(key, model, x, num_samples):
    mu, log_var = model.encoder(x)  # (batch, latent_dim) each

    def one_image(inputs):
        key, x, mu, log_var = inputs
        return _log_weights(key, decoder_log_joint(model.decoder, x), mu, log_var, num_samples)

    # Images in blocks too, so that images x samples stays near SAMPLE_BLOCK rows at a time.
    images_per_block = max(1, min(x.shape[0], SAMPLE_BLOCK // num_samples))
    return jax.lax.map(one_image, (jax.random.split(key, x.shape[0]), x, mu, log_var), batch_size=images_per_block)


def vae_elbo(key, model, x, num_samples=1):
    r"""Per-image Monte Carlo ELBO of a VAE, with q(z|x) from its encoder.

    .. math:: \mathcal{L}(x_i) \approx \frac1S \sum_s \log p(x_i \mid z_s) + \log p(z_s) - \log q(z_s \mid x_i)

    Args:
        key: a ``jax.random`` key.
        model: a :class:`vae_lite.networks.VAE` (Bernoulli decoder, N(0, I) prior).
        x: ``(batch, pixels)`` binary images.
        num_samples: samples of z per image.

    Returns:
        ``(batch,)`` ELBOs in nats. Introduced in lesson 4.
    """
    return jnp.mean(_vae_log_weights(key, model, x, num_samples), axis=-1)


def vae_log_evidence_is(key, model, x, num_samples):
    """Per-image importance-sampled log p(x) ``(batch,)`` with the encoder's q(z|x) as proposal.

    Args as for :func:`vae_elbo`. Lesson 4's estimate (:func:`log_evidence_is`) for a batch of
    images; lesson 6 uses it for the trained VAE's IWAE bound.
    """
    log_w = _vae_log_weights(key, model, x, num_samples)
    return jax.nn.logsumexp(log_w, axis=-1) - jnp.log(num_samples)
