"""Tests for vae_lite.sampling against independent references (chi-square, Kolmogorov-Smirnov, brute force, numpy)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_lite import sampling

WEIGHTS = jnp.array([0.5, 0.3, 0.2])
PROBS = jnp.array([[0.9, 0.1, 0.5, 0.8], [0.1, 0.9, 0.5, 0.2], [0.5, 0.5, 0.95, 0.05]])


def brute_force_log_lik(x, weights, probs):
    x, weights, probs = (np.asarray(a, dtype=np.float64) for a in (x, weights, probs))
    per_component = np.prod(probs**x * (1 - probs) ** (1 - x), axis=-1)
    return np.log(np.sum(weights * per_component))


def test_sample_mixture_frequencies_match_weights_chi_square():
    num_samples = 20_000
    z, x = sampling.sample_mixture(jax.random.key(0), WEIGHTS, PROBS, num_samples)
    assert z.shape == (num_samples,) and x.shape == (num_samples, 4)
    assert z.dtype == jnp.int32 and x.dtype == jnp.float32
    assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
    counts = np.bincount(np.asarray(z), minlength=3)
    # tolerance: reject only at the 0.1% level (a correct sampler fails 1 in 1000 seeds)
    p_value = stats.chisquare(counts, num_samples * np.asarray(WEIGHTS)).pvalue
    assert p_value > 1e-3, (counts, p_value)
    # pixel frequencies within each component match its probabilities (4.5 standard errors)
    for k in range(3):
        xk = np.asarray(x)[np.asarray(z) == k]
        se = np.sqrt(np.asarray(PROBS[k]) * (1 - np.asarray(PROBS[k])) / len(xk))
        assert np.all(np.abs(xk.mean(0) - np.asarray(PROBS[k])) < 4.5 * se)


@pytest.mark.parametrize("jit", [False, True])
def test_mixture_log_likelihood_matches_brute_force_and_normalises(jit):
    fn = jax.jit(sampling.mixture_log_likelihood) if jit else sampling.mixture_log_likelihood
    all_x = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=4)), dtype=jnp.float32)  # (16, 4)
    log_p = fn(all_x, WEIGHTS, PROBS)
    expected = [brute_force_log_lik(x, WEIGHTS, PROBS) for x in all_x]
    np.testing.assert_allclose(log_p, expected, rtol=1e-5)
    np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=1e-5)
    np.testing.assert_allclose(fn(all_x[3], WEIGHTS, PROBS), expected[3], rtol=1e-5)


def test_responsibilities_are_bayes_rule():
    x = jnp.array([1.0, 0.0, 1.0, 1.0])
    resp = sampling.responsibilities(x, WEIGHTS, PROBS)
    joint = np.asarray(WEIGHTS) * np.prod(np.where(np.asarray(x) == 1, PROBS, 1 - PROBS), axis=-1)
    np.testing.assert_allclose(resp, joint / joint.sum(), rtol=1e-5)


def test_em_increases_objective_monotonically_and_recovers_planted_mixture():
    true_probs = jnp.array([[0.95] * 8 + [0.05] * 8, [0.05] * 8 + [0.95] * 8, [0.95, 0.05] * 8])
    true_weights = jnp.array([0.5, 0.3, 0.2])
    _, x = sampling.sample_mixture(jax.random.key(1), true_weights, true_probs, 3000)
    fit = sampling.fit_mixture_em(jax.random.key(2), x, 3, num_iters=25, pseudo_count=0.01)
    steps = np.diff(np.asarray(fit.objective))
    assert np.all(steps > -1e-4), steps  # float32 round-off only
    assert fit.log_likelihood[-1] > fit.log_likelihood[0] + 1.0
    # recovered up to a permutation of the components
    order = [int(np.argmin(np.abs(np.asarray(fit.probs) - np.asarray(p)).sum(-1))) for p in true_probs]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(fit.weights[np.array(order)], true_weights, atol=0.03)
    np.testing.assert_allclose(fit.probs[np.array(order)], true_probs, atol=0.05)
    # the final mean log-likelihood agrees with mixture_log_likelihood
    np.testing.assert_allclose(
        fit.log_likelihood[-1],
        jnp.mean(sampling.mixture_log_likelihood(x, fit.weights, fit.probs)),
        rtol=1e-5,
    )


def test_ancestral_sample_from_decoder():
    w = jnp.array([[3.0, -3.0, 0.0]])  # latent_dim 1 -> 3 pixels

    def decoder(z):
        return z @ w

    z, x = sampling.ancestral_sample(jax.random.key(3), decoder, 1, 20_000)
    assert z.shape == (20_000, 1) and x.shape == (20_000, 3)
    np.testing.assert_allclose(z.mean(), 0.0, atol=0.03)
    np.testing.assert_allclose(z.std(), 1.0, atol=0.03)
    # E[x] = E[sigmoid(decoder(z))]; pixel 3 has logit 0 -> 0.5
    np.testing.assert_allclose(x.mean(0), jax.nn.sigmoid(decoder(z)).mean(0), atol=0.02)
    np.testing.assert_allclose(x[:, 2].mean(), 0.5, atol=0.02)


def test_nearest_distance_matches_numpy():
    rng = np.random.default_rng(0)
    x, ref = rng.random((37, 5)).astype(np.float32), rng.random((101, 5)).astype(np.float32)
    expected = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1)).min(-1)
    np.testing.assert_allclose(
        sampling.nearest_distance(jnp.asarray(x), jnp.asarray(ref), batch_size=8), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        sampling.nearest_distance(jnp.asarray(ref[:3]), jnp.asarray(ref)), 0.0, atol=2e-3
    )


def test_moment_matched_kl():
    z = jax.random.normal(jax.random.key(4), (20_000, 3))
    assert float(sampling.moment_matched_kl(z)) < 0.01
    shifted = 2.0 * z + 1.0  # mean 1, variance 4 per dimension
    expected = 0.5 * 3 * (4 + 1 - 1 - np.log(4))
    np.testing.assert_allclose(sampling.moment_matched_kl(shifted), expected, rtol=0.03)


def _codes(seed, n, mean, cov):
    """``n`` float32 codes drawn from N(mean, cov) with NumPy (the data the generator is fitted to)."""
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(mean, cov, size=n).astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_sample_fitted_gaussian_matches_the_codes_moments_and_distribution(jit):
    fn = jax.jit(sampling.sample_fitted_gaussian, static_argnums=2) if jit else sampling.sample_fitted_gaussian
    cov = np.array([[4.0, 1.8, -0.3], [1.8, 1.0, -0.1], [-0.3, -0.1, 0.25]])  # correlations 0.9, -0.3, -0.2
    codes = _codes(0, 400, [3.0, -2.0, 0.5], cov)
    num_samples = 50_000
    z = np.asarray(fn(jax.random.key(1), jnp.asarray(codes), num_samples), dtype=np.float64)
    assert z.shape == (num_samples, 3)
    c = codes.astype(np.float64)
    m, s = c.mean(0), np.cov(c, rowvar=False, bias=True)  # the maximum-likelihood fit
    # 6 Monte Carlo standard errors per entry: se(mean_j)^2 = S_jj / N, se(C_jk)^2 = (S_jj S_kk + S_jk^2) / N
    np.testing.assert_array_less(np.abs(z.mean(0) - m), 6 * np.sqrt(np.diag(s) / num_samples))
    se_cov = np.sqrt((np.outer(np.diag(s), np.diag(s)) + s**2) / num_samples)
    np.testing.assert_array_less(np.abs(np.cov(z, rowvar=False) - s), 6 * se_cov)
    # the whole distribution, not only two moments: squared Mahalanobis distances are chi-square with d dof
    diff = z - m
    mahalanobis = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(s), diff)
    assert stats.kstest(mahalanobis, stats.chi2(df=3).cdf).pvalue > 1e-3  # a correct sampler fails 1 in 1000


def test_sample_fitted_gaussian_one_dimension_singular_codes_and_keys():
    codes = _codes(2, 50, [1.5], [[0.09]])  # d = 1
    z = np.asarray(sampling.sample_fitted_gaussian(jax.random.key(3), jnp.asarray(codes), 20_000), dtype=np.float64)
    assert z.shape == (20_000, 1)
    sd = codes.astype(np.float64).std()
    np.testing.assert_allclose(z.std(), sd, rtol=6 * np.sqrt(0.5 / 20_000))
    assert stats.kstest(z[:, 0], stats.norm(codes.astype(np.float64).mean(), sd).cdf).pvalue > 1e-3
    # codes on a line in 2-D: a singular covariance; the samples stay on that line
    t = np.linspace(-1.0, 1.0, 30)
    line = np.stack([1.0 + 2.0 * t, -1.0 + 0.5 * t], axis=1).astype(np.float32)
    z_line = np.asarray(sampling.sample_fitted_gaussian(jax.random.key(4), jnp.asarray(line), 1000), dtype=np.float64)
    assert np.all(np.isfinite(z_line))
    np.testing.assert_allclose(z_line[:, 1], -1.0 + 0.25 * (z_line[:, 0] - 1.0), atol=1e-4)
    # the key decides the samples
    same = sampling.sample_fitted_gaussian(jax.random.key(3), jnp.asarray(codes), 20_000)
    other = sampling.sample_fitted_gaussian(jax.random.key(5), jnp.asarray(codes), 20_000)
    assert np.array_equal(np.asarray(same), z.astype(np.float32)) and not np.array_equal(np.asarray(other), np.asarray(same))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same K"):
        sampling.sample_mixture(jax.random.key(0), WEIGHTS[:2], PROBS, 5)
    with pytest.raises(ValueError, match="must match probs"):
        sampling.mixture_log_likelihood(jnp.ones(3), WEIGHTS, PROBS)
    with pytest.raises(ValueError, match="floating"):
        sampling.mixture_log_likelihood(jnp.ones(4, dtype=jnp.int32), WEIGHTS, PROBS)
    with pytest.raises(ValueError, match="pseudo_count"):
        sampling.fit_mixture_em(jax.random.key(0), jnp.ones((10, 4)), 2, pseudo_count=0.0)
    with pytest.raises(ValueError, match="num_images, pixels"):
        sampling.fit_mixture_em(jax.random.key(0), jnp.ones(4), 2)
    with pytest.raises(ValueError, match="same pixels"):
        sampling.nearest_distance(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="n > d"):
        sampling.moment_matched_kl(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="n >= 2 codes"):
        sampling.sample_fitted_gaussian(jax.random.key(0), jnp.ones(5), 3)
    with pytest.raises(ValueError, match="n >= 2 codes"):
        sampling.sample_fitted_gaussian(jax.random.key(0), jnp.ones((1, 3)), 3)
    with pytest.raises(ValueError, match="floating"):
        sampling.sample_fitted_gaussian(jax.random.key(0), jnp.ones((4, 2), dtype=jnp.int32), 3)
    with pytest.raises(ValueError, match="random key"):
        sampling.sample_fitted_gaussian(0, jnp.ones((4, 2)), 3)
    with pytest.raises(ValueError, match="num_samples"):
        sampling.sample_fitted_gaussian(jax.random.key(0), jnp.ones((4, 2)), 2.5)
