"""Log-densities, KL divergences and reparameterised sampling (core; lessons 1-5).

Every density is written for one example and summed over the last axis, so the
same function serves a single vector ``(dim,)`` and a batch ``(batch, dim)``.

float32 range: e^{log_var} overflows beyond |log_var| ~ 88 and mu^2 beyond |mu| ~ 1e19, so
concrete arguments with |log_var| > 80 or |mu| > 1e8 (or NaN/inf) are refused with a
``ValueError`` instead of returning inf or NaN (inside ``jax.jit`` the values are not
known and are not checked).
"""

import jax
import jax.numpy as jnp

from vae_lite import _args

LOG_2PI = jnp.log(2.0 * jnp.pi)


def log_normal_diag(x, mu, log_var):
    r"""Log-density of a diagonal Gaussian, summed over the last axis.

    .. math:: \log \mathcal{N}(x; \mu, \operatorname{diag} e^{\text{log\_var}})
        = -\tfrac12 \sum_j \big[\log 2\pi + \text{log\_var}_j + (x_j-\mu_j)^2 e^{-\text{log\_var}_j}\big]

    Args:
        x: ``(..., dim)`` points.
        mu: ``(..., dim)`` means (leading axes broadcast against ``x``).
        log_var: ``(..., dim)`` log-variances (leading axes broadcast).

    Returns:
        ``(...)`` log-densities. Introduced in lesson 3.
    """
    _args.floating("x", x)
    _args.compatible("x", x, "mu", mu)
    _args.compatible("x", x, "log_var", log_var, "Pass one log-variance per dimension.")
    _args.log_variance("log_var", log_var)
    return -0.5 * jnp.sum(LOG_2PI + log_var + (x - mu) ** 2 * jnp.exp(-log_var), axis=-1)


def log_normal_std(z):
    """Log-density of the standard normal prior N(0, I), summed over the last axis.

    Args:
        z: ``(..., dim)`` latent points.

    Returns:
        ``(...)`` log p(z). Introduced in lesson 2.
    """
    _args.floating("z", z)
    return -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)


def log_bernoulli(x, logits):
    r"""Log-probability of binary (or [0, 1]) pixels under Bernoulli(sigmoid(logits)).

    .. math:: \sum_j x_j \ell_j - \operatorname{softplus}(\ell_j)

    Written with ``softplus`` so that it stays finite for logits of any size
    (``log sigmoid`` of a large negative logit would underflow to ``-inf``).

    Args:
        x: ``(..., dim)`` pixels in [0, 1].
        logits: ``(..., dim)`` unnormalised log-odds (leading axes broadcast against ``x``).

    Returns:
        ``(...)`` log-probabilities. Introduced in lesson 1.
    """
    _args.floating("x", x)
    _args.compatible("x", x, "logits", logits, "Flatten images to (batch, pixels) first.")
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def kl_normal_std(mu, log_var):
    r"""KL(N(mu, diag e^{log_var}) || N(0, I)) in closed form, summed over the last axis.

    .. math:: \tfrac12 \sum_j \big[\mu_j^2 + e^{\text{log\_var}_j} - 1 - \text{log\_var}_j\big]

    Args:
        mu: ``(..., dim)`` means.
        log_var: ``(..., dim)`` log-variances, same shape as ``mu``.

    Returns:
        ``(...)`` KL divergences in nats (>= 0). Introduced in lesson 4.
    """
    _args.floating("mu", mu)
    _args.same_shape("mu", mu, "log_var", log_var)
    _args.location("mu", mu)
    _args.log_variance("log_var", log_var)
    return 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def reparameterize(key, mu, log_var, num_samples=None):
    r"""Draw z = mu + sigma * eps with eps ~ N(0, I), differentiable in mu and log_var.

    Args:
        key: a ``jax.random`` key.
        mu: ``(..., dim)`` means.
        log_var: ``(..., dim)`` log-variances, same shape as ``mu``.
        num_samples: ``None`` for one sample shaped like ``mu``; an int ``S`` for
            ``(S, ..., dim)`` samples.

    Returns:
        ``z`` with ``mu``'s shape, or ``(num_samples, *mu.shape)``. Introduced in lesson 5.
    """
    _args.prng_key("key", key)
    _args.floating("mu", mu)
    _args.same_shape("mu", mu, "log_var", log_var)
    _args.location("mu", mu)
    _args.log_variance("log_var", log_var)
    if num_samples is not None:
        num_samples = _args.count("num_samples", num_samples)
    shape = jnp.shape(mu) if num_samples is None else (num_samples, *jnp.shape(mu))
    eps = jax.random.normal(key, shape, dtype=jnp.result_type(mu))
    return mu + jnp.exp(0.5 * log_var) * eps
