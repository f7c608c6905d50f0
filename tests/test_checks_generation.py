"""Tests for lesson 2's fair-generator check (vae_lite._checks_generation, re-exported by grading): its
standard errors against a Monte Carlo spread, correct samplers pass (any square root, either estimate of
the covariance, fresh randomness), and each typical mistake fails with the hint that names it."""

import functools

import _checks  # tests/_checks.py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_lite import grading, sampling
from vae_lite._checks_generation import NUM_SAMPLES, _code_sets, _moment_se


# ------------------------------------------------------------ correct solutions
def _fit(codes):
    mean = jnp.mean(codes, axis=0)
    centred = codes - mean
    return mean, centred.T @ centred / codes.shape[0]


def cholesky_sampler(key, codes, num_samples):
    mean, cov = _fit(codes)
    return mean + jax.random.normal(key, (num_samples, codes.shape[1])) @ jnp.linalg.cholesky(cov).T


def unbiased_sampler(key, codes, num_samples):  # the 1/(n - 1) covariance, the upper Cholesky factor
    d = codes.shape[1]
    cov = jnp.cov(codes, rowvar=False).reshape(d, d)
    upper = jnp.linalg.cholesky(cov).T
    return jnp.mean(codes, axis=0) + jax.random.normal(key, (num_samples, d)) @ upper


def symmetric_root_sampler(key, codes, num_samples):  # the symmetric square root S^(1/2) = U diag(sqrt l) U^T
    mean, cov = _fit(codes)
    values, vectors = jnp.linalg.eigh(cov)
    root = (vectors * jnp.sqrt(values)) @ vectors.T
    return mean + jax.random.normal(key, (num_samples, codes.shape[1])) @ root


fails_with = functools.partial(_checks.fails_with, grading.check_fair_generator)


# ------------------------------------------------------------ the reference, independently
def test_covariance_standard_errors_match_a_monte_carlo_spread():
    """se(C_jk)^2 = (S_jj S_kk + S_jk^2) / N (Isserlis), against the spread of 4 000 sample covariances."""
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 0.95], [0.95, 0.25]])
    n, reps = 400, 4000
    z = rng.multivariate_normal([3.0, -2.0], cov, size=(reps, n))  # (reps, n, 2)
    centred = z - z.mean(axis=1, keepdims=True)
    sample_covs = np.einsum("rni,rnj->rij", centred, centred) / n
    se_mean, se_cov = _moment_se(cov, n)
    # the spread of a standard deviation estimated from 4 000 draws is known to about 1.2 %: 5 % is > 4 of those
    np.testing.assert_allclose(sample_covs.std(axis=0), se_cov, rtol=0.05)
    np.testing.assert_allclose(z.mean(axis=1).std(axis=0), se_mean, rtol=0.05)


def test_the_code_sets_are_the_ones_the_docstring_states():
    sets = _code_sets()
    assert [(c.shape[1], num_samples) for _, c, num_samples in sets] == [(2, 20_000), (1, 30_000), (10, 20_000)]
    comparisons = 0
    for _, codes, _ in sets:
        d = codes.shape[1]
        cov = np.cov(codes, rowvar=False, bias=True).reshape(d, d)
        assert np.all(np.abs(codes.mean(0)) > 0.1) or np.linalg.norm(codes.mean(0)) > 1.0  # a mean to forget
        assert np.linalg.matrix_rank(cov) == d and np.linalg.cond(cov) < 1e3  # full rank, float32-friendly
        assert np.max(np.abs(cov - np.eye(d))) > 0.5  # unit covariance is a detectable mistake
        comparisons += d + d * (d + 1) // 2
    assert comparisons == 72


# ------------------------------------------------------------ correct answers pass
@pytest.mark.parametrize("correct", [cholesky_sampler, unbiased_sampler, symmetric_root_sampler,
                                     jax.jit(cholesky_sampler, static_argnums=2)],
                         ids=["cholesky", "unbiased-upper", "symmetric-root", "jit"])
def test_correct_solution_passes(correct):
    assert "passed on 3 test inputs" in grading.check_fair_generator(correct)


@pytest.mark.parametrize("seed", range(8))
def test_the_tolerance_is_not_marginal(seed):
    """Eight more correct samplers, each its own random stream: the 6-standard-error bound is far from the
    typical worst deviation (about 2.5 standard errors over the 72 comparisons)."""

    def reseeded(key, codes, num_samples):
        return cholesky_sampler(jax.random.fold_in(key, 1000 + seed), codes, num_samples)

    assert "passed" in grading.check_fair_generator(reseeded)


def test_the_library_answer_is_refused_and_passes_once_unwrapped():
    fails_with(sampling.sample_fitted_gaussian, "vae_lite.sampling.sample_fitted_gaussian", "write it yourself")
    fails_with(lambda key, codes, n: sampling.sample_fitted_gaussian(key, codes, n), "the library's own answer")
    assert "passed" in grading.check_fair_generator.__wrapped__(sampling.sample_fitted_gaussian)


# ------------------------------------------------------------ typical mistakes
def _noise(key, codes, num_samples):
    return jax.random.normal(key, (num_samples, codes.shape[1]))


def _with(transform):
    """``mean + transform(noise, mean, cov, codes)`` with the maximum-likelihood fit."""

    def fn(key, codes, num_samples):
        mean, cov = _fit(codes)
        return transform(_noise(key, codes, num_samples), mean, cov, codes)

    return fn


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda key, codes, n: _noise(key, codes, n), "look like draws of N(0, I)"),
    (_with(lambda e, m, s, c: m + e), "covariance I"),
    (_with(lambda e, m, s, c: m + e * jnp.sqrt(jnp.diag(s))), "none of their correlations"),
    (_with(lambda e, m, s, c: m + e @ s), "SQUARED"),
    (_with(lambda e, m, s, c: m + e * jnp.diag(s)), "scaled each dimension's noise by its variance"),
    (_with(lambda e, m, s, c: e @ jnp.linalg.cholesky(s).T), "forgot to put the codes' mean back"),
    (_with(lambda e, m, s, c: m + e @ jnp.linalg.cholesky(s)), "from the wrong side"),
    (_with(lambda e, m, s, c: m + e @ jnp.sqrt(s)), "entry-by-entry square root"),
    (_with(lambda e, m, s, c: m + e @ jnp.linalg.cholesky(c.T @ c / len(c)).T), "not centred"),
    (_with(lambda e, m, s, c: m + e @ jnp.linalg.cholesky(s * len(c)).T), "n times too large"),
])
def test_mistakes_are_named(wrong, hint):
    fails_with(wrong, hint, "test input 1 of 3")


def test_resampling_or_returning_the_codes_is_not_generating():
    fails_with(lambda key, codes, n: codes[jax.random.randint(key, (n,), 0, len(codes))], "exact copies of codes")
    fails_with(lambda key, codes, n: codes, "has shape (500, 2), expected (20000, 2)", "one row per code")


def test_shape_mistakes():
    fails_with(lambda key, codes, n: cholesky_sampler(key, codes, n).T, "transposed")
    fails_with(lambda key, codes, n: jnp.zeros((n, len(codes))), "between the codes")
    fails_with(lambda key, codes, n: cholesky_sampler(key, codes, n)[:, 0] if codes.shape[1] == 1
               else cholesky_sampler(key, codes, n), "test input 2 of 3", "even when d = 1")


def test_a_scalar_covariance_for_one_dimension_is_reported_on_that_input():
    def scalar_cov(key, codes, num_samples):  # jnp.cov of a single column is a scalar, not (1, 1)
        cov = jnp.cov(codes, rowvar=False)
        return jnp.mean(codes, 0) + _noise(key, codes, num_samples) @ jnp.linalg.cholesky(cov).T

    fails_with(scalar_cov, "raised", "test input 2 of 3", "(50, 1)")


def test_nan_from_an_entrywise_root_of_a_negative_covariance():
    def entrywise(key, codes, num_samples):
        mean, cov = _fit(codes)
        return mean + _noise(key, codes, num_samples) @ jnp.sqrt(cov - 1.0)

    fails_with(entrywise, "NaN", "entry-by-entry square root")


def test_randomness_must_come_from_the_key():
    rng = np.random.default_rng(0)

    def global_state(key, codes, num_samples):
        mean, cov = _fit(codes)
        return mean + rng.normal(size=(num_samples, codes.shape[1])) @ np.linalg.cholesky(np.asarray(cov)).T

    fails_with(global_state, "the same key gave different samples")
    fails_with(lambda key, codes, n: cholesky_sampler(jax.random.key(0), codes, n),
               "two different keys gave the same samples")


@pytest.mark.parametrize(("broken", "fragment"), [
    (lambda key, codes, n: (_ for _ in ()).throw(NotImplementedError()), "not implemented yet"),
    (lambda key, codes, n: None, "None"),
    (lambda key, codes, n: cholesky_sampler(key, codes, n) * jnp.nan, "NaN"),
    (lambda key, codes, n: (cholesky_sampler(key, codes, n), 0.0), "single array"),
    (lambda key, codes, n: 1 / 0, "raised ZeroDivisionError"),
])
def test_broken_functions_fail_with_a_message(broken, fragment):
    fails_with(broken, fragment, "test input 1 of 3")


# ------------------------------------------------------------ no hint writes the answer
def test_the_check_draws_as_many_samples_as_its_docstring_says():
    assert NUM_SAMPLES == 20_000 and "20 000`` (30 000 for d = 1)" in grading.check_fair_generator.__doc__
    assert "< 1e-6" in grading.check_fair_generator.__doc__
