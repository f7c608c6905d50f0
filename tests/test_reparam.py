"""Tests for vae_lite.reparam: both gradient estimators against exact gradients, closed-form
variances and finite differences.

Tolerances: means are checked to within 5 standard errors (sqrt(var / S), from the closed-form
or sample variance); sample variances to within 5 % at S = 400 000 (their own standard error
is about 1 % for the score function of z^2, the noisiest case).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_lite import reparam

S = 400_000
KEY = jax.random.key(0)


def square(z):
    return jnp.sum(z**2)


def linear(z):
    return jnp.sum(z)


CASES = [(0.0, 0.0), (0.7, -0.4), (-1.5, 0.8)]


def _moments(grads):
    return [np.asarray(g[:, 0], dtype=np.float64) for g in grads]


# The references below are written in this file, not taken from vae_lite.reparam: the exact
# gradients of E_q f by hand, and each estimator's variance by Gauss-Hermite quadrature of the
# per-sample estimate written out as a function of eps (z = mu + s eps, s = e^{log_var / 2}).
EXACT = {  # (d/dmu, d/dlog_var) of E_q[f]
    "square": lambda mu, s: (2 * mu, s**2),  # E z^2 = mu^2 + s^2, and d s^2 / d log_var = s^2
    "linear": lambda mu, s: (1.0, 0.0),  # E z = mu
}
PER_SAMPLE = {  # per-sample estimates (grad_mu, grad_log_var) as functions of eps
    ("score", "square"): lambda mu, s, eps: ((mu + s * eps) ** 2 * eps / s, (mu + s * eps) ** 2 * (eps**2 - 1) / 2),
    ("score", "linear"): lambda mu, s, eps: ((mu + s * eps) * eps / s, (mu + s * eps) * (eps**2 - 1) / 2),
    ("reparam", "square"): lambda mu, s, eps: (2 * (mu + s * eps), (mu + s * eps) * s * eps),
    ("reparam", "linear"): lambda mu, s, eps: (np.ones_like(eps), s * eps / 2),
}


def _quadrature_variance(estimate):
    eps, w = np.polynomial.hermite_e.hermegauss(60)
    g = estimate(eps)
    w = w / w.sum()
    return float(w @ g**2 - (w @ g) ** 2)


@pytest.mark.parametrize("estimator", [reparam.score_function_grad, reparam.reparam_grad])
@pytest.mark.parametrize("f", [square, linear])
@pytest.mark.parametrize("mu0, log_var0", CASES)
def test_unbiased_with_the_variance_quadrature_gives(estimator, f, mu0, log_var0):
    mu, log_var = jnp.array([mu0]), jnp.array([log_var0])
    g_mu, g_lv = _moments(estimator(KEY, f, mu, log_var, S))
    s = float(np.exp(0.5 * log_var0))
    exact = EXACT[f.__name__](mu0, s)
    kind = "score" if estimator is reparam.score_function_grad else "reparam"
    per_sample = PER_SAMPLE[(kind, f.__name__)]
    for i, (samples, target) in enumerate(zip((g_mu, g_lv), exact, strict=True)):
        var = _quadrature_variance(lambda eps, i=i: np.asarray(per_sample(mu0, s, eps)[i], np.float64))
        assert abs(samples.mean() - target) <= 5 * np.sqrt(var / S) + 1e-6
        assert samples.var() == pytest.approx(var, rel=0.05, abs=1e-6)


def test_the_library_closed_forms_agree_with_the_references():
    """reparam's exact gradients and closed-form variances (quoted in lesson 5) against this file's."""
    for mu0, log_var0 in CASES:
        mu, log_var, s = jnp.array([mu0]), jnp.array([log_var0]), float(np.exp(0.5 * log_var0))
        for name, exact_fn, variances in (("square", reparam.exact_grad_square, reparam.variances_square),
                                          ("linear", reparam.exact_grad_linear, reparam.variances_linear)):
            np.testing.assert_allclose([float(e[0]) for e in exact_fn(mu, log_var)], EXACT[name](mu0, s), rtol=1e-5,
                                       atol=1e-7)
            v = variances(mu, log_var)
            for kind in ("score", "reparam"):
                for i, part in enumerate(("mu", "log_var")):
                    var = _quadrature_variance(
                        lambda eps, k=kind, n=name, i=i, m=mu0, sd=s: np.asarray(PER_SAMPLE[(k, n)](m, sd, eps)[i], np.float64))
                    assert float(getattr(v, f"{kind}_{part}")[0]) == pytest.approx(var, rel=1e-4, abs=1e-7)


def test_reference_numbers_at_standard_normal():
    """The numbers quoted in lesson 5, for f(z) = z^2 and q = N(0, 1)."""
    v = reparam.variances_square(jnp.zeros(1), jnp.zeros(1))
    np.testing.assert_allclose([v.score_mu[0], v.reparam_mu[0], v.score_log_var[0], v.reparam_log_var[0]],
                               [15.0, 4.0, 18.5, 2.0])


def test_multivariate_nonlinear_f_unbiased():
    """f(z) = sum sin(z) + z0 z1, where E_q f = sum sin(mu) e^{-sigma^2/2} + mu0 mu1."""
    mu, log_var = jnp.array([0.3, -0.8, 1.1]), jnp.array([-0.5, 0.2, -1.0])

    def f(z):
        return jnp.sum(jnp.sin(z)) + z[0] * z[1]

    var = np.exp(log_var)
    damp = np.exp(-var / 2)
    exact_mu = np.cos(mu) * damp + np.array([mu[1], mu[0], 0.0])
    exact_lv = np.sin(mu) * damp * (-var / 2)
    for estimator in (reparam.score_function_grad, reparam.reparam_grad):
        for g, exact in zip(estimator(KEY, f, mu, log_var, S), (exact_mu, exact_lv), strict=True):
            g = np.asarray(g, dtype=np.float64)
            assert g.shape == (S, 3)
            stderr = g.std(axis=0) / np.sqrt(S)
            np.testing.assert_array_less(np.abs(g.mean(axis=0) - exact), 5 * stderr + 1e-6)


def test_reparam_grad_matches_finite_differences():
    """With the noise eps held fixed, the mean per-sample gradient is the gradient of the MC objective."""
    mu, log_var = jnp.array([0.4, -1.2]), jnp.array([0.3, -0.7])

    def f(z):
        return jnp.sin(z[0]) * jnp.exp(0.3 * z[1]) + z[1] ** 3

    num = 64
    eps = np.asarray(jax.random.normal(KEY, (num, 2)), dtype=np.float64)

    def objective(mu, log_var):  # float64 numpy, independent of JAX autodiff
        z = mu + np.exp(0.5 * log_var) * eps
        return np.mean(np.sin(z[:, 0]) * np.exp(0.3 * z[:, 1]) + z[:, 1] ** 3)

    g_mu, g_lv = (np.asarray(g).mean(axis=0) for g in reparam.reparam_grad(KEY, f, mu, log_var, num))
    h = 1e-5
    m, v = np.asarray(mu, np.float64), np.asarray(log_var, np.float64)
    for j in range(2):
        e = np.eye(2)[j] * h
        fd_mu = (objective(m + e, v) - objective(m - e, v)) / (2 * h)
        fd_lv = (objective(m, v + e) - objective(m, v - e)) / (2 * h)
        assert g_mu[j] == pytest.approx(fd_mu, rel=1e-4, abs=1e-4)
        assert g_lv[j] == pytest.approx(fd_lv, rel=1e-4, abs=1e-4)


def test_same_key_same_samples():
    """Both estimators use z = mu + sigma * eps with the same eps, so per-sample values can be paired."""
    mu, log_var = jnp.array([0.5]), jnp.array([-0.3])
    g_score, _ = reparam.score_function_grad(KEY, linear, mu, log_var, 5)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(KEY, (5, 1))
    # for f(z) = z the score-function mu-estimate is z (z - mu) / sigma^2
    np.testing.assert_allclose(g_score, z * (z - mu) / jnp.exp(log_var), rtol=1e-5)


def test_jit_matches_eager():
    mu, log_var = jnp.array([0.2, 0.1]), jnp.array([0.0, -1.0])
    for estimator in (reparam.score_function_grad, reparam.reparam_grad):
        eager = estimator(KEY, square, mu, log_var, 7)
        jitted = jax.jit(lambda k, m, v, est=estimator: est(k, square, m, v, 7))(KEY, mu, log_var)
        for a, b in zip(eager, jitted, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", [reparam.score_function_grad, reparam.reparam_grad])
def test_bad_inputs_raise(estimator):
    with pytest.raises(ValueError, match="same shape"):
        estimator(KEY, square, jnp.zeros(2), jnp.zeros(3), 4)
    with pytest.raises(ValueError, match="latent vector"):
        estimator(KEY, square, jnp.zeros((2, 2)), jnp.zeros((2, 2)), 4)
    with pytest.raises(ValueError, match="num_samples"):
        estimator(KEY, square, jnp.zeros(2), jnp.zeros(2), 0)
    with pytest.raises(ValueError, match="scalar"):
        estimator(KEY, lambda z: z**2, jnp.zeros(2), jnp.zeros(2), 4)
    with pytest.raises(ValueError, match="floating"):
        estimator(KEY, square, jnp.zeros(2, dtype=jnp.int32), jnp.zeros(2, dtype=jnp.int32), 4)


def _expected_f(f, mu, log_var):
    """E_q[f] in closed form: the natural baseline."""
    return float(mu[0] ** 2 + np.exp(log_var[0])) if f is square else float(mu[0])


@pytest.mark.parametrize("f, exact, variances", [
    (square, reparam.exact_grad_square, reparam.variances_square),
    (linear, reparam.exact_grad_linear, reparam.variances_linear),
])
@pytest.mark.parametrize("mu0, log_var0", CASES)
@pytest.mark.parametrize("which", ["mean of f", "arbitrary"])
def test_baseline_unbiased_with_closed_form_variance(f, exact, variances, mu0, log_var0, which):
    """Any constant baseline leaves the mean at the exact gradient; the variance follows the closed form."""
    mu, log_var = jnp.array([mu0]), jnp.array([log_var0])
    b = _expected_f(f, mu, log_var) if which == "mean of f" else -2.0
    g_mu, g_lv = _moments(reparam.score_function_grad(KEY, f, mu, log_var, S, baseline=b))
    v = variances(mu, log_var, baseline=b)
    for samples, target, var in ((g_mu, exact(mu, log_var)[0], v.score_mu), (g_lv, exact(mu, log_var)[1], v.score_log_var)):
        assert abs(samples.mean() - float(target[0])) <= 5 * np.sqrt(float(var[0]) / S) + 1e-6
        assert samples.var() == pytest.approx(float(var[0]), rel=0.05, abs=1e-6)


def test_baseline_closed_form_by_quadrature():
    """The baseline variances against Gauss-Hermite quadrature of (f - b) times the score, written by hand."""
    eps, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    for mu, log_var in CASES:
        s = np.exp(0.5 * log_var)
        z = mu + s * eps
        for b in (0.0, 1.3, -0.7):
            for f_values, variances in ((z**2, reparam.variances_square), (z, reparam.variances_linear)):
                v = variances(jnp.array([mu]), jnp.array([log_var]), baseline=b)
                for name, score in (("score_mu", eps / s), ("score_log_var", (eps**2 - 1) / 2)):
                    g = (f_values - b) * score
                    assert float(getattr(v, name)[0]) == pytest.approx(w @ g**2 - (w @ g) ** 2, rel=1e-4, abs=1e-6)


def test_baseline_reference_numbers_and_drop():
    """f = z^2, q = N(0, 1), b = E[f] = 1: the score-function variances fall from 15 and 18.5 to 10 and 14."""
    v = reparam.variances_square(jnp.zeros(1), jnp.zeros(1), baseline=1.0)
    np.testing.assert_allclose([v.score_mu[0], v.score_log_var[0], v.reparam_mu[0]], [10.0, 14.0, 4.0], rtol=1e-6)


def test_baseline_removes_the_dimension_growth():
    """f = sum_j z_j^2 in d = 10 dimensions, q = N(0, I): the mu_1 estimate f eps_1 has variance (d+2)(d+4) = 168;
    with b = E[f] = d it is E[(eps_1^2 - 1 + R - (d-1))^2 eps_1^2] = 2(d+4) = 28 (R ~ chi^2_{d-1}), unbiased either way."""
    d, num = 10, 200_000
    mu, log_var = jnp.zeros(d), jnp.zeros(d)
    plain = np.asarray(reparam.score_function_grad(KEY, square, mu, log_var, num)[0][:, 0], dtype=np.float64)
    based = np.asarray(reparam.score_function_grad(KEY, square, mu, log_var, num, baseline=float(d))[0][:, 0],
                       dtype=np.float64)
    assert plain.var() == pytest.approx((d + 2) * (d + 4), rel=0.05)
    assert based.var() == pytest.approx(2 * (d + 4), rel=0.05)
    assert abs(based.mean()) <= 5 * np.sqrt(2 * (d + 4) / num)


def test_baseline_default_is_plain_reinforce_and_jits():
    mu, log_var = jnp.array([0.2, 0.1]), jnp.array([0.0, -1.0])
    for a, b in zip(reparam.score_function_grad(KEY, square, mu, log_var, 7),
                    reparam.score_function_grad(KEY, square, mu, log_var, 7, baseline=0.0), strict=True):
        np.testing.assert_array_equal(a, b)
    eager = reparam.score_function_grad(KEY, square, mu, log_var, 7, baseline=0.5)
    jitted = jax.jit(lambda k, b: reparam.score_function_grad(k, square, mu, log_var, 7, baseline=b))(KEY, 0.5)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_baseline_raises():
    with pytest.raises(ValueError, match="baseline must be a scalar"):
        reparam.score_function_grad(KEY, square, jnp.zeros(2), jnp.zeros(2), 4, baseline=jnp.ones(2))
    with pytest.raises(ValueError, match="baseline holds NaN"):
        reparam.score_function_grad(KEY, square, jnp.zeros(2), jnp.zeros(2), 4, baseline=float("nan"))
