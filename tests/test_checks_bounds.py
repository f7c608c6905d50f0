"""Tests for lesson 4's importance-weighted bound check (vae_lite._checks_bounds, re-exported by grading): its
references against independent ones (scipy's Gaussian density, the closed-form ELBO), correct bounds pass, and each
typical mistake or broken function fails with the message that names it; the notebook's hidden tests pass a correct
bound and fail wrong ones."""

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
from scipy.stats import multivariate_normal

from vae_lite import _checks_bounds as B
from vae_lite import elbo, grading
from vae_lite.distributions import log_normal_diag
from vae_lite.grading import _expected_log_joint, _expected_log_q, _linear_gaussian, _np_posterior

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_elbo.ipynb"


# ------------------------------------------------------------ correct solutions
def iwae_bound(key, log_joint, mu, log_var, num_samples):
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))
    log_w = jax.vmap(log_joint)(z) - log_normal_diag(z, mu, log_var)
    return jax.nn.logsumexp(log_w) - jnp.log(num_samples)


def iwae_bound_max_shift(key, log_joint, mu, log_var, num_samples):
    """Another correct way: subtract the largest log-weight before exponentiating."""
    eps = jax.random.normal(key, (num_samples, mu.shape[0]))
    z = mu + jnp.sqrt(jnp.exp(log_var)) * eps
    log_w = jax.vmap(log_joint)(z) - log_normal_diag(z, mu, log_var)
    top = jnp.max(log_w)
    return top + jnp.log(jnp.mean(jnp.exp(log_w - top)))


def _wrong(combine=lambda log_w: jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0]),
           spread=lambda log_var: jnp.exp(0.5 * log_var), weight=lambda log_joint, log_q: log_joint - log_q,
           noise=lambda key, s, d: jax.random.normal(key, (s, d)), shift=True):
    def bound(key, log_joint, mu, log_var, num_samples):
        z = (mu if shift else 0.0) + spread(log_var) * noise(key, num_samples, mu.shape[0])
        return combine(weight(jax.vmap(log_joint)(z), log_normal_diag(z, mu, log_var)))

    return bound


fails_with = functools.partial(_checks.fails_with, grading.check_iwae_bound)


# ------------------------------------------------------------ the references, independently
def test_exactness_model_has_a_diagonal_posterior_and_constant_weights():
    model, x = B._orthogonal_linear_gaussian(70, 4, (1.5, 0.7), 0.6)
    mean, cov, log_px = _np_posterior(model, x)
    w = np.asarray(model.W, dtype=float)
    assert np.allclose(w.T @ w, np.diag([1.5**2, 0.7**2]), atol=1e-6)  # orthogonal columns
    assert abs(cov[0, 1]) < 1e-6
    marginal = w @ w.T + model.sigma**2 * np.eye(len(x))
    assert np.isclose(log_px, multivariate_normal(np.asarray(model.b, float), marginal).logpdf(np.asarray(x, float)))
    bound = B._make_bound(model, x, mean, np.log(np.diag(cov)))
    eps = np.random.default_rng(0).standard_normal((50, 2))
    log_w = bound(eps, combine=lambda a: a)  # every weight is p(x)
    assert np.allclose(log_w, log_px, atol=1e-6)


def test_reference_bound_against_scipy_and_the_closed_form_elbo():
    model, x = _linear_gaussian(50, 4, 2, 0.8)
    mean, cov, log_px = _np_posterior(model, x)
    mu, log_var = mean + 0.4, np.log(np.diag(cov)) - 0.3
    eps = np.random.default_rng(1).standard_normal((400_000, 2))
    z = mu + np.exp(0.5 * log_var) * eps
    w, b = np.asarray(model.W, float), np.asarray(model.b, float)
    log_joint = (multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z)
                 + multivariate_normal(np.zeros(len(x)), model.sigma**2 * np.eye(len(x))).logpdf(
                     np.asarray(x, float) - z @ w.T - b))
    log_w = log_joint - multivariate_normal(mu, np.diag(np.exp(log_var))).logpdf(z)
    bound = B._make_bound(model, x, mu, log_var)
    assert np.allclose(bound(eps[:10]), np.log(np.mean(np.exp(log_w[:10]))), atol=1e-9)
    assert np.allclose(bound(eps, combine=lambda a: a), log_w, atol=1e-9)
    var = np.exp(log_var)
    exact_elbo = _expected_log_joint(model, x, mu, var) - _expected_log_q(log_var, var)
    assert abs(log_w.mean() - exact_elbo) < 5 * log_w.std() / np.sqrt(len(log_w))
    k10 = bound(eps.reshape(-1, 10, 2), combine=lambda a: B._log_mean_exp(a, axis=-1))
    assert exact_elbo < k10.mean() < log_px  # Jensen, both ways


def test_the_checks_noise_is_the_librarys():
    """With the same key the library's answer equals the reference from the noise the exercise prescribes."""
    model, x = _linear_gaussian(50, 4, 2, 0.8)
    mu, log_var = np.array([0.3, -0.2]), np.array([-0.5, 0.2])
    key = jax.random.key(3)
    bound = B._make_bound(model, x, mu, log_var)
    library = elbo.log_evidence_is(key, model.log_joint(x), jnp.asarray(mu, jnp.float32),
                                   jnp.asarray(log_var, jnp.float32), 30)
    assert np.isclose(float(library), bound(B._noise(key, 30, 2)[0]), atol=1e-4)


# ------------------------------------------------------------ correct answers pass
@pytest.mark.parametrize("correct", [iwae_bound, iwae_bound_max_shift, jax.jit(iwae_bound, static_argnums=(1, 4))])
def test_correct_solution_passes(correct):
    assert "passed on 10 test inputs" in grading.check_iwae_bound(correct)


def test_correct_solution_passes_under_x64():
    script = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from vae_lite import grading
        from vae_lite.distributions import log_normal_diag
        def iwae_bound(key, log_joint, mu, log_var, num_samples):
            z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))  # float64 here
            log_w = jax.vmap(log_joint)(z) - log_normal_diag(z, mu, log_var)
            return jax.nn.logsumexp(log_w) - jnp.log(num_samples)
        print(grading.check_iwae_bound(iwae_bound))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "passed" in done.stdout


# ------------------------------------------------------------ typical mistakes, each named
@pytest.mark.parametrize(("wrong", "hint"), [
    (_wrong(combine=jnp.mean), "that is the ELBO of ex04_elbo again"),
    (_wrong(combine=jax.nn.logsumexp), "off by log K"),
    (_wrong(weight=lambda log_joint, log_q: log_joint), "the weight has no q in it"),
    (_wrong(weight=lambda log_joint, log_q: log_joint + log_q), "wrong sign of log q"),
    (_wrong(combine=lambda log_w: jnp.log(jnp.mean(jnp.exp(log_w)))), "lesson 3's naive estimator"),
    (_wrong(spread=jnp.exp), "the wrong spread"),
    (_wrong(spread=lambda log_var: log_var), "log_var as the standard deviation"),
    (_wrong(spread=jnp.ones_like, shift=False), "come from N(0, I), not from q"),
    (_wrong(combine=jnp.max), "only the largest weight"),
    (_wrong(combine=lambda log_w: jnp.mean(jnp.exp(log_w))), "return its log"),
    (_wrong(noise=lambda key, s, d: jax.random.normal(jax.random.split(key)[1], (s, d))), "samples differ"),
    (_wrong(noise=lambda key, s, d: jax.random.normal(key, (d, s)).T), "not transposed"),
    (_wrong(combine=lambda log_w: log_w - jnp.log(log_w.shape[0])), "one value per sample"),
])
def test_mistakes_are_named(wrong, hint):
    fails_with(wrong, hint)


def test_naive_log_of_mean_fails_only_where_the_weights_underflow():
    message = fails_with(_wrong(combine=lambda log_w: jnp.log(jnp.mean(jnp.exp(log_w)))), "contains")
    assert "test input 7 of 10" in message  # the image-sized model; the first six inputs pass


def test_statistical_part_catches_a_bound_right_only_on_the_same_noise_inputs():
    """A function that gives the right number for the check's first seven keys and the ELBO elsewhere."""
    fixed = {tuple(np.asarray(jax.random.key_data(jax.random.key(s))).tolist()) for s in range(7)}

    def sneaky(key, log_joint, mu, log_var, num_samples):
        if tuple(np.asarray(jax.random.key_data(key)).tolist()) in fixed:
            return iwae_bound(key, log_joint, mu, log_var, num_samples)
        return _wrong(combine=jnp.mean)(key, log_joint, mu, log_var, num_samples)

    fails_with(sneaky, "the average over 20 keys", "the ELBO at every K")


# ------------------------------------------------------------ broken functions
def test_broken_functions_fail_with_a_message():
    def blank(*args):
        raise NotImplementedError()

    def broken(*args):
        return 1 / 0

    fails_with(blank, "not implemented yet", "raise NotImplementedError()")
    fails_with(lambda *args: None, "None", "return")
    fails_with(lambda *args: iwae_bound(*args) * jnp.nan, "NaN")
    fails_with(lambda *args: (iwae_bound(*args), 0.0), "tuple", "single array")
    fails_with(lambda *args: jnp.stack([iwae_bound(*args)] * 2), "shape", "expected")
    fails_with(broken, "raised ZeroDivisionError", "return 1 / 0", "test input 1")


def test_the_library_answer_is_rejected():
    fails_with(elbo.log_evidence_is, "the library's own answer", "write it yourself")

    def wrapper(*args):
        return elbo.log_evidence_is(*args)

    fails_with(wrapper, "vae_lite.elbo.log_evidence_is")


def test_endless_loop_is_stopped(monkeypatch):
    monkeypatch.setattr("vae_lite._checking.TIME_LIMIT_S", 0.3)

    def endless(*args):
        while True:
            pass

    fails_with(endless, "took longer than", "vectorise")


# ------------------------------------------------------------ the notebook's hidden tests
def _hidden_tests():
    return _checks.hidden_tests(NOTEBOOK, "ex04_iwae_test")


@pytest.mark.parametrize(("fn", "passes"), [
    (iwae_bound, True), (iwae_bound_max_shift, True),
    (_wrong(combine=jnp.mean), False), (_wrong(combine=jax.nn.logsumexp), False),
    (_wrong(weight=lambda log_joint, log_q: log_joint), False),
    (_wrong(combine=lambda log_w: jnp.log(jnp.mean(jnp.exp(log_w)))), False),
    (_wrong(spread=jnp.exp), False), (elbo.log_evidence_is, False),
])
def test_hidden_tests_pass_a_correct_bound_and_fail_wrong_ones(fn, passes):
    namespace = {}
    exec(compile(_hidden_tests(), "<hidden tests of ex04_iwae_test>", "exec"), namespace)  # noqa: S102 - the lesson's
    if passes:
        for _ in range(3):  # fresh random inputs each time
            namespace["_hidden_test"](fn)
    else:
        with pytest.raises(AssertionError):
            namespace["_hidden_test"](fn)
