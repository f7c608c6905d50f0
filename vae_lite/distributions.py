"""Log-densities, KL divergences and reparameterised sampling (core; lessons 1-5).

Every density is written for one example and summed over the last axis, so the
same function serves a single vector ``(dim,)`` and a batch ``(batch, dim)``.
"""

import jax
import jax.numpy as jnp

LOG_2PI = jnp.log(2.0 * jnp.pi)


def check_same_shape(name_a, a, name_b, b, fix=""):
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape (checked at trace time)."""
    if jnp.shape(a) != jnp.shape(b):
        hint = f" {fix}" if fix else ""
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}: "
            f"{jnp.shape(a)} and {name_b}: {jnp.shape(b)}.{hint}"
        )


def check_compatible(name_a, a, name_b, b, fix=""):
    """Raise ``ValueError`` unless the last axes agree and the leading axes broadcast."""
    shape_a, shape_b = jnp.shape(a), jnp.shape(b)
    try:
        ok = len(shape_a) > 0 and len(shape_b) > 0 and shape_a[-1] == shape_b[-1]
        jnp.broadcast_shapes(shape_a, shape_b)
    except ValueError:
        ok = False
    if not ok:
        hint = f" {fix}" if fix else ""
        raise ValueError(
            f"{name_a} {shape_a} and {name_b} {shape_b} must share the last axis and "
            f"broadcast in the leading ones.{hint}"
        )


def check_floating(name, a):
    """Raise ``ValueError`` unless ``a`` holds floating-point numbers."""
    dtype = jnp.result_type(a)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array, got dtype {dtype}. "
            f"Convert it first, e.g. {name}.astype(jnp.float32)."
        )


def check_gaussian_q(mu, log_var, num_samples=1):
    """Raise ``ValueError`` unless (mu, log_var) is one Gaussian q over a latent vector and S >= 1.

    Shared by the Monte Carlo estimators of lessons 4 and 5.
    """
    check_floating("mu", mu)
    check_same_shape("mu", mu, "log_var", log_var)
    if jnp.ndim(mu) != 1:
        raise ValueError(
            f"mu must be one latent vector (latent_dim,), got shape {jnp.shape(mu)}; "
            "use jax.vmap over data points."
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}.")


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
    check_floating("x", x)
    check_compatible("x", x, "mu", mu)
    check_compatible("x", x, "log_var", log_var, "Pass one log-variance per dimension.")
    return -0.5 * jnp.sum(LOG_2PI + log_var + (x - mu) ** 2 * jnp.exp(-log_var), axis=-1)


def log_normal_std(z):
    """Log-density of the standard normal prior N(0, I), summed over the last axis.

    Args:
        z: ``(..., dim)`` latent points.

    Returns:
        ``(...)`` log p(z). Introduced in lesson 2.
    """
    check_floating("z", z)
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
    check_floating("x", x)
    check_compatible("x", x, "logits", logits, "Flatten images to (batch, pixels) first.")
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
    check_floating("mu", mu)
    check_same_shape("mu", mu, "log_var", log_var)
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
    check_floating("mu", mu)
    check_same_shape("mu", mu, "log_var", log_var)
    shape = jnp.shape(mu) if num_samples is None else (num_samples, *jnp.shape(mu))
    eps = jax.random.normal(key, shape, dtype=jnp.result_type(mu))
    return mu + jnp.exp(0.5 * log_var) * eps
