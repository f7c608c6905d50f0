"""Tests for lesson 7's full-covariance ELBO check (vae_lite._checks_full_covariance, re-exported by grading): its
float64 references against independent ones (lesson 4's diagonal formula, the library's closed form, Monte Carlo,
scipy's Gaussian density), correct estimators pass, each typical mistake or broken function fails with the message
that names it, and the notebook's hidden tests pass correct estimators and fail wrong ones."""

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import _checks  # tests/_checks.py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import solve_triangular
from scipy.stats import multivariate_normal

from vae_lite import _checks_full_covariance as F
from vae_lite import _reference as R
from vae_lite import grading, inference
from vae_lite.distributions import log_normal_diag
from vae_lite.grading import _np_posterior

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_mean_field_vs_amortized.ipynb"
LOG_2PI = float(np.log(2 * np.pi))


# ------------------------------------------------------------ correct solutions
def full_covariance_elbo(key, log_joint, mean, chol, num_samples):
    eps = jax.random.normal(key, (num_samples, mean.shape[0]))
    z = mean + eps @ chol.T
    log_q = -0.5 * jnp.sum(eps**2, 1) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * mean.shape[0] * LOG_2PI
    return jnp.mean(jax.vmap(log_joint)(z) - log_q)


def with_scipy_density(key, log_joint, mean, chol, num_samples):
    """Another correct way: sample with the covariance, evaluate q's density by its formula."""
    z = jax.random.multivariate_normal(key, mean, chol @ chol.T, (num_samples,))
    return jnp.mean(jax.vmap(log_joint)(z) - jax.scipy.stats.multivariate_normal.logpdf(z, mean, chol @ chol.T))


def with_triangular_solve(key, log_joint, mean, chol, num_samples):
    """And another: solve for the noise from z, log-determinant by slogdet."""
    z = mean + (chol @ jax.random.normal(key, (mean.shape[0], num_samples))).T
    u = solve_triangular(chol, (z - mean).T, lower=True)
    log_q = -0.5 * jnp.sum(u**2, 0) - 0.5 * jnp.linalg.slogdet(chol @ chol.T)[1] - 0.5 * mean.shape[0] * LOG_2PI
    return jnp.mean(jax.vmap(log_joint)(z) - log_q)


CORRECT = [full_covariance_elbo, with_scipy_density, with_triangular_solve,
           jax.jit(full_covariance_elbo, static_argnums=(1, 4))]


# ------------------------------------------------------------ typical mistakes
def _wrong(side="right", log_det=lambda chol: 2 * jnp.sum(jnp.log(jnp.diag(chol))), constant=True, quadratic=True,
           average_quadratic=False, sign=1.0, combine=jnp.mean, diagonal_variances=None):
    """The estimator with one thing changed (defaults: correct)."""

    def estimate(key, log_joint, mean, chol, num_samples):
        d = mean.shape[0]
        eps = jax.random.normal(key, (num_samples, d))
        z = mean + (eps @ chol.T if side == "right" else eps @ chol)
        if diagonal_variances is not None:
            log_q = log_normal_diag(z, mean, jnp.log(diagonal_variances(chol)))
        else:
            log_q = -0.5 * log_det(chol) - (0.5 * d * LOG_2PI if constant else 0.0)
            if average_quadratic:  # the entropy's closed form instead of each sample's log q
                log_q = log_q - 0.5 * d
            elif quadratic:
                log_q = log_q - 0.5 * jnp.sum(eps**2, 1)
        return combine(jax.vmap(log_joint)(z) - sign * log_q)

    return estimate


def _transposed_density(key, log_joint, mean, chol, num_samples):
    z = mean + jax.random.normal(key, (num_samples, mean.shape[0])) @ chol  # covariance chol^T chol
    return jnp.mean(jax.vmap(log_joint)(z) - jax.scipy.stats.multivariate_normal.logpdf(z, mean, chol @ chol.T))


def _chol_as_covariance(key, log_joint, mean, chol, num_samples):
    z = jax.random.multivariate_normal(key, mean, chol, (num_samples,))
    return jnp.mean(jax.vmap(log_joint)(z) - jax.scipy.stats.multivariate_normal.logpdf(z, mean, chol))


MISTAKES = [
    (_wrong(average_quadratic=True), "right on average, but not exact"),
    (_wrong(side="left"), "covariance chol^T chol"),
    (_transposed_density, "covariance chol^T chol"),
    (_wrong(log_det=lambda chol: jnp.sum(jnp.log(jnp.diag(chol)))), "half what it should be"),
    (_wrong(diagonal_variances=jnp.diag), "half what it should be"),
    (_wrong(log_det=lambda chol: 4 * jnp.sum(jnp.log(jnp.diag(chol)))), "counts twice"),
    (_wrong(diagonal_variances=lambda chol: jnp.diag(chol @ chol.T)), "diagonal Gaussian"),
    (_wrong(constant=False), "2 pi part"),
    (_wrong(quadratic=False), "d/2 nats too low"),
    (_wrong(sign=-1.0), "wrong sign of the entropy"),
    (_wrong(combine=lambda log_w: -jnp.mean(log_w)), "negative ELBO"),
    (_wrong(combine=lambda log_w: jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])), "logsumexp"),
    (_chol_as_covariance, "treated chol as the covariance"),
]


fails_with = functools.partial(_checks.fails_with, grading.check_full_covariance_elbo)


# ------------------------------------------------------------ the references, independently
def test_references_against_lesson_4s_formula_and_the_librarys_closed_form():
    model, x = F.correlated_model(11, 6, 3, 0.6)
    mean, var = np.array([0.3, -0.2, 0.5]), np.array([0.4, 1.3, 0.7])
    np.testing.assert_allclose(F.expected_log_joint(model, x, mean, np.diag(var)),
                               R.linear_gaussian_expected_log_joint(model.W, model.b, model.sigma, x, mean, var),
                               rtol=1e-12)
    np.testing.assert_allclose(F.entropy(np.diag(var)), R.gaussian_entropy_of_variance(var), rtol=1e-12)
    chol = np.array([[0.5, 0.0, 0.0], [0.3, 0.4, 0.0], [-0.6, 0.2, 0.3]])
    np.testing.assert_allclose(F.exact_elbo(model, x, mean, chol @ chol.T),
                               model.elbo(x, jnp.asarray(mean), jnp.asarray(chol @ chol.T)),
                               rtol=1e-5)
    post_mean, post_cov, log_px = _np_posterior(model, x)
    np.testing.assert_allclose(F.exact_elbo(model, x, post_mean, post_cov), log_px, rtol=1e-10)  # no gap at p(z|x)
    assert F.log_weight_std(model, x, post_mean, np.linalg.cholesky(post_cov), seed=0) < 1e-6  # constant weights


def test_references_against_monte_carlo_and_scipy():
    """Both expectations within 6 standard errors of 200 000 NumPy draws (false failure about 2e-9)."""
    model, x = F.correlated_model(21, 6, 3, 0.6)
    mean, chol = np.array([0.1, -0.4, 0.2]), np.array([[0.5, 0.0, 0.0], [0.3, 0.4, 0.0], [-0.6, 0.2, 0.3]])
    z = mean + np.random.default_rng(1).standard_normal((200_000, 3)) @ chol.T
    for values, reference in (
        (R.linear_gaussian_log_joint(model.W, model.b, model.sigma, x, z), F.expected_log_joint(model, x, mean,
                                                                                                 chol @ chol.T)),
        (multivariate_normal(np.zeros(3), np.eye(3) * 0.8).logpdf(z),
         F._expected_log_normal(mean, chol @ chol.T, np.zeros(3), np.eye(3) * 0.8)),
    ):
        assert abs(values.mean() - reference) < 6 * values.std() / np.sqrt(len(values))


def test_the_checks_inputs_are_correlated_and_their_factors_not_symmetric():
    """Diagonal and full covariance must differ (a correlated posterior), and chol chol^T must differ from
    chol^T chol (else the transposed factor could not be told apart)."""
    for seed in (11, 21, 26):
        model, x = F.correlated_model(seed, 6, 3, 0.6)
        _, cov, _ = _np_posterior(model, x)
        corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        assert np.max(np.abs(corr - np.eye(3))) > 0.5
        chol = np.linalg.cholesky(cov)
        assert np.max(np.abs(chol @ chol.T - chol.T @ chol)) > 0.2 * np.max(np.abs(cov))


def test_the_docstring_states_the_false_failure_probability():
    assert F.NUM_STD_ERRORS == 6.0 and "below 1e-8" in grading.check_full_covariance_elbo.__doc__


# ------------------------------------------------------------ the check
@pytest.mark.parametrize("correct", CORRECT, ids=["reparameterised", "scipy_density", "triangular_solve", "jit"])
def test_correct_solution_passes(correct):
    assert "passed on 4 test inputs" in grading.check_full_covariance_elbo(correct)


def test_correct_solution_passes_under_x64():
    script = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from vae_lite import grading
        def full_covariance_elbo(key, log_joint, mean, chol, num_samples):
            eps = jax.random.normal(key, (num_samples, mean.shape[0]))  # float64 here
            z = mean + eps @ chol.T
            log_q = -0.5 * jnp.sum(eps**2, 1) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * mean.shape[0] * jnp.log(2 * jnp.pi)
            return jnp.mean(jax.vmap(log_joint)(z) - log_q)
        print(grading.check_full_covariance_elbo(full_covariance_elbo))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "passed" in done.stdout, done.stdout


@pytest.mark.parametrize(("wrong", "hint"), MISTAKES, ids=[h for _, h in MISTAKES])
def test_mistakes_are_named(wrong, hint):
    fails_with(wrong, "wrong value", hint)


def test_a_sampling_mistake_with_the_right_density_is_caught_by_the_statistical_inputs():
    """At the posterior, log p(x, z) - log q(z) is log p(x) wherever z comes from: only inputs 2 and 3 see it."""
    fails_with(_transposed_density, "test input 2 of 4")


@pytest.mark.parametrize(("broken", "fragment"), [
    (lambda key, lj, m, c, s: None, "None"),
    (lambda key, lj, m, c, s: full_covariance_elbo(key, lj, m, c, s) * jnp.nan, "NaN"),
    (lambda key, lj, m, c, s: (full_covariance_elbo(key, lj, m, c, s), 0.0), "single array"),
    (lambda key, lj, m, c, s: jnp.stack([full_covariance_elbo(key, lj, m, c, s)] * 2), "shape"),
    (lambda key, lj, m, c, s: jnp.zeros(s), "one value per sample"),
    (lambda key, lj, m, c, s: 1 / 0, "raised ZeroDivisionError"),
])
def test_broken_functions_fail_with_a_message(broken, fragment):
    fails_with(broken, fragment, "test input 1 of 4")


def test_blank_exercise_says_not_implemented():
    def blank(key, log_joint, mean, chol, num_samples):
        raise NotImplementedError()

    fails_with(blank, "not implemented yet")


def test_the_library_answer_is_rejected():
    fails_with(inference.full_covariance_elbo, "vae_lite.inference.full_covariance_elbo", "write it yourself")
    fails_with(lambda key, lj, m, c, s: inference.full_covariance_elbo(key, lj, m, c, s), "library's own answer")


def test_endless_loop_is_stopped(monkeypatch):
    monkeypatch.setattr("vae_lite._checking.TIME_LIMIT_S", 0.3)

    def endless(key, log_joint, mean, chol, num_samples):
        while True:
            pass

    fails_with(endless, "took longer than", "vectorise")


# ------------------------------------------------------------ no hint writes the answer
# ------------------------------------------------------------ the notebook's hidden tests
def _hidden_tests():
    return _checks.hidden_tests(NOTEBOOK, "ex07_full_cov_test")


@pytest.mark.parametrize(("fn", "passes"), [
    *[(fn, True) for fn in CORRECT[:3]],
    *[(wrong, False) for wrong, _ in MISTAKES],
    (inference.full_covariance_elbo, False),
], ids=[f"correct_{i}" for i in range(3)] + [h for _, h in MISTAKES] + ["library"])
def test_hidden_tests_pass_correct_estimators_and_fail_wrong_ones(fn, passes):
    namespace = {}
    exec(compile(_hidden_tests(), "<hidden tests of ex07_full_cov_test>", "exec"), namespace)  # noqa: S102 - the lesson's
    for _ in range(3):  # fresh random inputs each time
        if passes:
            namespace["_hidden_test"](fn)
        else:
            with pytest.raises(AssertionError):
                namespace["_hidden_test"](fn)
