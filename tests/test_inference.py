"""Tests for vae_lite.inference against the exact linear-Gaussian model and brute-force references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

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
    return model.point_log_joint()


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


# ------------------------------------------------------------ full-covariance Gaussians
def closed_form_elbo(model, x, mean, cov):
    """E_q[log p(x, z)] + H[q] for q = N(mean, cov), NumPy float64: Gaussian expectations of quadratics."""
    w, b, x, mean, cov = (np.asarray(a, np.float64) for a in (model.W, model.b, x, mean, cov))
    s2, (size, d) = float(model.sigma) ** 2, w.shape
    resid = x - w @ mean - b
    expected = (-0.5 * size * np.log(2 * np.pi * s2) - 0.5 * (resid @ resid + np.trace(w @ cov @ w.T)) / s2
                - 0.5 * d * np.log(2 * np.pi) - 0.5 * (mean @ mean + np.trace(cov)))
    return expected + 0.5 * (d * np.log(2 * np.pi * np.e) + np.linalg.slogdet(cov)[1])


def log_weight_std(model, x, mean, chol, num_draws=20_000):
    """Standard deviation of one sample's log p(x, z) - log q(z) under q = N(mean, chol chol^T), NumPy float64."""
    mean, chol = np.asarray(mean, np.float64), np.asarray(chol, np.float64)
    z = mean + np.random.default_rng(0).standard_normal((num_draws, len(mean))) @ chol.T
    log_q = multivariate_normal(mean, chol @ chol.T).logpdf(z)
    return float(np.std(R.linear_gaussian_log_joint(model.W, model.b, model.sigma, x, z) - log_q))


def tilted(model, x):
    """A q near the posterior of x with a non-symmetric factor (chol chol^T != chol^T chol): ``(mean, chol)``."""
    mean, cov = model.posterior(x)
    tilt = jnp.array([[1.2, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.4, 0.3, 1.1]])
    return mean + jnp.array([0.2, -0.1, 0.15]), jnp.linalg.cholesky(cov) @ tilt


def test_full_covariance_elbo_is_exact_at_the_posterior(model, points):
    """At q = p(z | x) every sample's log p(x, z) - log q(z) is log p(x): any num_samples gives it exactly."""
    for i, x in enumerate(points):
        mean, cov = model.posterior(x)
        chol, log_px = jnp.linalg.cholesky(cov), float(model.log_evidence(x))
        for num_samples in (1, 7, 1000):
            key = jax.random.key(10 * i + num_samples)
            np.testing.assert_allclose(inference.full_covariance_elbo(key, model.log_joint(x), mean, chol, num_samples),
                                       log_px, atol=1e-3)
            np.testing.assert_allclose(inference.full_covariance_log_evidence_is(key, model.log_joint(x), mean, chol,
                                                                                 num_samples), log_px, atol=1e-3)


def test_full_covariance_elbo_matches_the_closed_form_elbo(model, points):
    """Statistical: 20 000 samples, within 6 Monte Carlo standard errors (a correct estimator fails with
    probability about 2e-9; fixed keys make the test deterministic)."""
    num_samples = 20_000
    for i, x in enumerate(points):
        mean, chol = tilted(model, x)
        cov = chol @ chol.T
        reference = closed_form_elbo(model, x, mean, cov)
        np.testing.assert_allclose(model.elbo(x, mean, cov), reference, rtol=1e-5)
        tol = 6 * log_weight_std(model, x, mean, chol) / np.sqrt(num_samples) + 1e-4 * abs(reference)
        estimate = inference.full_covariance_elbo(jax.random.key(i), model.log_joint(x), mean, chol, num_samples)
        assert abs(float(estimate) - reference) < tol, (float(estimate), reference, tol)
        assert reference < float(model.log_evidence(x)) - 0.05  # not the posterior: a real gap to estimate


def test_a_diagonal_factor_gives_lesson_4s_estimators(model, points):
    """chol = diag(sigma) is q = N(mean, diag sigma^2); the same key draws the same noise as elbo.elbo."""
    log_joint, key = model.log_joint(points[0]), jax.random.key(3)
    mu, log_var = jnp.array([0.3, -0.2, 0.5]), jnp.array([-1.0, 0.2, -0.4])
    chol = jnp.diag(jnp.exp(0.5 * log_var))
    for full, diagonal in ((inference.full_covariance_elbo, elbo.elbo),
                           (inference.full_covariance_log_evidence_is, elbo.log_evidence_is)):
        np.testing.assert_allclose(full(key, log_joint, mu, chol, 64), diagonal(key, log_joint, mu, log_var, 64),
                                   rtol=1e-5)


def test_full_covariance_elbo_under_jit_and_its_gradient_by_finite_differences(model, points):
    log_joint, key = model.log_joint(points[1]), jax.random.key(4)
    mean, chol = tilted(model, points[1])
    jitted = jax.jit(inference.full_covariance_elbo, static_argnums=4)
    np.testing.assert_allclose(jitted(key, log_joint, mean, chol, 32),
                               inference.full_covariance_elbo(key, log_joint, mean, chol, 32), rtol=1e-5)
    value = lambda m, c: inference.full_covariance_elbo(key, log_joint, m, c, 32)  # noqa: E731
    grad_mean, grad_chol = jax.grad(value, argnums=(0, 1))(mean, chol)
    h = 1e-2
    for j in range(3):
        e = jnp.zeros(3).at[j].set(h)
        np.testing.assert_allclose(grad_mean[j], (value(mean + e, chol) - value(mean - e, chol)) / (2 * h),
                                   rtol=2e-2, atol=2e-2)
    for j, k in ((0, 0), (1, 0), (2, 1), (2, 2)):  # entries of the lower triangle
        e = jnp.zeros((3, 3)).at[j, k].set(h)
        np.testing.assert_allclose(grad_chol[j, k], (value(mean, chol + e) - value(mean, chol - e)) / (2 * h),
                                   rtol=2e-2, atol=2e-2)


def test_importance_sampling_tightens_from_the_elbo_to_log_px(model, points):
    """With 20 000 samples the bound lies within 0.05 nats below log p(x), where the ELBO is 0.5 nats below."""
    x = points[2]
    mean, chol = tilted(model, x)
    log_px, key = float(model.log_evidence(x)), jax.random.key(5)
    bound = float(inference.full_covariance_log_evidence_is(key, model.log_joint(x), mean, chol, 20_000))
    lower = closed_form_elbo(model, x, mean, chol @ chol.T)
    assert lower + 0.3 < log_px - 0.05 < bound < log_px + 0.01, (lower, bound, log_px)


@pytest.fixture(scope="module")
def full_fit(log_joint, points):
    return inference.fit_full_covariance(jax.random.key(0), log_joint, points, latent_dim=LATENT_DIM,
                                         num_steps=3000, learning_rate=0.02, num_samples=16)


def test_fit_full_covariance_recovers_the_exact_posterior(model, points, full_fit):
    """From the prior, 3000 Adam steps: the exact posterior's mean within 0.03, its covariance within 0.01
    (entry by entry), KL(q || p(z | x)) below 0.005 nats, so the ELBO (in closed form) reaches log p(x)."""
    means, covs = exact_posteriors(model, points)
    assert full_fit.mean.shape == (4, 3) and full_fit.chol.shape == (4, 3, 3) and full_fit.elbo_trace.shape == (3000,)
    np.testing.assert_array_equal(np.triu(np.asarray(full_fit.chol), 1), 0)
    assert np.all(np.diagonal(np.asarray(full_fit.chol), axis1=1, axis2=2) > 0)
    fitted_covs = np.einsum("nij,nkj->nik", np.asarray(full_fit.chol, np.float64), np.asarray(full_fit.chol, np.float64))
    np.testing.assert_allclose(full_fit.mean, means, atol=0.03)
    np.testing.assert_allclose(fitted_covs, covs, atol=0.01)
    for i, x in enumerate(points):
        assert R.kl_gaussians(full_fit.mean[i], fitted_covs[i], means[i], covs[i]) < 0.005
        assert 0 <= float(model.log_evidence(x)) - closed_form_elbo(model, x, full_fit.mean[i], fitted_covs[i]) < 0.005


def test_fit_full_covariance_closes_the_gap_the_diagonal_family_leaves(model, points, log_joint):
    """Started at the best diagonal Gaussians (whose gap is KL* > 0.1 nats here), 1000 steps close over 95% of it."""
    means, covs = exact_posteriors(model, points)
    mu, log_var, kl = jax.vmap(inference.gaussian_mean_field_optimum)(means, covs)
    assert jnp.all(kl > 0.1)
    fit = inference.fit_full_covariance(jax.random.key(1), log_joint, points, num_steps=1000,
                                        init=(mu, jax.vmap(jnp.diag)(jnp.exp(0.5 * log_var))))
    for i, x in enumerate(points):
        cov = np.asarray(fit.chol[i] @ fit.chol[i].T, np.float64)
        assert float(model.log_evidence(x)) - closed_form_elbo(model, x, fit.mean[i], cov) < 0.05 * float(kl[i])


@pytest.mark.parametrize(
    "mean, chol, num_samples, match",
    [
        (jnp.zeros(3), jnp.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), 8, "lower-triangular"),
        (jnp.zeros(3), jnp.diag(jnp.array([1.0, -1.0, 1.0])), 8, "positive diagonal"),
        (jnp.zeros(3), jnp.eye(2), 8, "latent_dim, latent_dim"),
        (jnp.zeros((2, 3)), jnp.eye(3), 8, "latent_dim"),
        (jnp.zeros(3), jnp.eye(3), 0, "num_samples"),
    ],
)
def test_full_covariance_bad_inputs_raise(model, points, mean, chol, num_samples, match):
    for estimator in (inference.full_covariance_elbo, inference.full_covariance_log_evidence_is):
        with pytest.raises(ValueError, match=match):
            estimator(jax.random.key(0), model.log_joint(points[0]), mean, chol, num_samples)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": None}, "latent_dim"),
        ({"num_steps": 0}, "num_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"init": (jnp.zeros((3, 3)), jnp.broadcast_to(jnp.eye(3), (3, 3, 3)))}, "one row of init per data point"),
        ({"init": (jnp.zeros((4, 3)), jnp.broadcast_to(jnp.eye(2), (4, 2, 2)))}, "chol"),
        ({"init": (jnp.zeros((4, 3)), -jnp.broadcast_to(jnp.eye(3), (4, 3, 3)))}, "positive diagonal"),
        ({"latent_dim": 2, "init": (jnp.zeros((4, 3)), jnp.broadcast_to(jnp.eye(3), (4, 3, 3)))}, "latent_dim"),
    ],
)
def test_fit_full_covariance_bad_inputs_raise(log_joint, points, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inference.fit_full_covariance(jax.random.key(0), log_joint, points, **kwargs)
