"""Tests for vae_lite.factorization against independent references (scipy, brute force)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_lite import factorization


def binary_images(seed, num_images, num_pixels, p=0.3):
    rng = np.random.default_rng(seed)
    return jnp.asarray((rng.random((num_images, num_pixels)) < p).astype(np.float32))


def test_fit_pixel_probs_is_smoothed_mean_and_maximises_likelihood():
    x = binary_images(0, 50, 6)
    np.testing.assert_allclose(factorization.fit_pixel_probs(x, 0.0), x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(factorization.fit_pixel_probs(x, 1.0), (x.sum(0) + 1) / (50 + 2), rtol=1e-6)
    # the MLE is a stationary point of the data set log-likelihood
    probs = factorization.fit_pixel_probs(x, 0.0)
    grad = jax.grad(factorization.dataset_log_likelihood, argnums=1)(x, probs)
    np.testing.assert_allclose(grad, 0.0, atol=1e-3)


@pytest.mark.parametrize("jit", [False, True])
def test_image_log_likelihood_matches_scipy(jit):
    x = binary_images(1, 7, 10)
    probs = jnp.linspace(0.05, 0.95, 10)
    fn = jax.jit(factorization.image_log_likelihood) if jit else factorization.image_log_likelihood
    expected = stats.bernoulli.logpmf(np.asarray(x), np.asarray(probs)).sum(-1)
    np.testing.assert_allclose(fn(x, probs), expected, rtol=1e-5)
    np.testing.assert_allclose(fn(x[0], probs), expected[0], rtol=1e-5)


def test_image_log_likelihood_handles_certain_pixels():
    x = jnp.array([0.0, 1.0, 1.0])
    probs = jnp.array([0.0, 1.0, 0.5])
    np.testing.assert_allclose(factorization.image_log_likelihood(x, probs), np.log(0.5), rtol=1e-6)


def test_dataset_log_likelihood_is_sum_over_images():
    x = binary_images(2, 20, 8)
    probs = factorization.fit_pixel_probs(x)
    per_image = [stats.bernoulli.logpmf(np.asarray(xi), np.asarray(probs)).sum() for xi in x]
    np.testing.assert_allclose(factorization.dataset_log_likelihood(x, probs), sum(per_image), rtol=1e-5)


@pytest.mark.parametrize(
    "a, b, column", [(1.0, 1.0, [1, 0, 1, 1]), (2.0, 5.0, [0, 0, 0, 1, 0, 1, 0, 0, 1, 0])]
)
def test_beta_bernoulli_matches_numerical_integral(a, b, column):
    x = np.array(column, dtype=np.float32)
    k, n = x.sum(), len(x)

    def integrand(theta):
        return theta**k * (1 - theta) ** (n - k) * stats.beta.pdf(theta, a, b)

    value, _ = integrate.quad(integrand, 0.0, 1.0, epsabs=1e-13, epsrel=1e-8)
    np.testing.assert_allclose(
        factorization.beta_bernoulli_log_marginal(jnp.asarray(x), a, b), np.log(value), rtol=1e-5
    )


def test_beta_bernoulli_multi_pixel_is_sum_of_columns_and_single_image_is_prior_mean():
    x = binary_images(3, 6, 4, p=0.5)
    a, b = 2.0, 3.0
    columns = sum(factorization.beta_bernoulli_log_marginal(x[:, j], a, b) for j in range(4))
    np.testing.assert_allclose(factorization.beta_bernoulli_log_marginal(x, a, b), columns, rtol=1e-5)
    singles = factorization.beta_bernoulli_single_log_marginals(x, a, b)
    for i in range(6):
        np.testing.assert_allclose(
            singles[i], factorization.beta_bernoulli_log_marginal(x[i : i + 1], a, b), rtol=1e-5
        )


def test_shared_theta_breaks_factorisation():
    # two identical images: a shared theta makes the second one more probable given the first
    x = jnp.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    joint = factorization.beta_bernoulli_log_marginal(x)
    separate = jnp.sum(factorization.beta_bernoulli_single_log_marginals(x))
    # closed form with a = b = 1: log p(x_1, x_2) = 3 log(1/3), sum of singles = 6 log(1/2)
    np.testing.assert_allclose(joint, 3 * np.log(1 / 3), rtol=1e-5)
    np.testing.assert_allclose(separate, 6 * np.log(1 / 2), rtol=1e-5)
    assert joint - separate > 0.8


def test_minibatch_estimate_is_unbiased_and_exact_for_full_batch():
    x = binary_images(4, 200, 10)
    probs = factorization.fit_pixel_probs(x)
    full = factorization.dataset_log_likelihood(x, probs)

    def log_lik(xb):
        return factorization.image_log_likelihood(xb, probs)

    exact = factorization.minibatch_log_likelihood(jax.random.key(0), log_lik, x, 200)
    np.testing.assert_allclose(exact, full, rtol=1e-5)
    keys = jax.random.split(jax.random.key(1), 4000)
    estimates = jax.vmap(lambda k: factorization.minibatch_log_likelihood(k, log_lik, x, 10))(keys)
    standard_error = np.std(estimates) / np.sqrt(len(keys))
    assert abs(np.mean(estimates) - full) < 4 * standard_error, (np.mean(estimates), full, standard_error)


def test_bad_shapes_raise():
    x = binary_images(5, 4, 3)
    with pytest.raises(ValueError, match=r"probs must have shape \(3,\), got \(4,\)"):
        factorization.image_log_likelihood(x, jnp.ones(4) * 0.5)
    with pytest.raises(ValueError, match="num_images, pixels"):
        factorization.dataset_log_likelihood(x[0], jnp.ones(3) * 0.5)
    with pytest.raises(ValueError, match="floating-point"):
        factorization.image_log_likelihood(x.astype(jnp.int32), jnp.ones(3) * 0.5)
    with pytest.raises(ValueError, match="batch_size"):
        factorization.minibatch_log_likelihood(jax.random.key(0), lambda xb: xb.sum(-1), x, 5)
    with pytest.raises(ValueError, match="one value per image"):
        factorization.minibatch_log_likelihood(jax.random.key(0), lambda xb: xb.sum(), x, 2)
    with pytest.raises(ValueError, match="pseudo_count"):
        factorization.fit_pixel_probs(x, -1.0)
