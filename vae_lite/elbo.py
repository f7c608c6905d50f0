"""The evidence lower bound and importance-sampled log-evidence (lesson 4).

Both estimators take a ``log_joint(z) -> log p(x, z)`` for one latent vector ``z``
``(latent_dim,)``, so the same code serves the exact linear-Gaussian model, a 2-D
grid model and a trained VAE's decoder.
"""

import jax
import jax.numpy as jnp

from vae_lite.distributions import check_same_shape, log_normal_diag, reparameterize


def _log_weights(key, log_joint, mu, log_var, num_samples):
    """``log p(x, z_s) - log q(z_s)`` for ``num_samples`` draws z_s ~ q, shape ``(num_samples,)``."""
    check_same_shape("mu", mu, "log_var", log_var)
    if jnp.ndim(mu) != 1:
        raise ValueError(
            f"mu must be one latent vector (latent_dim,), got shape {jnp.shape(mu)}; "
            "use jax.vmap over data points."
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}.")
    z = reparameterize(key, mu, log_var, num_samples)  # (num_samples, latent_dim)
    return jax.vmap(log_joint)(z) - log_normal_diag(z, mu, log_var)


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
    return jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])
