r"""Mean-field (per-datapoint) versus amortized inference, and the gaps between them (lesson 7).

"Mean-field" here means one set of variational parameters per data point,
:math:`\lambda_i = (\mu_i, \log\sigma^2_i)` of a factorised Gaussian
:math:`q_{\lambda_i}(z) = \mathcal N(\mu_i, \operatorname{diag}\sigma^2_i)`, each optimised
directly for its own point; amortized inference instead has an encoder map any x to its λ.

Per-point log joints take the data point explicitly: ``point_log_joint(x_i, z) -> log p(x_i, z)`` (scalar,
``x_i`` one data point, ``z (latent_dim,)``), so one compiled optimiser serves every point
of a data set. Plain functions work; :func:`vae_point_log_joint` and :meth:`vae_lite.posterior.LinearGaussian.point_log_joint`
wrap a model as a ``jax.tree_util.Partial`` so its weights enter the compiled program as
arguments rather than baked-in constants. Compilations are reused while the same log-joint
object, shapes, ``num_samples`` and ``check_every`` come back.

A richer family, to measure how much of the approximation gap is the family's diagonal: full-covariance
Gaussians q = N(m, L Lᵀ), L lower-triangular with a positive diagonal (their Cholesky factor), sampled as
z = m + L ε: :func:`full_covariance_elbo`, :func:`full_covariance_log_evidence_is` and, per data point
like :func:`fit_mean_field`, :func:`fit_full_covariance`.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from vae_lite import _args
from vae_lite import elbo as elbo_lib
from vae_lite.distributions import LOG_2PI
from vae_lite.posterior import decoder_log_joint


def _decoder(decoder, x, z):
    return decoder_log_joint(decoder, x)(z)


def vae_point_log_joint(decoder):
    """``(x_i, z) -> log p(x_i | z) + log p(z)`` of a Bernoulli decoder, standard normal prior. Lesson 7."""
    return Partial(_decoder, decoder)


def _as_partial(point_log_joint):
    return _args.function("point_log_joint", point_log_joint, "(x_i, z) -> scalar")


def _check_params(x, mu, log_var, fix="Pass one row of (mu, log_var) per data point."):
    fix = f"Expected x (N, ...) with mu and log_var both (N, latent_dim). {fix}"
    _args.at_least("x's number of axes", jnp.ndim(x), 1, fix)
    _args.ndim("mu", mu, 2, fix)
    _args.same_shape("mu", mu, "log_var", log_var, fix)
    _args.equal("mu's number of rows", jnp.shape(mu)[0], jnp.shape(x)[0], fix)


def _per_point(estimator, key, point_log_joint, x, mu, log_var, num_samples):
    """``estimator`` (an :mod:`vae_lite.elbo` function) for every point, ``(N,)``; one key per point."""
    keys = jax.random.split(key, x.shape[0])
    one = lambda k, xi, m, lv: estimator(k, lambda z: point_log_joint(xi, z), m, lv, num_samples)  # noqa: E731
    return jax.vmap(one)(keys, x, mu, log_var)


class MeanFieldFit(NamedTuple):
    """Result of :func:`fit_mean_field`.

    Attributes:
        mu, log_var: ``(N, latent_dim)`` fitted per-point parameters λ_i.
        elbo_trace: ``(num_steps,)`` the Monte Carlo ELBO averaged over points at each step
            (the noisy estimate the gradient was taken from; re-estimate the final ELBO with
            :func:`elbo_per_point` and more samples).
        num_steps: number of optimisation steps taken.
        converged: whether the plateau rule stopped the run before ``num_steps``.
    """

    mu: jnp.ndarray
    log_var: jnp.ndarray
    elbo_trace: np.ndarray
    num_steps: int
    converged: bool


def _chunk(
    params, opt_state, key, first_step, num_steps, learning_rate, x, point_log_joint, *, length, num_samples
):
    """``length`` Adam steps (steps at or past ``num_steps`` are skipped) on every point at once."""
    optimizer = optax.adam(learning_rate)

    def negative_elbo(params, step_key):
        per_point = _per_point(elbo_lib.elbo, step_key, point_log_joint, x, *params, num_samples)
        return -jnp.sum(per_point), jnp.mean(per_point)  # points are independent: sum = per-point steps

    def step(carry, i):
        def update(carry):
            params, opt_state = carry
            grads, mean_elbo = jax.grad(negative_elbo, has_aux=True)(params, jax.random.fold_in(key, i))
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), mean_elbo

        skip = lambda carry: (carry, jnp.array(jnp.nan, x.dtype))  # noqa: E731
        return jax.lax.cond(i < num_steps, update, skip, carry)

    (params, opt_state), trace = jax.lax.scan(step, (params, opt_state), first_step + jnp.arange(length))
    return params, opt_state, trace


_chunk_jit = jax.jit(_chunk, static_argnames=("length", "num_samples"))


def _fit_arguments(key, x, num_steps, num_samples, learning_rate, latent_dim, init, init_form):
    """The checks both fitting routines share: ``(x as an array, num_steps, num_samples, latent_dim)``, where
    ``latent_dim`` is checked (and needed) only without ``init``."""
    _args.prng_key("key", key)
    num_steps, num_samples = _args.count("num_steps", num_steps), _args.count("num_samples", num_samples)
    _args.in_range("learning_rate", _args.number("learning_rate", learning_rate), 0, math.inf,
                   "Pass a step size > 0, e.g. learning_rate=1e-2.", closed=False)
    if init is None:
        _args.given("latent_dim", latent_dim, f"Pass latent_dim (to start at the prior) or {init_form}.")
        latent_dim = _args.count("latent_dim", latent_dim)
    return jnp.asarray(x), num_steps, num_samples, latent_dim


def fit_mean_field(
    key,
    point_log_joint,
    x,
    *,
    latent_dim=None,
    init=None,
    num_steps=1000,
    learning_rate=1e-2,
    num_samples=4,
    tol=1e-2,
    check_every=50,
):
    r"""Per-datapoint variational inference: maximise every point's ELBO over its own λ_i.

    .. math:: \lambda_i^* = \arg\max_{\lambda_i} \mathbb E_{q_{\lambda_i}(z)}
        [\log p(x_i, z) - \log q_{\lambda_i}(z)], \quad i = 1..N

    Adam on all points at once: one compiled chunk of ``check_every`` steps (``jax.lax.scan``
    over steps, ``jax.vmap`` over points, reparameterised Monte Carlo gradients with fresh
    noise at each step). Between chunks the plateau rule stops the run when the chunk's mean
    ELBO (averaged over points and steps) improved by less than ``tol`` nats on the previous one.

    Args:
        key: a ``jax.random`` key; step t uses ``fold_in(key, t)``, so a shorter run with the
            same key follows a prefix of a longer one.
        point_log_joint: ``(x_i, z (latent_dim,)) -> log p(x_i, z)`` for one data point.
        x: ``(N, ...)`` data points (rows are passed one at a time to ``point_log_joint``).
        latent_dim: dimension of z; needed when ``init`` is None (then λ starts at the prior,
            μ = 0, log σ² = 0).
        init: optional ``(mu, log_var)``, each ``(N, latent_dim)``, e.g. an encoder's output
            (semi-amortized inference).
        num_steps: maximum number of steps (>= 1).
        learning_rate: Adam step size.
        num_samples: Monte Carlo samples per point per step.
        tol: plateau threshold in nats per point; ``None`` runs all ``num_steps``.
        check_every: steps per compiled chunk (the plateau is checked between chunks).

    Returns:
        a :class:`MeanFieldFit`. Introduced in lesson 7.
    """
    check_every = _args.count("check_every", check_every)
    x, num_steps, num_samples, latent_dim = _fit_arguments(key, x, num_steps, num_samples, learning_rate,
                                                           latent_dim, init, "init=(mu, log_var)")
    if init is None:
        init = (jnp.zeros((x.shape[0], latent_dim), x.dtype),) * 2
    params = tuple(jnp.asarray(p, x.dtype) for p in _args.pair("init", init, "(mu, log_var)"))
    _check_params(x, *params)
    if latent_dim is not None:
        _args.equal("init's latent_dim", params[0].shape[1], latent_dim,
                    "Pass latent_dim equal to init's number of columns, or leave latent_dim out.")
    point_log_joint = _as_partial(point_log_joint)
    opt_state = optax.adam(learning_rate).init(params)
    traces, previous, converged, taken = [], None, False, 0
    while taken < num_steps and not converged:
        params, opt_state, trace = _chunk_jit(
            params, opt_state, key, taken, num_steps, learning_rate, x, point_log_joint,
            length=check_every, num_samples=num_samples,
        )  # fmt: skip
        trace = np.asarray(trace)[: num_steps - taken]
        traces.append(trace)
        taken += trace.shape[0]
        current = float(np.mean(trace))
        if not np.isfinite(current):
            raise FloatingPointError(f"The ELBO became {current} by step {taken}; lower learning_rate.")
        converged = (
            tol is not None and previous is not None and current - previous < tol and taken < num_steps
        )
        previous = current
    return MeanFieldFit(*params, np.concatenate(traces), taken, converged)


def mean_field_step(key, log_joint, mu, log_var, learning_rate, num_samples):
    r"""One plain gradient-ascent step on the Monte Carlo ELBO of one point (the idea behind :func:`fit_mean_field`).

    .. math:: \lambda \leftarrow \lambda + \eta\, \nabla_\lambda \hat{\mathcal L}(\lambda)

    Args: ``log_joint(z) -> log p(x, z)``; ``mu, log_var (latent_dim,)``. Returns ``(new_mu, new_log_var)``.
    Introduced in lesson 7.
    """
    grad = jax.grad(lambda m, lv: elbo_lib.elbo(key, log_joint, m, lv, num_samples), argnums=(0, 1))
    grad_mu, grad_log_var = grad(mu, log_var)
    return mu + learning_rate * grad_mu, log_var + learning_rate * grad_log_var


def _per_point_batched(key, point_log_joint, x, mu, log_var, *, estimator, num_samples, batch_size):
    keys = jax.random.split(key, x.shape[0])
    one = lambda a: estimator(a[0], lambda z: point_log_joint(a[1], z), a[2], a[3], num_samples)  # noqa: E731
    return jax.lax.map(one, (keys, x, mu, log_var), batch_size=batch_size)


_per_point_batched = jax.jit(_per_point_batched, static_argnames=("estimator", "num_samples", "batch_size"))


def _estimate(estimator, key, point_log_joint, x, mu, log_var, num_samples, batch_size):
    num_samples = _args.count("num_samples", num_samples)
    x = jnp.asarray(x)
    _check_params(x, mu, log_var)
    batch_size = batch_size or max(1, min(x.shape[0], 2**13 // num_samples))  # bound memory
    return _per_point_batched(
        key, _as_partial(point_log_joint), x, jnp.asarray(mu, x.dtype), jnp.asarray(log_var, x.dtype),
        estimator=estimator, num_samples=num_samples, batch_size=batch_size,
    )  # fmt: skip


def elbo_per_point(key, point_log_joint, x, mu, log_var, num_samples=100, batch_size=None):
    """Monte Carlo ELBO :func:`vae_lite.elbo.elbo` of each point's q, ``(N,)``.

    Args: ``point_log_joint(x_i, z)``; ``x (N, ...)``; ``mu, log_var (N, latent_dim)``; ``batch_size``
    points per vectorised batch (default: memory-bounded). Introduced in lesson 7.
    """
    return _estimate(elbo_lib.elbo, key, point_log_joint, x, mu, log_var, num_samples, batch_size)


def log_evidence_per_point(key, point_log_joint, x, mu, log_var, num_samples=1000, batch_size=None):
    """Importance-sampled log p(x_i) (:func:`vae_lite.elbo.log_evidence_is`, proposal q_i), ``(N,)``.

    Args as for :func:`elbo_per_point`. Introduced in lesson 7.
    """
    return _estimate(elbo_lib.log_evidence_is, key, point_log_joint, x, mu, log_var, num_samples, batch_size)


def inference_gaps(log_px, elbo_optimal, elbo_encoder):
    r"""Per-point approximation and amortization gaps (Cremer, Li & Duvenaud 2018).

    .. math:: \log p(x) - \mathcal L[q_\phi] = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation}}
        + \underbrace{\mathcal L[q^*] - \mathcal L[q_\phi]}_{\text{amortization}}

    Args: arrays ``(N,)`` of log p(x_i), the ELBO at the per-point optimum q*, and under the encoder q_φ.
    Returns ``(approximation_gap (N,), amortization_gap (N,))``. Introduced in lesson 7.
    """
    for name, a in (("elbo_optimal", elbo_optimal), ("elbo_encoder", elbo_encoder)):
        _args.same_shape(name, a, "log_px", log_px, "Pass one value per data point, the same points in each.")
    return log_px - elbo_optimal, elbo_optimal - elbo_encoder


def summarize_gaps(log_px, elbo_optimal, elbo_encoder):
    """Means over points and their standard errors (std / sqrt N) of the bounds and the gaps.

    Returns ``{name: (mean, standard_error)}`` for ``log_px``, ``elbo_optimal``, ``elbo_encoder``,
    ``approximation_gap``, ``amortization_gap`` and ``inference_gap`` (their sum). Lesson 7.
    """
    approximation, amortization = inference_gaps(log_px, elbo_optimal, elbo_encoder)
    columns = {
        "log_px": log_px, "elbo_optimal": elbo_optimal, "elbo_encoder": elbo_encoder,
        "approximation_gap": approximation, "amortization_gap": amortization,
        "inference_gap": log_px - elbo_encoder,
    }  # fmt: skip
    n = np.shape(log_px)[0]
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(n))) for k, v in columns.items()}


def semi_amortized(key, point_log_joint, x, encoder, num_steps, **fit_kwargs):
    """Start at the encoder's λ = encoder(x) and take ``num_steps`` Adam steps (no plateau stop).

    ``num_steps = 0`` returns the encoder's λ itself (amortized inference). Other keyword
    arguments go to :func:`fit_mean_field`. Returns ``(mu, log_var)``, each ``(N, latent_dim)``.
    Introduced in lesson 7.
    """
    num_steps = _args.count("num_steps", num_steps, minimum=0)
    mu, log_var = encoder(x)
    if num_steps == 0:
        return mu, log_var
    fit = fit_mean_field(key, point_log_joint, x, init=(mu, log_var), num_steps=num_steps, tol=None, **fit_kwargs)
    return fit.mu, fit.log_var


class MeanFieldOptimum(NamedTuple):
    """The best factorised Gaussian q* for a Gaussian N(m, Σ), Λ = Σ⁻¹ (:func:`gaussian_mean_field_optimum`)."""

    mu: jnp.ndarray  # (d,): μ* = m
    log_var: jnp.ndarray  # (d,): log σ*²_j = -log Λ_jj (the precision's diagonal, not Σ's)
    kl: jnp.ndarray  # scalar: KL(q* ‖ N(m, Σ)) = ½ (Σ_j log Λ_jj - log det Λ)


def gaussian_mean_field_optimum(mean, cov):
    r"""The factorised Gaussian closest to N(mean, cov) in KL(q ‖ p), and that KL.

    Matches the mean and the diagonal of the *precision* Λ = cov⁻¹ (not the diagonal of cov):

    .. math:: \mu^* = m, \quad \sigma^{*2}_j = 1 / \Lambda_{jj}, \quad
        \mathrm{KL}(q^* \| p) = \tfrac12 \big(\textstyle\sum_j \log \Lambda_{jj} - \log\det\Lambda\big)

    For a Gaussian posterior the optimal ELBO is then log p(x) − KL exactly.
    Returns a :class:`MeanFieldOptimum` ``(mu (d,), log_var (d,), kl scalar)``. Introduced in lesson 7.
    """
    precision_diag = jnp.diag(jnp.linalg.inv(cov))
    kl = 0.5 * (jnp.sum(jnp.log(precision_diag)) + jnp.linalg.slogdet(cov)[1])
    return MeanFieldOptimum(jnp.asarray(mean), -jnp.log(precision_diag), kl)


# ---------------------------------------------------------------- a richer family: full-covariance Gaussians
def _check_full_q(mean, chol):
    """``(mean (d,), chol (d, d))`` as float arrays; on concrete values, chol must be lower-triangular with a
    positive diagonal (its log-determinant is then the sum of the logs of its diagonal)."""
    mean, chol = _args.float_array("mean", mean), _args.float_array("chol", chol)
    fix = ("Expected mean (latent_dim,) and chol (latent_dim, latent_dim): pass one latent vector's q "
           "(use jax.vmap over data points).")
    _args.ndim("mean", mean, 1, fix)
    d = jnp.shape(mean)[0]
    _args.shape("chol", chol, (d, d), fix)
    _args.finite("mean", mean)
    _args.cholesky_factor("chol", chol)
    return mean, chol


def _full_covariance_log_weights(key, log_joint, mean, chol, num_samples):
    """``log p(x, z_s) - log q(z_s)``, ``(num_samples,)``, for z_s = mean + chol @ eps_s."""
    eps = jax.random.normal(key, (num_samples, mean.shape[0]), mean.dtype)
    z = mean + eps @ chol.T  # row s is mean + L eps_s
    if num_samples <= elbo_lib.SAMPLE_BLOCK:
        values = jax.vmap(log_joint)(z)  # the same memory as one block of lax.map, and quicker to compile
    else:
        values = jax.lax.map(log_joint, z, batch_size=elbo_lib.SAMPLE_BLOCK)  # memory stays flat in num_samples
    _args.one_value_per_sample("log_joint", values, num_samples)
    # log N(z_s; mean, L L^T): the quadratic form is |eps_s|^2 (L^-1 (z_s - mean) = eps_s), and
    # log det(L L^T) = 2 sum_j log L_jj for a triangular L
    log_q = -0.5 * jnp.sum(eps**2, -1) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * mean.shape[0] * LOG_2PI
    return values - log_q


def full_covariance_elbo(key, log_joint, mean, chol, num_samples):
    r"""Monte Carlo ELBO of a full-covariance Gaussian q = N(mean, L Lᵀ), sampled through its Cholesky factor L.

    .. math:: \mathcal L(q) \approx \frac1S \sum_s \log p(x, z_s) - \log q(z_s), \quad
        z_s = m + L\varepsilon_s, \ \varepsilon_s \sim \mathcal N(0, I), \quad
        \log q(z_s) = -\tfrac d2 \log 2\pi - \textstyle\sum_j \log L_{jj} - \tfrac12 \lVert\varepsilon_s\rVert^2

    The average of :math:`-\log q(z_s)` estimates the entropy
    :math:`\mathbb H[q] = \tfrac d2 \log 2\pi e + \sum_j \log L_{jj}`; written per sample, as here, every
    sample's log p(x, z_s) − log q(z_s) equals log p(x) when q is the exact posterior, so the estimate
    is then exact for any ``num_samples``. Its gradient in (mean, L) is the same as with the closed-form
    entropy (the two differ by :math:`\tfrac12(\lVert\varepsilon\rVert^2 - d)`, which does not depend on q).
    ``eps`` is ``jax.random.normal(key, (num_samples, d))``, as :func:`vae_lite.elbo.elbo` draws it, so a
    diagonal ``chol = diag(exp(log_var / 2))`` gives ``elbo.elbo(key, log_joint, mean, log_var, num_samples)``.

    Args:
        key: a ``jax.random`` key.
        log_joint: ``z (latent_dim,) -> log p(x, z)`` (scalar).
        mean: ``(latent_dim,)``.
        chol: ``(latent_dim, latent_dim)`` lower-triangular with a positive diagonal; q's covariance is
            ``chol @ chol.T``.
        num_samples: number S of reparameterised samples.

    Returns:
        scalar estimate, differentiable in ``mean`` and ``chol``. Introduced in lesson 7.
    """
    _args.prng_key("key", key)
    mean, chol = _check_full_q(mean, chol)
    num_samples = _args.count("num_samples", num_samples)
    return _full_covariance_elbo(key, _args.function("log_joint", log_joint), mean, chol, num_samples)


@functools.partial(jax.jit, static_argnames="num_samples")
def _full_covariance_elbo(key, log_joint, mean, chol, num_samples):
    return jnp.mean(_full_covariance_log_weights(key, log_joint, mean, chol, num_samples))


@functools.partial(jax.jit, static_argnames="num_samples")
def _full_covariance_log_evidence(key, log_joint, mean, chol, num_samples):
    log_w = _full_covariance_log_weights(key, log_joint, mean, chol, num_samples)
    return jax.nn.logsumexp(log_w) - jnp.log(num_samples)  # log-mean-exp, stable


def full_covariance_log_evidence_is(key, log_joint, mean, chol, num_samples):
    r"""Importance-sampled log p(x) with q = N(mean, L Lᵀ) as the proposal (the IWAE bound of a full-covariance q).

    .. math:: \log \hat p(x) = \log \frac1S \sum_s \frac{p(x, z_s)}{q(z_s)}, \quad z_s = m + L\varepsilon_s

    :func:`vae_lite.elbo.log_evidence_is` for a full covariance: a lower bound in expectation that tightens
    to log p(x) as S grows (exact for any S when q is the posterior). Args as for
    :func:`full_covariance_elbo`; the same key draws the same samples. Returns a scalar. Introduced in lesson 7.
    """
    _args.prng_key("key", key)
    mean, chol = _check_full_q(mean, chol)
    num_samples = _args.count("num_samples", num_samples)
    return _full_covariance_log_evidence(key, _args.function("log_joint", log_joint), mean, chol, num_samples)


class FullCovarianceFit(NamedTuple):
    """Result of :func:`fit_full_covariance`.

    Attributes:
        mean: ``(N, latent_dim)`` fitted means.
        chol: ``(N, latent_dim, latent_dim)`` fitted lower-triangular factors with positive diagonals;
            point i's q is N(mean[i], chol[i] chol[i]ᵀ).
        elbo_trace: ``(num_steps,)`` the Monte Carlo ELBO averaged over points at each step (the noisy
            estimate the gradient was taken from; re-estimate the final ELBO with :func:`full_covariance_elbo`
            and more samples).
    """

    mean: jnp.ndarray
    chol: jnp.ndarray
    elbo_trace: np.ndarray


def _chol_from(log_diag, lower):
    """L = diag(e^{log_diag}) + the strictly lower part of ``lower``: lower-triangular, positive diagonal."""
    return jnp.diag(jnp.exp(log_diag)) + jnp.tril(lower, -1)


@functools.partial(jax.jit, static_argnames=("num_steps", "num_samples"))
def _fit_full_covariance(key, point_log_joint, x, params, learning_rate, *, num_steps, num_samples):
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01))

    def one_point(step_key, x_i, mean, log_diag, lower):
        log_joint = Partial(_point, point_log_joint, x_i)
        return jnp.mean(_full_covariance_log_weights(step_key, log_joint, mean, _chol_from(log_diag, lower),
                                                     num_samples))

    def negative_elbo(params, step_key):
        per_point = jax.vmap(one_point)(jax.random.split(step_key, x.shape[0]), x, *params)
        return -jnp.sum(per_point), jnp.mean(per_point)  # points are independent: sum = per-point steps

    def step(carry, t):
        params, opt_state = carry
        grads, mean_elbo = jax.grad(negative_elbo, has_aux=True)(params, jax.random.fold_in(key, t))
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), mean_elbo

    (params, _), trace = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(num_steps))
    return params, trace


def _point(point_log_joint, x_i, z):
    return point_log_joint(x_i, z)


def fit_full_covariance(
    key, point_log_joint, x, *, latent_dim=None, init=None, num_steps=1000, learning_rate=1e-2, num_samples=8
):
    r"""Per-datapoint VI in a richer family: a full-covariance Gaussian N(m_i, L_i L_iᵀ) for every point.

    .. math:: (m_i^*, L_i^*) = \arg\max_{m, L}\ \mathbb E_{q(z)}[\log p(x_i, z) - \log q(z)], \quad
        q = \mathcal N(m, L L^\top), \quad i = 1..N

    Adam (Optax) on :func:`full_covariance_elbo` of all points at once (``jax.vmap`` over points, one
    compiled ``jax.lax.scan`` over steps, fresh noise at each step: step t uses ``fold_in(key, t)``), over an
    unconstrained parameterisation of each L: the logs of its diagonal and its strictly lower part. The
    step size decays from ``learning_rate`` to 1% of it along a cosine, so the noisy steps settle by the end.

    Args:
        key: a ``jax.random`` key.
        point_log_joint: ``(x_i, z (latent_dim,)) -> log p(x_i, z)`` for one data point.
        x: ``(N, ...)`` data points.
        latent_dim: dimension of z; needed when ``init`` is None (then q starts at the prior N(0, I)).
        init: optional ``(mean (N, latent_dim), chol (N, latent_dim, latent_dim))``, each chol lower-triangular
            with a positive diagonal, e.g. a diagonal fit's ``(mu, jax.vmap(jnp.diag)(jnp.exp(0.5 * log_var)))``.
        num_steps: Adam steps (>= 1).
        learning_rate: Adam's initial step size.
        num_samples: Monte Carlo samples per point per step.

    Returns:
        a :class:`FullCovarianceFit`. Introduced in lesson 7.
    """
    x, num_steps, num_samples, latent_dim = _fit_arguments(key, x, num_steps, num_samples, learning_rate,
                                                           latent_dim, init, "init=(mean, chol)")
    if init is None:
        init = (jnp.zeros((x.shape[0], latent_dim), x.dtype), jnp.broadcast_to(jnp.eye(latent_dim, dtype=x.dtype),
                                                                              (x.shape[0], latent_dim, latent_dim)))
    mean, chol = (jnp.asarray(a, x.dtype) for a in _args.pair("init", init, "(mean, chol)"))
    fix = "Expected x (N, ...) and init's mean (N, latent_dim): pass one row of init per data point."
    _args.at_least("x's number of axes", jnp.ndim(x), 1, fix)
    _args.ndim("init's mean", mean, 2, fix)
    _args.equal("init's mean's number of rows", mean.shape[0], jnp.shape(x)[0], fix)
    if latent_dim is not None:
        _args.equal("init's latent_dim", mean.shape[1], latent_dim,
                    "Pass latent_dim equal to init's number of columns, or leave latent_dim out.")
    _args.shape("init's chol", chol, (*mean.shape, mean.shape[1]),
                "Pass one lower-triangular chol (latent_dim, latent_dim) per data point.")
    _args.finite("init's mean", mean)
    _args.cholesky_factor("init's chol", chol)
    params = (mean, jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), jnp.tril(chol, -1))
    params, trace = _fit_full_covariance(
        key, _as_partial(point_log_joint), x, params, learning_rate, num_steps=num_steps, num_samples=num_samples
    )
    trace = np.asarray(trace)
    if not np.all(np.isfinite(trace)):
        raise FloatingPointError(f"The ELBO became {trace[~np.isfinite(trace)][0]} during the fit; lower learning_rate.")
    return FullCovarianceFit(params[0], jax.vmap(_chol_from)(*params[1:]), trace)
