"""Tests for vae_lite.inference against the exact linear-Gaussian model and brute-force references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from vae_lite import _reference as R
from vae_lite import elbo, inference
from vae_lite.posterior import LinearGaussian

LATENT_DIM = 3


@pytest.fixture(scope="module")
def model():
    # Columns of W share a common direction, so the posterior is strongly correlated and
    # diag(cov) differs clearly from 1 / diag(precision).
    key_w, key_b = jax.random.split(jax.random.key(7))
    w = jax.random.normal(key_w, (6, LATENT_DIM)) + 1.5 * jax.random.normal(key_b, (6, 1))
    return LinearGaussian(w, jnp.linspace(-1.0, 1.0, 6), 0.7)


@pytest.fixture(scope="module")
def points(model):
    return model.sample(jax.random.key(3), 4)[1]


@pytest.fixture(scope="module")
def log_joint(model):
    return inference.linear_gaussian_point_log_joint(model)


def exact_posteriors(model, x):
    means, covs = zip(*(model.posterior(xi) for xi in x), strict=True)
    return jnp.stack(means), jnp.stack(covs)


def kl_diag_to_full(mu, log_var, mean, cov):
    """KL(N(mu, diag e^log_var) || N(mean, cov)), the textbook formula for two Gaussians (NumPy, float64)."""
    return R.kl_gaussians(mu, np.diag(np.exp(np.asarray(log_var, np.float64))), mean, cov)


@pytest.fixture(scope="module")
def fit(log_joint, points):
    return inference.fit_mean_field(
        jax.random.key(0), log_joint, points, latent_dim=LATENT_DIM,
        num_steps=3000, learning_rate=0.01, num_samples=16, tol=None,
    )  # fmt: skip


def test_gaussian_optimum_matches_numerical_minimum_of_kl(model, points):
    mean, cov = model.posterior(points[0])
    mu, log_var, kl = inference.gaussian_mean_field_optimum(mean, cov)
    best = minimize(lambda v: kl_diag_to_full(v[:3], v[3:], mean, cov), np.zeros(6), method="BFGS").x
    np.testing.assert_allclose(mu, best[:3], atol=1e-3)
    np.testing.assert_allclose(log_var, best[3:], atol=1e-3)
    np.testing.assert_allclose(kl, kl_diag_to_full(mu, log_var, mean, cov), atol=1e-4)
    assert kl_diag_to_full(mu, log_var, mean, cov) <= kl_diag_to_full(best[:3], best[3:], mean, cov) + 1e-6
    # the optimum is the precision diagonal, not the covariance diagonal
    assert jnp.max(jnp.abs(log_var - jnp.log(jnp.diag(cov)))) > 0.5


def test_fit_mean_field_reaches_the_exact_optimum(model, points, fit):
    means, covs = exact_posteriors(model, points)
    precision_diag = jax.vmap(lambda c: jnp.diag(jnp.linalg.inv(c)))(covs)
    np.testing.assert_allclose(fit.mu, means, atol=0.06)
    np.testing.assert_allclose(fit.log_var, -jnp.log(precision_diag), atol=0.1)
    assert fit.elbo_trace.shape == (3000,) and fit.num_steps == 3000 and not fit.converged


def test_fitted_elbo_matches_exact_optimal_elbo(model, points, log_joint, fit):
    means, covs = exact_posteriors(model, points)
    log_px = jnp.stack([model.log_evidence(xi) for xi in points])
    exact = log_px - jax.vmap(lambda m, c: inference.gaussian_mean_field_optimum(m, c)[2])(means, covs)
    estimated = inference.elbo_per_point(jax.random.key(1), log_joint, points, fit.mu, fit.log_var, 20000)
    np.testing.assert_allclose(estimated, exact, atol=0.03)
    assert jnp.all(estimated < log_px)


def test_plateau_rule_stops_early_and_init_is_used(log_joint, points):
    stopped = inference.fit_mean_field(
        jax.random.key(0), log_joint, points, latent_dim=LATENT_DIM, num_steps=5000,
        learning_rate=0.05, num_samples=8, tol=0.05, check_every=100,
    )  # fmt: skip
    assert stopped.converged and stopped.num_steps < 5000
    assert stopped.elbo_trace.shape == (stopped.num_steps,)
    # a short run with the same key is a prefix of a longer one, whatever the chunking
    short = inference.fit_mean_field(
        jax.random.key(0), log_joint, points, latent_dim=LATENT_DIM, num_steps=7,
        learning_rate=0.05, num_samples=8, tol=None, check_every=3,
    )  # fmt: skip
    np.testing.assert_allclose(short.elbo_trace, stopped.elbo_trace[:7], rtol=1e-4)


def test_mean_field_step_is_gradient_ascent_by_finite_differences(model, points):
    log_joint = model.log_joint(points[0])
    mu, log_var, key = jnp.array([0.1, -0.2, 0.3]), jnp.array([-0.5, 0.0, 0.2]), jax.random.key(5)
    new_mu, new_log_var = inference.mean_field_step(key, log_joint, mu, log_var, 0.1, 8)
    f = lambda m, lv: elbo.elbo(key, log_joint, m, lv, 8)  # noqa: E731
    h = 1e-2
    for j in range(3):
        e = jnp.zeros(3).at[j].set(h)
        grad_mu = (f(mu + e, log_var) - f(mu - e, log_var)) / (2 * h)
        grad_lv = (f(mu, log_var + e) - f(mu, log_var - e)) / (2 * h)
        np.testing.assert_allclose(new_mu[j], mu[j] + 0.1 * grad_mu, atol=2e-3)
        np.testing.assert_allclose(new_log_var[j], log_var[j] + 0.1 * grad_lv, atol=2e-3)


def test_per_point_estimators_match_a_loop_of_the_elbo_module(log_joint, points, model):
    mu, log_var = jnp.zeros((4, 3)), jnp.full((4, 3), -1.0)
    key = jax.random.key(2)
    keys = jax.random.split(key, 4)
    for mine, reference in (
        (inference.elbo_per_point, elbo.elbo),
        (inference.log_evidence_per_point, elbo.log_evidence_is),
    ):
        batched = mine(key, log_joint, points, mu, log_var, 50, batch_size=3)
        looped = [
            reference(k, model.log_joint(xi), m, lv, 50)
            for k, xi, m, lv in zip(keys, points, mu, log_var, strict=True)
        ]
        np.testing.assert_allclose(batched, jnp.stack(looped), rtol=1e-5, atol=1e-4)


def test_gaps_identity_and_signs_on_the_exact_model(model, points, log_joint, fit):
    rng = np.random.default_rng(0)
    log_px, opt, enc = rng.normal(size=(3, 10))
    approximation, amortization = inference.inference_gaps(log_px, opt, enc)
    np.testing.assert_allclose(approximation + amortization, log_px - enc, atol=1e-12)
    np.testing.assert_allclose(approximation, log_px - opt)
    jitted = jax.jit(inference.inference_gaps)(jnp.asarray(log_px), jnp.asarray(opt), jnp.asarray(enc))
    np.testing.assert_allclose(jitted[1], opt - enc, rtol=1e-5, atol=1e-5)

    # an "encoder" that ignores x (always the prior): a positive amortization gap
    log_px = jnp.stack([model.log_evidence(xi) for xi in points])
    key = jax.random.key(4)
    at_optimum = inference.elbo_per_point(key, log_joint, points, fit.mu, fit.log_var, 5000)
    at_prior = inference.elbo_per_point(key, log_joint, points, jnp.zeros((4, 3)), jnp.zeros((4, 3)), 5000)
    approximation, amortization = inference.inference_gaps(log_px, at_optimum, at_prior)
    assert jnp.all(approximation > 0) and jnp.all(amortization > 0)
    summary = inference.summarize_gaps(log_px, at_optimum, at_prior)
    mean, se = summary["amortization_gap"]
    np.testing.assert_allclose(mean, jnp.mean(amortization), rtol=1e-5)
    np.testing.assert_allclose(se, np.std(np.asarray(amortization), ddof=1) / 2, rtol=1e-4)
    np.testing.assert_allclose(summary["inference_gap"][0], jnp.mean(log_px - at_prior), rtol=1e-5)


def test_semi_amortized_refinement_never_lowers_the_average_elbo(log_joint, points):
    encoder = lambda x: (0.1 * x[:, :3], jnp.full((x.shape[0], 3), 0.5))  # a poor encoder  # noqa: E731
    averages = []
    for steps in (0, 5, 20, 100):
        mu, log_var = inference.semi_amortized(
            jax.random.key(0), log_joint, points, encoder, steps, learning_rate=0.05, num_samples=8
        )
        if steps == 0:
            np.testing.assert_allclose(mu, encoder(points)[0])
        averages.append(
            float(jnp.mean(inference.elbo_per_point(jax.random.key(9), log_joint, points, mu, log_var, 4000)))
        )
    assert all(b >= a - 0.05 for a, b in zip(averages[:-1], averages[1:], strict=True)), averages
    assert averages[-1] > averages[0] + 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": -3}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"num_samples": 0}, "num_samples"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"latent_dim": None}, "latent_dim"),
        ({"latent_dim": None, "init": (jnp.zeros((3, 3)), jnp.zeros((3, 3)))}, "N, latent_dim"),
        ({"latent_dim": None, "init": (jnp.zeros((4, 3)), jnp.zeros((4, 2)))}, "N, latent_dim"),
        ({"latent_dim": 2, "init": (jnp.zeros((4, 3)), jnp.zeros((4, 3)))}, "latent_dim"),
    ],
)
def test_bad_inputs_raise(log_joint, points, kwargs, match):
    kwargs = {"latent_dim": LATENT_DIM, **kwargs}
    with pytest.raises(ValueError, match=match):
        inference.fit_mean_field(jax.random.key(0), log_joint, points, **kwargs)


def test_bad_inputs_raise_in_helpers(log_joint, points):
    with pytest.raises(ValueError, match="N, latent_dim"):
        inference.elbo_per_point(jax.random.key(0), log_joint, points, jnp.zeros((5, 3)), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="num_steps"):
        inference.semi_amortized(jax.random.key(0), log_joint, points, lambda x: None, -1)
    with pytest.raises(ValueError, match="shape"):
        inference.inference_gaps(jnp.zeros(4), jnp.zeros(4), jnp.zeros(3))
