"""Tests for vae_lite.posterior against the exact linear-Gaussian model and independent formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_lite import _reference as R
from vae_lite import posterior
from vae_lite.distributions import log_normal_std


def make_model(latent_dim, data_dim=3, sigma=1.0, seed=0):
    model = posterior.LinearGaussian.random(jax.random.key(seed), data_dim, latent_dim, sigma)
    _, x = model.sample(jax.random.key(seed + 100), 1)
    return model, x[0]


def conditioned_gaussian(model, x):
    """p(z|x) from the joint Gaussian of (z, x) by the conditioning formula (an independent route)."""
    return R.linear_gaussian_posterior(model.W, model.b, model.sigma, x)


def exact_log_evidence(model, x):
    """log N(x; b, W W^T + sigma^2 I) in float64 (scipy)."""
    W, b = (np.asarray(a, np.float64) for a in (model.W, model.b))
    cov_x = W @ W.T + float(model.sigma) ** 2 * np.eye(len(b))
    return stats.multivariate_normal(b, cov_x).logpdf(np.asarray(x, np.float64))


def test_linear_gaussian_exact_formulas():
    model, x = make_model(2, data_dim=4, sigma=0.7)
    mean, cov = model.posterior(x)
    ref_mean, ref_cov = conditioned_gaussian(model, x)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-4, atol=1e-5)
    ref_log_px = exact_log_evidence(model, x)
    np.testing.assert_allclose(model.log_evidence(x), ref_log_px, rtol=1e-5)
    # Bayes: log p(x, z) - log p(z|x) = log p(x) at any z
    z = jnp.array([0.3, -1.2])
    log_post = stats.multivariate_normal(ref_mean, ref_cov).logpdf(np.asarray(z))
    np.testing.assert_allclose(model.log_joint(x)(z) - log_post, ref_log_px, rtol=1e-4)


def test_linear_gaussian_samples_have_marginal_covariance():
    model, _ = make_model(2, data_dim=3, sigma=0.5)
    _, x = model.sample(jax.random.key(7), 40_000)
    cov_x = model.W @ model.W.T + 0.25 * jnp.eye(3)
    np.testing.assert_allclose(jnp.mean(x, 0), model.b, atol=0.05)
    np.testing.assert_allclose(jnp.cov(x, rowvar=False), cov_x, atol=0.1 * float(jnp.max(cov_x)))


@pytest.mark.parametrize("latent_dim, points", [(1, 801), (2, 241)])
def test_grid_posterior_matches_exact_linear_gaussian(latent_dim, points):
    model, x = make_model(latent_dim)
    grid = [jnp.linspace(-6.0, 6.0, points)] * latent_dim
    result = jax.jit(lambda x: posterior.grid_posterior(model.log_joint(x), grid))(x)
    assert result.points.shape == (points**latent_dim, latent_dim)
    np.testing.assert_allclose(jnp.sum(jnp.exp(result.log_density)) * result.cell_volume, 1.0, rtol=1e-4)
    np.testing.assert_allclose(result.log_evidence, exact_log_evidence(model, x), atol=1e-3)
    mean, cov = posterior.grid_moments(result)
    exact_mean, exact_cov = conditioned_gaussian(model, x)
    np.testing.assert_allclose(mean, exact_mean, atol=2e-3)
    np.testing.assert_allclose(cov, exact_cov, atol=2e-3)


def test_make_grid_order_and_normalize_on_grid():
    points = posterior.make_grid([jnp.array([0.0, 1.0]), jnp.array([10.0, 20.0, 30.0])])
    np.testing.assert_array_equal(points, [[0, 10], [0, 20], [0, 30], [1, 10], [1, 20], [1, 30]])
    values = jnp.array([-1000.0, -1001.0, -1002.0])  # far below float32's exp range
    log_density, log_evidence = posterior.normalize_on_grid(values, 0.5)
    expected = np.log(0.5 * np.exp(np.array([0.0, -1.0, -2.0])).sum()) - 1000.0
    np.testing.assert_allclose(log_evidence, expected, rtol=1e-6)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_density)) * 0.5, 1.0, rtol=1e-5)


def naive_estimates(model, x, num_samples, repeats, seed=0):
    log_lik = lambda z: model.log_joint(x)(z) - log_normal_std(z)  # noqa: E731
    keys = jax.random.split(jax.random.key(seed), repeats)
    fn = jax.jit(jax.vmap(lambda k: posterior.naive_log_evidence(k, log_lik, model.W.shape[1], num_samples)))
    return np.asarray(fn(keys), np.float64)


def test_naive_monte_carlo_bias_and_variance_follow_the_delta_method():
    model, x = make_model(1, data_dim=2, sigma=1.0, seed=3)
    exact = exact_log_evidence(model, x)
    # independent reference by quadrature: the relative variance of p(x|z) under the prior,
    # v = E[p(x|z)^2] / p(x)^2 - 1; for large S, Var[log p_hat] ~ v / S and bias ~ -v / (2 S)
    z = np.linspace(-10, 10, 20_001)[:, None]
    log_lik = np.asarray(
        jax.vmap(lambda z: model.log_joint(x)(z) - log_normal_std(z))(jnp.asarray(z)), np.float64
    )
    dz = z[1, 0] - z[0, 0]
    v = np.sum(np.exp(2 * log_lik) * stats.norm.pdf(z[:, 0])) * dz / np.exp(2 * exact) - 1
    assert v > 0.05  # the test is informative only if the estimator is noisy
    biases, variances = [], []
    for num_samples in (1, 10, 100, 1000):
        est = naive_estimates(model, x, num_samples, repeats=4000)
        biases.append(np.mean(est) - exact)
        variances.append(np.var(est))
    # Jensen: log of an unbiased estimate is biased low, and the bias shrinks with S
    # (at S = 1000 the bias, -v/2000, is below the Monte Carlo noise of this test, so stop at 100)
    assert all(b < 0 for b in biases[:3]), biases
    assert abs(biases[0]) > abs(biases[1]) > abs(biases[2]), biases
    np.testing.assert_allclose(biases[2], -v / 200, atol=3 * np.sqrt(variances[2] / 4000))
    assert all(v1 > v2 for v1, v2 in zip(variances[:-1], variances[1:], strict=True)), variances
    # variance ~ 1/S: ten times the samples, about a tenth of the variance, at large S
    assert 7 < variances[2] / variances[3] < 13, variances
    np.testing.assert_allclose(variances[3], v / 1000, rtol=0.15)


def test_decoder_log_joint_and_likelihood():
    w = jnp.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]])  # latent_dim 2 -> 3 pixels

    def decoder(z):
        return z @ w

    x, z = jnp.array([1.0, 0.0, 1.0]), jnp.array([0.4, -0.7])
    probs = np.asarray(jax.nn.sigmoid(decoder(z)))
    ref = stats.bernoulli.logpmf(np.asarray(x), probs).sum()
    np.testing.assert_allclose(posterior.decoder_log_likelihood(decoder, x)(z), ref, rtol=1e-5)
    ref_joint = ref + stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(np.asarray(z))
    np.testing.assert_allclose(posterior.decoder_log_joint(decoder, x)(z), ref_joint, rtol=1e-5)


def test_grid_evaluations():
    assert [posterior.grid_evaluations(100, d) for d in (1, 2, 5)] == [100, 10_000, 10**10]
    assert posterior.grid_evaluations(100, 20) == 10**40  # exact Python int


def test_bad_shapes_raise():
    model, x = make_model(2)
    with pytest.raises(ValueError, match="one data point"):
        model.log_evidence(jnp.ones(5))
    with pytest.raises(ValueError, match="at least 2 points"):
        posterior.make_grid([jnp.ones((2, 2))])
    with pytest.raises(ValueError, match=r"log_joint must return one number .* per latent vector z"):
        posterior.grid_posterior(lambda z: jnp.stack([z.sum(), z.sum()]), [jnp.linspace(-1, 1, 5)])
    with pytest.raises(ValueError, match="1-D array"):
        posterior.normalize_on_grid(jnp.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1, got 0; pass num_samples=1 or more"):
        posterior.naive_log_evidence(jax.random.key(0), lambda z: z.sum(), 2, 0)
    with pytest.raises(ValueError, match="one flat image"):
        posterior.decoder_log_joint(lambda z: z, jnp.ones((2, 3)))


# ---------------------------------------------------------------- issue 22: blocks, float32 grids, coverage


def test_naive_log_evidence_uses_the_documented_draws_in_blocks():
    """S not a multiple of the block: every draw of jax.random.normal(key, (S, d)) is used once (NumPy reference)."""
    model, x = make_model(2, data_dim=3, sigma=0.8, seed=4)
    num_samples, key = 2 * posterior.SAMPLE_BLOCK + 7, jax.random.key(5)
    log_lik = lambda z: model.log_joint(x)(z) - log_normal_std(z)  # noqa: E731
    estimate = posterior.naive_log_evidence(key, log_lik, 2, num_samples)
    z = np.asarray(jax.random.normal(key, (num_samples, 2)), np.float64)
    w, b, s2 = (np.asarray(a, np.float64) for a in (model.W, model.b, model.sigma**2))
    ref_log_lik = -0.5 * np.sum(np.log(2 * np.pi * s2) + (np.asarray(x) - z @ w.T - b) ** 2 / s2, axis=1)
    np.testing.assert_allclose(estimate, np.logaddexp.reduce(ref_log_lik) - np.log(num_samples), atol=2e-4)


def test_naive_log_evidence_memory_does_not_grow_with_the_samples():
    """The compiled program's scratch memory on a 784-pixel decoder: ~8 bytes per extra sample (its z and
    log-likelihood), not a (S, pixels) array (3,136 bytes per sample: 1.25 GB at S = 200,000 before the blocks)."""
    w = jax.random.normal(jax.random.key(0), (784, 2))
    x = (jax.random.uniform(jax.random.key(1), (784,)) < 0.3).astype(jnp.float32)
    log_lik = posterior.decoder_log_likelihood(lambda z: w @ z, x)
    compiled = jax.jit(posterior.naive_log_evidence, static_argnames=("latent_dim", "num_samples"))

    def scratch_bytes(num_samples):
        lowered = compiled.lower(jax.random.key(0), log_lik, latent_dim=2, num_samples=num_samples)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    small, large = scratch_bytes(20_000), scratch_bytes(200_000)
    assert (large - small) / 180_000 < 64, (small, large)
    assert large < 50e6, large


def gaussian_log_joint(mean, std, log_evidence):
    """log p(x, z) = log p(x) + log N(z; mean, std^2): a posterior N(mean, std^2) whose log p(x) is known."""
    return lambda z: log_evidence + jnp.sum(-0.5 * ((z - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi))


@pytest.mark.parametrize("low, high, points", [(-4.0, 4.0, 1001), (96.0, 104.0, 1001), (-4.0, 4.0, 100_001)])
def test_an_evenly_spaced_float32_grid_is_accepted_and_exact(low, high, points):
    """float32 linspace steps differ by a few float32 units at the axis' largest value (0.3 % of a step at 104):
    as even as float32 can be. The spacing test once refused (96, 104, 1001)."""
    axis = jnp.linspace(low, high, points, dtype=jnp.float32)
    centre = 0.5 * (low + high)
    result = posterior.grid_posterior(gaussian_log_joint(centre, 0.5, -3.33), [axis])
    np.testing.assert_allclose(result.log_evidence, -3.33, atol=1e-3)


def test_a_float32_grid_that_is_really_uneven_is_still_refused():
    axis = np.asarray(jnp.linspace(96.0, 104.0, 1001, dtype=jnp.float32)).copy()
    axis[500] += 0.1 * (axis[1] - axis[0])  # one point a tenth of a step off: 1,300 float32 units at 104
    with pytest.raises(ValueError, match="evenly spaced"):
        posterior.grid_posterior(gaussian_log_joint(100.0, 0.5, 0.0), [jnp.asarray(axis)])


@pytest.mark.parametrize("offset", [0.0, 1.0, 2.5])
def test_grid_coverage_against_the_gaussian_closed_form(offset):
    """A posterior N(offset, 0.5^2) on the grid [-4, 4]: the edge's density over the largest grid point's, and the
    largest point's share of the mass, from the Gaussian density at the grid points (float64 NumPy)."""
    axis = jnp.linspace(-4.0, 4.0, 101)
    coverage = posterior.grid_coverage(posterior.grid_posterior(gaussian_log_joint(offset, 0.5, 0.0), [axis]))
    density = stats.norm(offset, 0.5).pdf(np.linspace(-4.0, 4.0, 101))
    np.testing.assert_allclose(coverage.edge_share, max(density[0], density[-1]) / density.max(), rtol=1e-3)
    np.testing.assert_allclose(coverage.peak_share, density.max() / density.sum(), rtol=1e-4)
    assert (coverage.problem != "") == (offset == 2.5)  # 3 standard deviations from the edge: warned


def test_grid_coverage_sees_a_posterior_narrower_than_a_cell_in_2d():
    axes = [jnp.linspace(-4.0, 4.0, 41)] * 2
    coverage = posterior.grid_coverage(posterior.grid_posterior(gaussian_log_joint(0.0, 0.02, 0.0), axes))
    assert coverage.peak_share > 0.99 and coverage.edge_share < 1e-30
    assert "narrower than a cell" in coverage.problem


def test_linear_gaussian_point_log_joint_is_the_reference_log_joint_at_any_point():
    model = posterior.LinearGaussian.random(jax.random.key(7), data_dim=4, latent_dim=2, sigma=0.7)
    point_log_joint = model.point_log_joint()
    for seed in range(3):
        z, x = (np.asarray(a, np.float64) for a in model.sample(jax.random.key(seed), 1))
        expected = R.linear_gaussian_log_joint(model.W, model.b, model.sigma, x[0], z[0])
        assert float(point_log_joint(jnp.asarray(x[0], jnp.float32), jnp.asarray(z[0], jnp.float32))) == pytest.approx(
            expected, rel=1e-5
        )
    with pytest.raises(ValueError, match="shape"):
        model.check_x(jnp.zeros(3))
