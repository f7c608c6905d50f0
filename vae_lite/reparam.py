r"""Gradients of an expectation: the score function vs the reparameterisation trick (lesson 5).

We want :math:`\nabla_{\mu,\,v} \mathbb{E}_{q}[f(z)]` for q = N(mu, diag e^{v}), v = log_var.
Both estimators below return one gradient estimate *per sample*, so a lesson can average
them (the estimate) and take their variance (its noise):

- score function (REINFORCE): :math:`f(z)\,\nabla \log q(z)`, z ~ q; needs only values of f; an optional
  constant baseline b gives :math:`(f(z) - b)\,\nabla \log q(z)`, still unbiased and often far less noisy;
- reparameterisation: z = mu + e^{v/2} eps, eps ~ N(0, I), :math:`\nabla f(\mu + e^{v/2}\varepsilon)`;
  needs f to be differentiable, and is usually far less noisy.

With the same key both use the same draws of z, so they can be compared sample by sample.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vae_lite import _args
from vae_lite.distributions import log_normal_diag, reparameterize


def _check_scalar_f(f, mu):
    d = jnp.shape(mu)[0]
    _args.scalar_of_latent("f", f, d, f"f must map one z ({d},) to a scalar, e.g. lambda z: jnp.sum(z**2).")


def score_function_grad(key, f, mu, log_var, num_samples, baseline=0.0):
    r"""Per-sample score-function (REINFORCE) estimates of the gradient of E_q[f(z)].

    .. math:: \hat g_s = \big(f(z_s) - b\big)\,\nabla_{\mu, v} \log q(z_s; \mu, v), \qquad z_s \sim q

    Any constant baseline ``b`` leaves the estimate unbiased, because the score has mean zero,
    :math:`\mathbb{E}_q[\nabla \log q] = \nabla \int q = 0`; a ``b`` near :math:`\mathbb{E}_q[f]`
    removes the part of f's noise that the score only multiplies. (A ``b`` that depends on z_s
    itself, such as the mean of f over a batch that includes z_s, would break this; take it from
    earlier or independent samples, e.g. a running average of f, as Pyro's SVI does, or give
    each sample the mean of f over the *other* samples of its batch: the leave-one-out baseline of
    lesson 5's exercise.)

    Args:
        key: a ``jax.random`` key.
        f: ``z (latent_dim,) -> scalar``; need not be differentiable (only its values are used).
        mu, log_var: ``(latent_dim,)`` parameters of q.
        num_samples: number S of samples.
        baseline: a scalar b subtracted from every f(z_s); 0 (the default) is plain REINFORCE.

    Returns:
        ``(grad_mu, grad_log_var)``, each ``(num_samples, latent_dim)``; their means over
        axis 0 are unbiased estimates of the gradient. Introduced in lesson 5.
    """
    _args.prng_key("key", key)
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    f = _args.function("f", f)
    _check_scalar_f(f, mu)
    _args.ndim("baseline", baseline, 0, "It is one number subtracted from every f(z), e.g. baseline=f(mu).")
    _args.finite("baseline", baseline)
    baseline = jnp.asarray(baseline, dtype=jnp.result_type(mu))
    return _score_function_grad(key, f, mu, log_var, num_samples, baseline)


# compiled: no (S, d) temporaries per op; f is a Partial (see _args.function), an argument, not a constant
@functools.partial(jax.jit, static_argnames="num_samples")
def _score_function_grad(key, f, mu, log_var, num_samples, baseline):
    z = jax.lax.stop_gradient(reparameterize(key, mu, log_var, num_samples))  # a sample, not a function of mu
    score = jax.vmap(jax.grad(log_normal_diag, argnums=(1, 2)), in_axes=(0, None, None))(z, mu, log_var)
    values = jax.vmap(f)(z)[:, None] - baseline  # (S, 1)
    return values * score[0], values * score[1]


def reparam_grad(key, f, mu, log_var, num_samples):
    r"""Per-sample reparameterisation estimates of the gradient of E_q[f(z)].

    .. math:: \hat g_s = \nabla_{\mu, v}\, f\big(\mu + e^{v/2} \varepsilon_s\big), \qquad \varepsilon_s \sim \mathcal{N}(0, I)

    Args as for :func:`score_function_grad`, but ``f`` must be differentiable.

    Returns:
        ``(grad_mu, grad_log_var)``, each ``(num_samples, latent_dim)``. Introduced in lesson 5.
    """
    _args.prng_key("key", key)
    mu, log_var, num_samples = _args.gaussian_q(mu, log_var, num_samples)
    f = _args.function("f", f)
    _check_scalar_f(f, mu)
    return _reparam_grad(key, f, mu, log_var, num_samples)


@functools.partial(jax.jit, static_argnames="num_samples")
def _reparam_grad(key, f, mu, log_var, num_samples):
    # the same eps as reparameterize(key, mu, log_var, num_samples), so z_s matches score_function_grad
    eps = jax.random.normal(key, (num_samples, *jnp.shape(mu)), dtype=jnp.result_type(mu))

    def f_of_params(mu, log_var, eps):
        return f(mu + jnp.exp(0.5 * log_var) * eps)

    return jax.vmap(jax.grad(f_of_params, argnums=(0, 1)), in_axes=(None, None, 0))(mu, log_var, eps)


class GradientVariances(NamedTuple):
    """Per-sample variances of the two estimators, for one coordinate of a 1-D q."""

    score_mu: jnp.ndarray
    score_log_var: jnp.ndarray
    reparam_mu: jnp.ndarray
    reparam_log_var: jnp.ndarray


def exact_grad_linear(mu, log_var):
    r"""Exact gradient of E_q[z] = mu: ``(d/dmu, d/dlog_var) = (1, 0)``. Lesson 5."""
    return jnp.ones_like(mu), jnp.zeros_like(log_var)


def exact_grad_square(mu, log_var):
    r"""Exact gradient of E_q[z^2] = mu^2 + sigma^2: ``(2 mu, sigma^2)`` (since d e^v / dv = e^v). Lesson 5."""
    return 2.0 * mu, jnp.exp(log_var)


def _with_baseline(variance, baseline, f_score_sq, score_sq):
    # Var[(f - b) s] = Var[f s] - 2 b E[f s^2] + b^2 E[s^2]  (E[(f - b) s] = E[f s] does not move)
    return variance - 2 * baseline * f_score_sq + baseline**2 * score_sq


def variances_linear(mu, log_var, baseline=0.0):
    r"""Closed-form per-sample variances for f(z) = z, q = N(mu, sigma^2) (1-D, elementwise).

    With z = mu + sigma eps:
    score mu: :math:`\mu^2/\sigma^2 + 2`; score log_var: :math:`\mu^2/2 + 5\sigma^2/2`;
    reparam mu: 0 (the estimate is always exactly 1); reparam log_var: :math:`\sigma^2/4`.
    With a baseline b the score-function variances become
    :math:`\mathrm{Var}_0 - 2b\,\mathbb{E}[f s^2] + b^2\,\mathbb{E}[s^2]` for the score s, where
    :math:`\mathbb{E}[f s_\mu^2] = \mu/\sigma^2`, :math:`\mathbb{E}[s_\mu^2] = 1/\sigma^2`,
    :math:`\mathbb{E}[f s_v^2] = \mu/2`, :math:`\mathbb{E}[s_v^2] = 1/2` (b = mu gives 2 and
    :math:`5\sigma^2/2`). Lesson 5.
    """
    var = jnp.exp(log_var)
    return GradientVariances(
        _with_baseline(mu**2 / var + 2.0, baseline, mu / var, 1 / var),
        _with_baseline(mu**2 / 2 + 2.5 * var, baseline, mu / 2, 0.5),
        jnp.zeros_like(mu),
        var / 4,
    )


def variances_square(mu, log_var, baseline=0.0):
    r"""Closed-form per-sample variances for f(z) = z^2, q = N(mu, sigma^2) (1-D, elementwise).

    Using the Gaussian moments E[eps^2, eps^4, eps^6, eps^8] = 1, 3, 15, 105:
    score mu: :math:`\mu^4/\sigma^2 + 14\mu^2 + 15\sigma^2`;
    score log_var: :math:`\mu^4/2 + 15\mu^2\sigma^2 + 18.5\sigma^4`;
    reparam mu (2z): :math:`4\sigma^2`; reparam log_var (z sigma eps): :math:`\mu^2\sigma^2 + 2\sigma^4`.
    At mu = 0, sigma = 1: 15, 18.5, 4 and 2.
    With a baseline b (see :func:`variances_linear`), using
    :math:`\mathbb{E}[f s_\mu^2] = \mu^2/\sigma^2 + 3` and :math:`\mathbb{E}[f s_v^2] = \mu^2/2 + 5\sigma^2/2`;
    at mu = 0, sigma = 1 and b = E_q[z^2] = 1 the score-function variances fall to 10 and 14. Lesson 5.
    """
    var = jnp.exp(log_var)
    return GradientVariances(
        _with_baseline(mu**4 / var + 14 * mu**2 + 15 * var, baseline, mu**2 / var + 3, 1 / var),
        _with_baseline(mu**4 / 2 + 15 * mu**2 * var + 18.5 * var**2, baseline, mu**2 / 2 + 2.5 * var, 0.5),
        4 * var,
        mu**2 * var + 2 * var**2,
    )
