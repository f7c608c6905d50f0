"""Tests for vae_lite.grading: each check passes a correct solution, and fails typical wrong
ones with the hint that names the mistake; broken functions (blank, None, NaN, wrong shape,
tuple, exception, endless loop) fail with a message, never an unrelated traceback."""

import ast
import functools
import inspect
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _checks import fails_with  # tests/_checks.py
from jax.scipy.special import betaln
from jax.scipy.stats import norm

from vae_lite import distributions, explorer, factorization, grading, inference, posterior, sampling
from vae_lite import elbo as vae_elbo
from vae_lite.distributions import kl_normal_std, log_bernoulli, log_normal_diag, log_normal_std


# ------------------------------------------------------------ correct solutions, one per exercise
def image_log_likelihood(x, p):
    return jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))


def shared_theta_log_marginal(x, a, b):
    k, n = jnp.sum(x), x.shape[0]
    return betaln(a + k, b + n - k) - betaln(a, b)


def sample_mixture(key, weights, probs, num_samples):
    key_z, key_x = jax.random.split(key)
    z = jax.random.categorical(key_z, jnp.log(weights), shape=(num_samples,))
    return z, jax.random.bernoulli(key_x, probs[z]).astype(jnp.float32)


def sample_fitted_gaussian(key, codes, num_samples):
    mean = jnp.mean(codes, axis=0)
    centred = codes - mean
    root = jnp.linalg.cholesky(centred.T @ centred / codes.shape[0])
    return mean + jax.random.normal(key, (num_samples, codes.shape[1])) @ root.T


def normalize_on_grid(log_joint_values, cell_volume):
    log_evidence = jax.nn.logsumexp(log_joint_values) + jnp.log(cell_volume)
    return log_joint_values - log_evidence, log_evidence


def naive_log_evidence(key, log_likelihood, latent_dim, num_samples):
    z = jax.random.normal(key, (num_samples, latent_dim))
    return jax.nn.logsumexp(jax.vmap(log_likelihood)(z)) - jnp.log(num_samples)


def elbo_estimate(key, log_joint, mu, log_var, num_samples):
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))
    return jnp.mean(jax.vmap(log_joint)(z) - log_normal_diag(z, mu, log_var))


def kl_to_standard_normal(mu, log_var):
    return 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var)


def reparameterize(key, mu, log_var):
    return mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)


def score_function_loo(key, f, mu, log_var, num_samples):
    eps = jax.random.normal(key, (num_samples, mu.shape[0]))
    z = mu + jnp.exp(0.5 * log_var) * eps
    values = jax.vmap(f)(z)
    centred = (values - (jnp.sum(values) - values) / (num_samples - 1))[:, None]  # leave-one-out baseline
    return centred * (z - mu) * jnp.exp(-log_var), centred * 0.5 * ((z - mu) ** 2 * jnp.exp(-log_var) - 1.0)


def negative_elbo_loss(x, logits, mu, log_var):
    return jnp.mean(kl_normal_std(mu, log_var) - log_bernoulli(x, logits))


def mean_field_step(key, log_joint, mu, log_var, learning_rate, num_samples):
    grad_mu, grad_log_var = jax.grad(vae_elbo.elbo, argnums=(2, 3))(key, log_joint, mu, log_var, num_samples)
    return mu + learning_rate * grad_mu, log_var + learning_rate * grad_log_var


def refine(key, log_joint, mu, log_var, learning_rate, num_steps, num_samples):
    for step_key in jax.random.split(key, num_steps):
        mu, log_var = mean_field_step(step_key, log_joint, mu, log_var, learning_rate, num_samples)
    return mu, log_var


def interpolate(z0, z1, t):
    return (1 - t)[:, None] * z0 + t[:, None] * z1


def inverse_cdf_grid(num_points):
    return norm.ppf((jnp.arange(num_points) + 0.5) / num_points)


CHECKS = [
    (grading.check_image_log_likelihood, image_log_likelihood),
    (grading.check_shared_theta_log_marginal, shared_theta_log_marginal),
    (grading.check_mixture_sampling, sample_mixture),
    (grading.check_grid_normalization, normalize_on_grid),
    (grading.check_naive_log_evidence, naive_log_evidence),
    (grading.check_elbo, elbo_estimate),
    (grading.check_kl_normal_std, kl_to_standard_normal),
    (grading.check_reparameterized_sample, reparameterize),
    (grading.check_score_function_loo, score_function_loo),
    (grading.check_negative_elbo, negative_elbo_loss),
    (grading.check_mean_field_step, mean_field_step),
    (grading.check_refinement, refine),
    (grading.check_interpolation, interpolate),
    (grading.check_inverse_cdf_grid, inverse_cdf_grid),
]
IDS = [check.__name__ for check, _ in CHECKS]
TUPLE_RESULTS = (sample_mixture, normalize_on_grid, score_function_loo, mean_field_step, refine)
SCALAR_CHECKS = [c for c in CHECKS if c[1] not in TUPLE_RESULTS]




# checks in modules of their own (grading._MODULE_CHECKS), each with its tests: tests/test_checks_<module>.py
MODULE_CHECKS = ["check_decoder", "check_encoder", "check_train_step", "check_vae_loss", "check_fair_generator",
                 "check_iwae_bound", "check_full_covariance_elbo"]


def test_the_catalogue_has_exactly_twenty_one_checks():
    names = sorted(name for name in dir(grading) if name.startswith("check_"))
    assert names == sorted(IDS + MODULE_CHECKS) and len(names) == 21


@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_correct_solution_passes(check, correct):
    assert "passed" in check(correct)


# ------------------------------------------------------------ broken functions, every check
@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_blank_exercise_says_not_implemented(check, correct):
    def blank(*args):
        raise NotImplementedError()

    message = fails_with(check, blank, "not implemented yet", "raise NotImplementedError()")
    assert "Traceback" not in message


@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_returning_none_says_forgot_return(check, correct):
    fails_with(check, lambda *args: None, "None", "return")


@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_nan_is_reported(check, correct):
    fails_with(check, lambda *args: jax.tree.map(lambda v: v * jnp.nan, correct(*args)), "NaN")


@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_wrong_shape_is_reported(check, correct):
    fails_with(check, lambda *args: jax.tree.map(lambda v: jnp.stack([v, v]), correct(*args)), "shape", "expected")


@pytest.mark.parametrize(("check", "correct"), SCALAR_CHECKS, ids=[c.__name__ for c, _ in SCALAR_CHECKS])
def test_tuple_instead_of_array_is_reported(check, correct):
    fails_with(check, lambda *args: (correct(*args), 0.0), "tuple", "single array")


@pytest.mark.parametrize(("check", "correct"), CHECKS, ids=IDS)
def test_exception_in_student_code_is_reported_with_its_line(check, correct):
    def broken(*args):
        return 1 / 0

    fails_with(check, broken, "raised ZeroDivisionError", "return 1 / 0", "test input 1")


@pytest.mark.parametrize(("check", "correct"), CHECKS[:3], ids=IDS[:3])
def test_endless_loop_is_stopped(check, correct, monkeypatch):
    monkeypatch.setattr("vae_lite._checking.TIME_LIMIT_S", 0.3)

    def endless(*args):
        while True:
            pass

    fails_with(check, endless, "took longer than", "vectorise")


def test_non_callable_and_non_array_results_are_reported():
    fails_with(grading.check_kl_normal_std, 3.0, "expected a function")
    fails_with(grading.check_kl_normal_std, lambda mu, log_var: "1.0", "real-valued array")
    fails_with(grading.check_kl_normal_std, lambda mu, log_var: [1.0], "list")


def test_message_shows_input_expected_and_got():
    message = fails_with(grading.check_kl_normal_std, lambda mu, log_var: -kl_to_standard_normal(mu, log_var))
    for part in ("check_kl_normal_std", "test input 1 of 3", "input:", "mu = ", "expected: ", "got: ", "hint: "):
        assert part in message


# ------------------------------------------------------------ typical mistakes, check by check
def _pixel_terms(x, p):
    return x * jnp.log(p) + (1 - x) * jnp.log1p(-p)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda x, p: _pixel_terms(x, p), "sum over the pixels"),
    (lambda x, p: jnp.mean(_pixel_terms(x, p)), "averaged over the pixels"),
    (lambda x, p: -jnp.sum(_pixel_terms(x, p)), "sign is flipped"),
    (lambda x, p: jnp.exp(jnp.sum(_pixel_terms(x, p))), "likelihood itself"),
    (lambda x, p: jnp.sum(_pixel_terms(1 - x, p)), "swapped"),
    (lambda x, p: jnp.sum(x * jnp.log(p)), "black pixels"),
    (lambda x, p: jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(x)), "never log(x)"),
])
def test_image_log_likelihood_mistakes(wrong, hint):
    fails_with(grading.check_image_log_likelihood, wrong, hint)


def _iid(x, a, b):
    k, n, mean = jnp.sum(x), x.shape[0], a / (a + b)
    return k * jnp.log(mean) + (n - k) * jnp.log1p(-mean)


@pytest.mark.parametrize(("wrong", "hint"), [
    (_iid, "its own theta"),
    (lambda x, a, b: betaln(a + jnp.sum(x), b + x.shape[0] - jnp.sum(x)), "normaliser"),
    (lambda x, a, b: betaln(a + x.shape[0] - jnp.sum(x), b + jnp.sum(x)) - betaln(a, b), "swapped"),
    (lambda x, a, b: jnp.sum(x * jnp.log(jnp.mean(x)) + (1 - x) * jnp.log1p(-jnp.mean(x))), "plugged in"),
    (lambda x, a, b: jnp.exp(shared_theta_log_marginal(x, a, b)), "probability; return its log"),
])
def test_shared_theta_mistakes(wrong, hint):
    fails_with(grading.check_shared_theta_log_marginal, wrong, hint)


def _sampler(choose_z, choose_x):
    def sample(key, weights, probs, num_samples):
        key_z, key_x = jax.random.split(key)
        z = choose_z(key_z, weights, num_samples)
        return z, choose_x(key_x, weights, probs, z).astype(jnp.float32)

    return sample


_good_z = lambda key, w, n: jax.random.categorical(key, jnp.log(w), shape=(n,))  # noqa: E731
_good_x = lambda key, w, probs, z: jax.random.bernoulli(key, probs[z])  # noqa: E731


@pytest.mark.parametrize(("wrong", "hint"), [
    (_sampler(lambda key, w, n: jax.random.randint(key, (n,), 0, w.shape[0]), _good_x), "uniformly"),
    (_sampler(lambda key, w, n: jax.random.categorical(key, w, shape=(n,)), _good_x), "LOG-probabilities"),
    (_sampler(_good_z, lambda key, w, probs, z: jax.random.bernoulli(key, (w @ probs)[None], (z.shape[0], probs.shape[1]))),
     "does not follow its component"),
    (_sampler(_good_z, lambda key, w, probs, z: jax.random.bernoulli(key, 1 - probs[z])), "flipped"),
    (_sampler(_good_z, lambda key, w, probs, z: probs[z]), "0/1 pixel samples"),
    (lambda key, weights, probs, n: sample_mixture(jax.random.key(0), weights, probs, n), "same samples"),
    (lambda key, weights, probs, n: sample_mixture(key, weights, probs, n)[1], "expected a tuple (z, x)"),
])
def test_mixture_sampling_mistakes(wrong, hint):
    fails_with(grading.check_mixture_sampling, wrong, hint)


def _grid(log_evidence_of):
    def normalize(values, volume):
        log_evidence = log_evidence_of(values, volume)
        return values - log_evidence, log_evidence

    return normalize


@pytest.mark.parametrize(("wrong", "hint"), [
    (_grid(lambda v, vol: jax.nn.logsumexp(v)), "forgot the cell volume"),
    (_grid(lambda v, vol: jax.nn.logsumexp(v) + vol), "added cell_volume itself to a log"),
    (_grid(lambda v, vol: jax.nn.logsumexp(v) - jnp.log(v.shape[0])), "averaged over the grid points"),
    (_grid(lambda v, vol: jnp.log(jnp.sum(jnp.exp(v)) * vol)), "logsumexp"),
    (lambda v, vol: normalize_on_grid(v, vol)[::-1], "in this order"),
    (lambda v, vol: (v - jax.nn.logsumexp(v), normalize_on_grid(v, vol)[1]), "log-probabilities of the grid cells"),
    (lambda v, vol: (v + normalize_on_grid(v, vol)[1], normalize_on_grid(v, vol)[1]), "it does not multiply"),
])
def test_grid_normalization_mistakes(wrong, hint):
    fails_with(grading.check_grid_normalization, wrong, hint)


def _naive(combine, draw=lambda key, s, d: jax.random.normal(key, (s, d))):
    def estimate(key, log_likelihood, latent_dim, num_samples):
        z = draw(key, num_samples, latent_dim)
        return combine(jax.vmap(log_likelihood)(z), z)

    return estimate


@pytest.mark.parametrize(("wrong", "hint"), [
    (_naive(lambda ll, z: jnp.mean(ll)), "averaged the log-likelihoods"),
    (_naive(lambda ll, z: jax.nn.logsumexp(ll)), "the 1/S of the mean is missing"),
    (_naive(lambda ll, z: jnp.log(jnp.mean(jnp.exp(ll)))), "logsumexp"),
    (_naive(lambda ll, z: jax.nn.logsumexp(ll + log_normal_std(z)) - jnp.log(z.shape[0])), "added log p(z)"),
    (_naive(lambda ll, z: jax.nn.logsumexp(ll) - jnp.log(z.shape[0]),
            lambda key, s, d: jax.random.normal(jax.random.split(key)[1], (s, d))), "samples differ"),
])
def test_naive_log_evidence_mistakes(wrong, hint):
    fails_with(grading.check_naive_log_evidence, wrong, hint)


def _elbo_with(sigma_of, log_w):
    def estimate(key, log_joint, mu, log_var, num_samples):
        z = mu + sigma_of(log_var) * jax.random.normal(key, (num_samples, mu.shape[0]))
        return jnp.mean(log_w(jax.vmap(log_joint)(z), log_normal_diag(z, mu, log_var)))

    return estimate


def test_elbo_fails_an_iwae_estimate():
    fails_with(grading.check_elbo, vae_elbo.log_evidence_is, "close to log p(x)")


@pytest.mark.parametrize(("wrong", "hint"), [
    (_elbo_with(lambda lv: jnp.exp(0.5 * lv), lambda lj, lq: lj), "forgot the entropy"),
    (_elbo_with(lambda lv: jnp.exp(0.5 * lv), lambda lj, lq: lj + lq), "wrong sign of the entropy"),
    (_elbo_with(lambda lv: jnp.exp(lv), lambda lj, lq: lj - lq), "wrong spread"),
    (_elbo_with(lambda lv: lv, lambda lj, lq: lj - lq), "log_var as the standard deviation"),
    (_elbo_with(lambda lv: jnp.exp(0.5 * lv), lambda lj, lq: lq - lj), "negative ELBO"),
])
def test_elbo_mistakes(wrong, hint):
    fails_with(grading.check_elbo, wrong, hint)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda mu, lv: -kl_to_standard_normal(mu, lv), "never negative"),
    (lambda mu, lv: 0.5 * jnp.sum(mu**2 + jnp.exp(0.5 * lv) - 1 - 0.5 * lv), "where the formula needs the variance"),
    (lambda mu, lv: jnp.sum(mu**2 + jnp.exp(lv) - 1 - lv), "factor 1/2"),
    (lambda mu, lv: 0.5 * jnp.sum(mu**2 + jnp.exp(lv) - lv), "check your constant term"),
    (lambda mu, lv: 0.5 * jnp.sum((1 + mu**2) / jnp.exp(lv) - 1 + lv), "reverse direction"),
    (lambda mu, lv: 0.5 * (mu**2 + jnp.exp(lv) - 1 - lv), "sum them"),
    (lambda mu, lv: 0.5 * jnp.sum(mu**2 + lv - 1 - jnp.log(lv)), "log of a negative number"),
])
def test_kl_mistakes(wrong, hint):
    fails_with(grading.check_kl_normal_std, wrong, hint)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda key, mu, lv: mu + jnp.exp(lv) * jax.random.normal(key, mu.shape), "the variance, as the standard deviation"),
    (lambda key, mu, lv: jnp.exp(0.5 * lv) * jax.random.normal(key, mu.shape), "centred at 0, not at mu"),
    (lambda key, mu, lv: mu + jnp.exp(0.5 * lv) * jax.random.normal(jax.random.split(key)[0], mu.shape),
     "different noise"),
    (lambda key, mu, lv: mu + jnp.sqrt(lv) * jax.random.normal(key, mu.shape), "the LOG of the variance"),
    (lambda key, mu, lv: jnp.asarray(np.asarray(reparameterize(key, mu, lv))), "jax.grad of your function raised"),
    (lambda key, mu, lv: mu + jnp.exp(0.5 * jax.lax.stop_gradient(lv)) * jax.random.normal(key, mu.shape),
     "no gradient reaches log_var"),
])
def test_reparameterize_mistakes(wrong, hint):
    fails_with(grading.check_reparameterized_sample, wrong, hint)


def _loo(baseline=lambda values, f, mu: (jnp.sum(values) - values) / (values.shape[0] - 1),
         score_mu=lambda z, mu, lv: (z - mu) * jnp.exp(-lv),
         score_log_var=lambda z, mu, lv: 0.5 * ((z - mu) ** 2 * jnp.exp(-lv) - 1.0),
         draw=lambda key, s, d: jax.random.normal(key, (s, d))):
    def estimate(key, f, mu, log_var, num_samples):
        z = mu + jnp.exp(0.5 * log_var) * draw(key, num_samples, mu.shape[0])
        values = jax.vmap(f)(z)
        centred = (values - baseline(values, f, mu))[:, None]
        return centred * score_mu(z, mu, log_var), centred * score_log_var(z, mu, log_var)

    return estimate


@pytest.mark.parametrize(("wrong", "hint"), [
    (_loo(baseline=lambda values, f, mu: 0.0), "plain REINFORCE"),
    (_loo(baseline=lambda values, f, mu: jnp.mean(values)), "mean of ALL samples"),
    (_loo(baseline=lambda values, f, mu: (jnp.sum(values) - values) / values.shape[0]), "only S - 1 of them"),
    (_loo(baseline=lambda values, f, mu: f(mu)), "constant baseline such as f(mu)"),
    (_loo(score_mu=lambda z, mu, lv: (z - mu) * jnp.exp(-0.5 * lv)), "off by a factor of sigma"),
    (_loo(score_mu=lambda z, mu, lv: (mu - z) * jnp.exp(-lv)), "sign of the score"),
    (_loo(score_log_var=lambda z, mu, lv: (z - mu) ** 2 * jnp.exp(-lv) - 1.0), "twice the right one"),
    (_loo(score_log_var=lambda z, mu, lv: 0.5 * (z - mu) ** 2 * jnp.exp(-lv)), "misses its constant term"),
    (_loo(score_log_var=lambda z, mu, lv: ((z - mu) ** 2 * jnp.exp(-lv) - 1.0) * jnp.exp(-0.5 * lv)), "score of sigma"),
    (lambda *args: jax.tree.map(lambda g: jnp.mean(g, axis=0), score_function_loo(*args)), "averaged over the samples"),
    (lambda *args: score_function_loo(*args)[::-1], "swapped"),
    (_loo(draw=lambda key, s, d: jax.random.normal(jax.random.split(key)[1], (s, d))), "samples differ"),
])
def test_score_function_loo_mistakes(wrong, hint):
    fails_with(grading.check_score_function_loo, wrong, hint)


def test_score_function_loo_statistical_check_catches_a_biased_or_noisy_estimator():
    """Right on few samples but not in distribution: the last input's mean and variance tests speak."""
    def biased_when_large(key, f, mu, log_var, num_samples):
        grad_mu, grad_log_var = score_function_loo(key, f, mu, log_var, num_samples)
        return (grad_mu + 0.5, grad_log_var) if num_samples > 1000 else (grad_mu, grad_log_var)

    def noisy_when_large(key, f, mu, log_var, num_samples):
        if num_samples <= 1000:
            return score_function_loo(key, f, mu, log_var, num_samples)
        return _loo(baseline=lambda values, f, mu: 0.0)(key, f, mu, log_var, num_samples)

    fails_with(grading.check_score_function_loo, biased_when_large, "4 standard errors", "test input 4")
    fails_with(grading.check_score_function_loo, noisy_when_large, "no less noisy than plain REINFORCE")


def _per_example(x, logits, mu, log_var):
    return kl_normal_std(mu, log_var) - log_bernoulli(x, logits)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda x, lg, mu, lv: jnp.sum(_per_example(x, lg, mu, lv)), "summed over the batch"),
    (lambda x, lg, mu, lv: -negative_elbo_loss(x, lg, mu, lv), "returned the ELBO"),
    (lambda x, lg, mu, lv: jnp.mean(-kl_normal_std(mu, lv) - log_bernoulli(x, lg)), "wrong sign of the KL"),
    (lambda x, lg, mu, lv: jnp.mean(-log_bernoulli(x, lg)), "forgot the KL term"),
    (lambda x, lg, mu, lv: _per_example(x, lg, mu, lv), "mean over the batch"),
    (lambda x, lg, mu, lv: jnp.mean(kl_normal_std(mu, lv) - jnp.mean(x * lg - jax.nn.softplus(lg), -1)),
     "averaged over pixels"),
    (lambda x, lg, mu, lv: jnp.mean(kl_normal_std(mu, lv) - jnp.sum(
        x * jnp.log(jax.nn.sigmoid(lg)) + (1 - x) * jnp.log(1 - jax.nn.sigmoid(lg)), -1)), "log_bernoulli"),
])
def test_negative_elbo_mistakes(wrong, hint):
    fails_with(grading.check_negative_elbo, wrong, hint)


def _step(update, key_of=lambda key: key):
    def step(key, log_joint, mu, log_var, learning_rate, num_samples):
        grads = jax.grad(vae_elbo.elbo, argnums=(2, 3))(key_of(key), log_joint, mu, log_var, num_samples)
        return update((mu, log_var), grads, learning_rate)

    return step


@pytest.mark.parametrize(("wrong", "hint"), [
    (_step(lambda p, g, lr: (p[0] - lr * g[0], p[1] - lr * g[1])), "descended"),
    (_step(lambda p, g, lr: g), "returned the gradient"),
    (_step(lambda p, g, lr: (p[0] + g[0], p[1] + g[1])), "ignored the learning rate"),
    (_step(lambda p, g, lr: (p[0] + lr * g[0], p[1])), "log_var was not updated"),
    (_step(lambda p, g, lr: (p[1] + lr * g[1], p[0] + lr * g[0])), "swapped"),
    (_step(lambda p, g, lr: (p[0] + lr * g[0], p[1] + lr * g[1]), lambda key: jax.random.split(key)[0]),
     "key as given"),
])
def test_mean_field_step_mistakes(wrong, hint):
    fails_with(grading.check_mean_field_step, wrong, hint)


def _refine(keys=lambda key, n: list(jax.random.split(key, n)), sign=1.0, rate=lambda lr: lr,
            finish=lambda params, grads: params):
    def refine_(key, log_joint, mu, log_var, learning_rate, num_steps, num_samples):
        grads = None
        for step_key in keys(key, num_steps):
            grads = jax.grad(vae_elbo.elbo, argnums=(2, 3))(step_key, log_joint, mu, log_var, num_samples)
            mu, log_var = mu + sign * rate(learning_rate) * grads[0], log_var + sign * rate(learning_rate) * grads[1]
        return finish((mu, log_var), grads)

    return refine_


def _chain(key, n):
    keys = []
    for _ in range(n):
        key, sub = jax.random.split(key)
        keys.append(sub)
    return keys


def _return_in_loop(key, log_joint, mu, log_var, learning_rate, num_steps, num_samples):
    for step_key in jax.random.split(key, num_steps):
        return mean_field_step(step_key, log_joint, mu, log_var, learning_rate, num_samples)
    return mu, log_var


@pytest.mark.parametrize(("wrong", "hint"), [
    (_refine(keys=lambda key, n: [key] * n), "same key at every step"),
    (_refine(keys=_chain), "not a chain of splits"),
    (_refine(keys=lambda key, n: list(jax.random.split(key, n))[:-1]), "one step too few"),
    (_refine(keys=lambda key, n: list(jax.random.split(key, n + 1))), "one step too many"),
    (_return_in_loop, "after the first step"),
    (_refine(sign=-1.0), "descended"),
    (_refine(finish=lambda params, grads: params if grads is None else grads), "returned the last gradient"),
    (_refine(rate=lambda lr: 1.0), "ignored the learning rate"),
    (_refine(finish=lambda params, grads: params[::-1]), "swapped"),
    (lambda key, lj, mu, lv, lr, n, s: (mu, lv), "one step too few"),  # test input 2 has num_steps = 1
])
def test_refinement_mistakes(wrong, hint):
    fails_with(grading.check_refinement, wrong, hint)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda z0, z1, t: interpolate(z1, z0, t), "endpoints are swapped"),
    (lambda z0, z1, t: interpolate(z0, z1, t).T, "transposed"),
    (lambda z0, z1, t: z0 + t[:, None] * z1, "z0 keeps its full weight"),
])
def test_interpolation_mistakes(wrong, hint):
    fails_with(grading.check_interpolation, wrong, hint)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda n: norm.ppf(jnp.linspace(0, 1, n)), "including 0 and 1"),
    (lambda n: norm.ppf((jnp.arange(n) + 1) / (n + 1)), "(i + 1) / (n + 1)"),
    (lambda n: (jnp.arange(n) + 0.5) / n, "map them through the inverse CDF"),
    (lambda n: inverse_cdf_grid(n)[::-1], "reversed"),
    (lambda n: norm.cdf((jnp.arange(n) + 0.5) / n), "its inverse"),
])
def test_inverse_cdf_grid_mistakes(wrong, hint):
    fails_with(grading.check_inverse_cdf_grid, wrong, hint)


def test_an_equivalent_correct_solution_also_passes():
    """Other correct schemes pass too: a linspace of midpoints, the library's reparameterize, fold_in keys in refine."""
    assert "passed" in grading.check_inverse_cdf_grid(lambda n: norm.ppf(jnp.linspace(0.5 / n, 1 - 0.5 / n, n)))
    assert "passed" in grading.check_elbo(
        lambda key, lj, mu, lv, s: jnp.mean(jax.vmap(lj)(z := mu + jnp.exp(0.5 * lv) * jax.random.normal(
            jax.random.split(key)[1], (s, mu.shape[0]))) - log_normal_diag(z, mu, lv)))
    # jax.random.split(key, n)[t] is jax.random.fold_in(key, t) (jax_threefry_partitionable, on by default)
    assert "passed" in grading.check_refinement(
        _refine(keys=lambda key, n: [jax.random.fold_in(key, t) for t in range(n)]))


# ------------------------------------------------------------ what a student cannot get away with
LIBRARY_ANSWERS = [
    (grading.check_image_log_likelihood, factorization.image_log_likelihood),
    (grading.check_shared_theta_log_marginal, factorization.beta_bernoulli_log_marginal),
    (grading.check_mixture_sampling, sampling.sample_mixture),
    (grading.check_fair_generator, sampling.sample_fitted_gaussian),
    (grading.check_grid_normalization, posterior.normalize_on_grid),
    (grading.check_naive_log_evidence, posterior.naive_log_evidence),
    (grading.check_elbo, vae_elbo.elbo),
    (grading.check_kl_normal_std, distributions.kl_normal_std),
    (grading.check_reparameterized_sample, distributions.reparameterize),
    (grading.check_mean_field_step, inference.mean_field_step),
    (grading.check_interpolation, explorer.interpolate),
    (grading.check_inverse_cdf_grid, explorer.inverse_cdf_grid),
]


@pytest.mark.parametrize(("check", "answer"), LIBRARY_ANSWERS, ids=[c.__name__ for c, _ in LIBRARY_ANSWERS])
def test_the_library_answer_is_rejected(check, answer):
    """The alias (``kl = distributions.kl_normal_std``) and a wrapper that only calls it both fail."""
    fails_with(check, answer, "the library's own answer", "write it yourself")

    def wrapper(*args):
        return answer(*args)

    fails_with(check, wrapper, "the library's own answer")


def test_library_answer_is_found_through_modules_helpers_jit_and_partial():
    kl = grading.check_kl_normal_std

    def helper(mu, log_var):
        return distributions.kl_normal_std(mu, log_var)

    def through_module(mu, log_var):
        return distributions.kl_normal_std(mu, log_var)

    def through_helper(mu, log_var):
        return helper(mu, log_var) + 0.0

    for fn in (through_module, through_helper, jax.jit(distributions.kl_normal_std),
               functools.partial(distributions.kl_normal_std), lambda mu, lv: jax.jit(helper)(mu, lv)):
        fails_with(kl, fn, "vae_lite.distributions.kl_normal_std")
    # using OTHER library functions is fine: the lesson 6 loss may call the library's KL
    assert "passed" in grading.check_negative_elbo(negative_elbo_loss)
    assert "passed" in grading.check_mean_field_step(mean_field_step)


@pytest.mark.parametrize("ending", ["sys.exit()", "exit(3)", "os._exit(0)", "raise SystemExit"])
def test_ending_the_program_is_one_failed_check(ending):
    namespace = {"sys": sys, "os": os}
    exec(f"def leave(mu, log_var):\n    {ending}", namespace)  # noqa: S102 - a fixed test snippet
    real_exit = os._exit
    fails_with(grading.check_kl_normal_std, namespace["leave"], "tried to end the program", "returns its result")
    assert os._exit is real_exit


def test_a_function_cannot_change_the_checks_inputs_or_references():
    """The attack from the issue: walk up to the check's frame, zero its arrays, return 0."""

    def zero_the_grader(x, p):
        for frame_info in inspect.stack():
            for value in list(frame_info.frame.f_locals.values()):
                if isinstance(value, np.ndarray) and value.flags.writeable:
                    value[...] = 0
        return jnp.float32(0.0)

    fails_with(grading.check_image_log_likelihood, zero_the_grader, "wrong value")

    def write_inputs(x, p):
        for frame_info in inspect.stack():
            for value in list(frame_info.frame.f_locals.values()):
                if isinstance(value, np.ndarray):
                    value[...] = 0  # read-only: raises
        return image_log_likelihood(x, p)

    fails_with(grading.check_image_log_likelihood, write_inputs, "raised ValueError", "read-only")


def test_a_retry_loop_that_catches_exception_is_still_stopped(monkeypatch):
    monkeypatch.setattr("vae_lite._checking.TIME_LIMIT_S", 0.3)

    def stubborn(mu, log_var):
        while True:
            try:
                while True:
                    pass
            except Exception:  # noqa: BLE001 - what a student might write
                continue

    message = fails_with(grading.check_kl_normal_std, stubborn, "took longer than 0 s", "vectorise")
    assert "never ends" in message


def test_checks_pass_correct_solutions_under_x64():
    """jax_enable_x64 on: a reparameterisation that keeps mu's dtype and one that draws float64 both pass."""
    script = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.stats import norm
        from vae_lite import grading
        print(grading.check_reparameterized_sample(
            lambda key, mu, lv: mu + jnp.exp(0.5 * lv) * jax.random.normal(key, mu.shape, mu.dtype)))
        print(grading.check_reparameterized_sample(
            lambda key, mu, lv: mu + jnp.exp(0.5 * lv) * jax.random.normal(key, mu.shape)))
        print(grading.check_naive_log_evidence(lambda key, ll, d, s: jax.nn.logsumexp(
            jax.vmap(ll)(jax.random.normal(key, (s, d)))) - jnp.log(s)))
        print(grading.check_kl_normal_std(lambda mu, lv: 0.5 * jnp.sum(mu**2 + jnp.exp(lv) - 1 - lv)))
        print(grading.check_inverse_cdf_grid(lambda n: norm.ppf((jnp.arange(n) + 0.5) / n)))
        def score_function_loo(key, f, mu, log_var, num_samples):
            eps = jax.random.normal(key, (num_samples, mu.shape[0]))  # float64 here
            z = mu + jnp.exp(0.5 * log_var) * eps
            values = jax.vmap(f)(z)
            centred = (values - (jnp.sum(values) - values) / (num_samples - 1))[:, None]
            return centred * (z - mu) * jnp.exp(-log_var), centred * 0.5 * ((z - mu) ** 2 * jnp.exp(-log_var) - 1)
        print(grading.check_score_function_loo(score_function_loo))
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("passed") == 6, done.stdout


# The 3-point exercises ask for a derivation: a wrong attempt gets the method, not the formula to copy.
@pytest.mark.parametrize(("check", "wrong", "formula"), [
    (grading.check_shared_theta_log_marginal, lambda x, a, b: jnp.float32(-1.0), "log B(a + k, b + N - k) - log B(a, b)"),
    (grading.check_fair_generator, lambda key, codes, n: 7.0 + jax.random.normal(key, (n, codes.shape[1])), "cholesky"),
    (grading.check_grid_normalization, lambda v, c: (v, jnp.float32(0.0)), "logsumexp(values) + log(cell_volume)"),
    (grading.check_kl_normal_std, lambda mu, log_var: jnp.float32(1.0), "- 1 - log_var"),
    (grading.check_inverse_cdf_grid, lambda n: jnp.zeros(n), "(i + 0.5) / n"),
    (grading.check_score_function_loo, lambda key, f, mu, log_var, s: (jnp.zeros((s, mu.shape[0])),) * 2,
     "(z_s - mu) / sigma**2"),
])
def test_derivation_exercises_hint_the_method_not_the_answer(check, wrong, formula):
    message = fails_with(check, wrong, "hint:")
    assert formula not in message, message


# ------------------------------------------------------------ no hint writes the answer
class _HintCollector:
    """Every hint string of every ``check_*`` of vae_lite/grading.py and vae_lite/_checks_training.py, by AST:
    the strings (f-strings with their ``{...}`` parts as written) given as ``hint=`` or ``nonfinite_hint=``,
    the values of a ``shape_hints`` dict, and the first element of every tuple of a ``variants=`` list,
    following local names, tuple unpacking, comprehensions, starred lists and helper functions (nested or
    module-level, e.g. ``_grad_variants``), and the module-level helpers a check calls, in those two files
    and in the machinery of vae_lite/_checking.py (``call``, ``as_array``, ...)."""

    FILES = ("grading.py", "_checks_training.py", "_checks_generation.py", "_checks_bounds.py",
             "_checks_full_covariance.py", "_checking.py")

    def __init__(self):
        root = os.path.dirname(os.path.abspath(grading.__file__))
        self.modules, self.parent, self.module_of, self.functions = [], {}, {}, {}
        for name in self.FILES:
            with open(os.path.join(root, name), encoding="utf-8") as source:
                tree = ast.parse(source.read())
            self.modules.append(tree)
            for node in ast.walk(tree):
                self.module_of[node] = tree
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node
            self.functions.update({n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)})
        self.active = set()
        self._item = self._resolving("item", self._item)
        self._items = self._resolving("items", self._items)
        self._strings = self._resolving("strings", self._strings)

    def _outermost(self, node):
        """The module-level function around ``node``."""
        while self.parent.get(node) is not None and self.parent[node] is not self.module_of[node]:
            node = self.parent[node]
        return node

    def _bound(self, name, where):
        """The expressions ``name`` can stand for at ``where`` (its function, else module level)."""
        found = []
        for scope in (self._outermost(where), self.module_of[where]):
            for node in ast.walk(scope) if isinstance(scope, ast.FunctionDef) else scope.body:
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and target.id == name:
                            found.append(node.value)
                        elif isinstance(target, ast.Tuple):
                            found += [e for j, t in enumerate(target.elts) if isinstance(t, ast.Name) and t.id == name
                                      for e in self._item(node.value, j)]
                elif isinstance(node, (ast.For, ast.comprehension)):
                    target = node.target
                    if isinstance(target, ast.Name) and target.id == name:
                        found += self._items(node.iter)
                    elif isinstance(target, ast.Tuple):
                        found += [e for j, t in enumerate(target.elts) if isinstance(t, ast.Name) and t.id == name
                                  for x in self._items(node.iter) for e in self._item(x, j)]
                elif isinstance(node, ast.FunctionDef) and node.name == name and node is not scope:
                    found.append(node)
            if found:
                return found
        return [self.functions[name]] if name in self.functions else []

    def _returns(self, call):
        functions = self._bound(call.func.id, call) if isinstance(call.func, ast.Name) else []
        return [r.value for f in functions if isinstance(f, ast.FunctionDef)
                for r in ast.walk(f) if isinstance(r, ast.Return) and r.value is not None]

    def _resolving(self, op, resolve):
        """``resolve`` wrapped so that a name bound to itself (``hint = hint + ...``) ends, not recurses."""

        def run(node, *args):
            key = (op, id(node), args)
            if key in self.active:
                return []
            self.active.add(key)
            try:
                return resolve(node, *args)
            finally:
                self.active.discard(key)

        return run

    def _item(self, node, j):
        """The expressions that can be element ``j`` of the tuple ``node``."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return [node.elts[j]] if j < len(node.elts) and not isinstance(node.elts[j], ast.Starred) else []
        if isinstance(node, ast.Name):
            return [e for b in self._bound(node.id, node) for e in self._item(b, j)]
        if isinstance(node, ast.Call):
            return [e for r in self._returns(node) for e in self._item(r, j)]
        return []

    def _items(self, node):
        """The expressions that can be elements of the list or tuple ``node``."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return [x for e in node.elts for x in (self._items(e.value) if isinstance(e, ast.Starred) else [e])]
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return [node.elt]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._items(node.left) + self._items(node.right)
        if isinstance(node, ast.Name):
            return [e for b in self._bound(node.id, node) for e in self._items(b)]
        if isinstance(node, ast.Call):
            return [e for r in self._returns(node) for e in self._items(r)]
        return []

    def _strings(self, node):
        """The strings ``node`` can evaluate to."""
        if isinstance(node, ast.Constant):
            return [node.value] if isinstance(node.value, str) else []
        if isinstance(node, ast.JoinedStr):
            return ["".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                            for v in node.values)]
        if isinstance(node, (ast.IfExp, ast.BoolOp)):
            return [s for v in ((node.body, node.orelse) if isinstance(node, ast.IfExp) else node.values)
                    for s in self._strings(v)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return [a + b for a in self._strings(node.left) for b in self._strings(node.right)]
        if isinstance(node, ast.Name):
            return [s for b in self._bound(node.id, node) for s in self._strings(b)]
        if isinstance(node, ast.Call):
            return [s for r in self._returns(node) for s in self._strings(r)]
        return []

    def _of(self, function, done):
        done.add(function.name)
        hints = []
        for node in ast.walk(function):
            for keyword in node.keywords if isinstance(node, ast.Call) else ():
                if keyword.arg in ("hint", "nonfinite_hint"):
                    hints += self._strings(keyword.value)
                elif keyword.arg == "shape_hints" and isinstance(keyword.value, ast.Dict):
                    hints += [s for v in keyword.value.values for s in self._strings(v)]
                elif keyword.arg == "variants":
                    hints += [s for v in self._items(keyword.value) for e in self._item(v, 0) for s in self._strings(e)]
        called = {n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for name in sorted(called - done):
            if name in self.functions:
                hints += self._of(self.functions[name], done)
        return hints

    def by_check(self):
        """``{check name: sorted hint strings, whitespace normalised}``."""
        return {node.name: sorted({" ".join(s.split()) for s in self._of(node, set())})
                for tree in self.modules for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")}


# What each exercise asks the student to find: no hint may write it (compared ignoring all whitespace).
ANSWER_FRAGMENTS = {
    "check_image_log_likelihood": ["x_j log p_j + (1 - x_j) log(1 - p_j)", "(1 - x_j) log(1 - p_j)",
                                   "log(1 - p) for black", "x * jnp.log(p)", "(1 - x) * jnp.log"],
    "check_shared_theta_log_marginal": ["a + k", "b + N - k", "b + (N - k)", "B(a + k", "betaln(a + k",
                                        "- log B(a, b)", "subtract log B(a, b)"],
    "check_mixture_sampling": ["categorical(key, jnp.log(weights)", "pass jnp.log(weights)",
                               "bernoulli(key, probs[z])", "probs[z]", "probs[z_s]", "probs[z, j]",
                               "shape=(num_samples,)"],
    "check_iwae_bound": ["logsumexp(log_w) - jnp.log(num_samples)", "- jnp.log(num_samples)", "- log K", "- log(K)",
                         "logsumexp(log_w)", "log_joint(z) - log q(z)", "log p(x, z_k) - log q(z_k)",
                         "exp(0.5 * log_var)", "mu + sigma * eps", "subtract log K", "logsumexp - log K"],
    "check_full_covariance_elbo": ["eps @ chol.T", "chol @ eps", "L @ eps", "mean + eps", "m + L eps",
                                   "2 * jnp.sum(jnp.log(jnp.diag", "sum(log(diag", "log(diag(chol", "2 sum_j log",
                                   "det(L)**2", "det(chol)**2", "det(L)^2", "square of", "0.5 * d * log", "d/2 log 2 pi",
                                   "d * log(2", "eps**2", "||eps||", "norm of the noise", "solve_triangular", "slogdet",
                                   "logpdf", "eps @ L"],
    "check_fair_generator": ["cholesky", "A A^T", "A @ A.T", "L L^T", "@ L.T", "eps @", "m + A", "mean + ",
                             "rowvar=False", "centred.T @ centred", "eigh", "sqrtm", "multivariate_normal",
                             "(z_i - m)(z_i - m)"],
    "check_grid_normalization": ["logsumexp(values) + log(cell_volume)", "logsumexp(log_joint_values)",
                                 "add log(cell_volume)", "+ log(cell_volume)", "includes log(cell_volume)",
                                 "carry the cell volume along as a log", "add its log",
                                 "log p(x, z_g) - log p(x)", "subtract log p(x)"],
    "check_naive_log_evidence": ["- log S", "- jnp.log(num_samples)", "logsumexp(log_likelihoods)",
                                 "subtract log(num_samples)", "logsumexp - log S"],
    "check_elbo": ["log_joint(z_s) - log q(z_s)", "subtract log q(z_s)", "E_q[log p(x, z)] - E_q[log q(z)]",
                   "sigma = exp(0.5 * log_var)", "exp(0.5 * log_var)", "mean over S samples"],
    "check_kl_normal_std": ["mu_j**2 + sigma_j**2", "mu**2 + exp(log_var)", "E_q[z_j**2]",
                            "E_q[(z_j - mu_j)**2] = sigma_j**2", "- 1 - log_var", "- log_var", "the -1"],
    "check_reparameterized_sample": ["mu + sigma * eps", "exp(0.5 * log_var)", "mu + exp(", "sigma = exp("],
    "check_score_function_loo": ["(z - mu) / sigma**2", "(z_s - mu) / sigma**2", "0.5 * ((z - mu)**2",
                                 "(z - mu)**2 / sigma**2 - 1", "/ (S - 1)", "sum_t f(z_t) - f(z_s)",
                                 "exp(0.5 * log_var) * eps", "eps**2 - 1"],
    "check_negative_elbo": ["mean over the batch of [KL", "- sum_j log Bern", "-reconstruction log-likelihood + KL",
                            "exp(0.5 * log_var)", "kl_normal_std(mu, log_var) - log_bernoulli",
                            "KL(q(z|x_b) || N(0, I)) -"],
    "check_mean_field_step": ["old + learning_rate * gradient", "params + learning_rate * gradient",
                              "+ learning_rate * grad", "argnums=(2, 3)", "mu + learning_rate"],
    "check_refinement": ["params + learning_rate * gradient", "+ learning_rate * grad", "argnums=(2, 3)",
                         "for step_key in", "mean_field_step(step_key"],
    "check_interpolation": ["(1 - t) * z0 + t * z1", "(1 - t_k) * z0 + t_k * z1", "(1 - t) * z0", "t[:, None]",
                            "weight (1 - t)"],
    "check_inverse_cdf_grid": ["(i + 0.5) / n", "i + 0.5", "0.5 / n", "from i / n to (i + 1) / n", "ppf"],
    "check_encoder": ["jax.nn.relu(self.hidden(x))", "self.mu(h)", "self.hidden = nnx.Linear", "linear heads",
                      "heads are linear"],
    "check_decoder": ["self.logits(jax.nn.relu(self.hidden(z)))", "jax.nn.relu(self.hidden(z))",
                      "self.hidden = nnx.Linear"],
    "check_vae_loss": ["mu + jnp.exp(0.5 * log_var)", "exp(0.5 * log_var)", "mu + sigma * eps",
                       "negative_elbo_loss(x, model.decoder(z)", "model.decoder(z)"],
    "check_train_step": ["nnx.value_and_grad(vae_loss)", "value_and_grad(vae_loss)(model, x, key)", "loss, grads =",
                         "vae_loss)(model"],
}


def test_no_hint_writes_the_answer():
    """A failed check names the mistake and points to the idea; it never writes the formula or the code that
    solves the exercise (the student would copy it instead of deriving it)."""
    hints = _HintCollector().by_check()
    checks = sorted(name for name in dir(grading) if name.startswith("check_"))
    assert sorted(hints) == checks == sorted(ANSWER_FRAGMENTS), "a check without hints or without fragments"
    # the collector reads every kind of hint: a generic hint, shape hints, helper-built and starred variants
    for check, hint in [("check_kl_normal_std", "sum them"), ("check_naive_log_evidence", "(no key splitting)"),
                        ("check_score_function_loo", "REINFORCE"), ("check_score_function_loo", "key as given"),
                        ("check_vae_loss", "no gradient reaches the encoder"), ("check_vae_loss", "the noise differs"),
                        ("check_refinement", "(not a chain of splits)"), ("check_encoder", "nnx.Linear"),
                        ("check_mixture_sampling", "component z = {k}")]:
        assert any(hint in h for h in hints[check]), f"{check}: no hint with {hint!r} found"
    for check, found in hints.items():
        assert len(found) >= 10, f"{check}: only {len(found)} hints found"

    def squeeze(text):
        return "".join(text.split())

    leaks = [f"{check}: {fragment!r} in {hint!r}" for check, fragments in ANSWER_FRAGMENTS.items()
             for hint in hints[check] for fragment in fragments if squeeze(fragment) in squeeze(hint)]
    assert not leaks, "hints that write the answer:\n" + "\n".join(leaks)
