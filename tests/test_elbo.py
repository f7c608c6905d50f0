"""Tests for vae_lite.elbo against independent references.

References: the exact linear-Gaussian log p(x) and posterior (vae_lite.posterior), a KL between
Gaussians written here in float64 numpy, scipy's Gaussian entropy, grid quadrature for a 2-D
latent VAE. Monte Carlo estimates are checked to within 5 standard errors (from the sample
standard deviation of the log-weights), closed forms to float32 precision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

from vae_lite import _reference as R
from vae_lite import elbo, posterior
from vae_lite.distributions import kl_normal_std, log_normal_std
from vae_lite.networks import VAE

KEY = jax.random.key(0)


kl_reference = R.kl_gaussians  # KL(N(m0, c0) || N(m1, c1)), the textbook formula in float64 NumPy


def make_problem(seed=0, data_dim=5, latent_dim=3):
    k_model, k_x = jax.random.split(jax.random.key(seed))
    model = posterior.LinearGaussian.random(k_model, data_dim, latent_dim, sigma=0.8)
    _, x = model.sample(k_x, 1)
    return model, x[0]


def random_q(key, latent_dim):
    k_mu, k_lv = jax.random.split(key)
    return jax.random.normal(k_mu, (latent_dim,)), jax.random.uniform(k_lv, (latent_dim,), minval=-2.0, maxval=1.0)


@pytest.mark.parametrize("seed", range(4))
def test_elbo_identity_on_linear_gaussian(seed):
    """log p(x) = ELBO(q) + KL(q || p(z|x)) for diagonal q: exact ELBO to float precision, MC to 5 SE."""
    model, x = make_problem(seed)
    mu, log_var = random_q(jax.random.key(100 + seed), 3)
    cov_q = jnp.diag(jnp.exp(log_var))
    post_mean, post_cov = model.posterior(x)
    kl = kl_reference(mu, cov_q, post_mean, post_cov)
    log_px = float(model.log_evidence(x))
    exact = float(model.elbo(x, mu, cov_q))
    assert exact + kl == pytest.approx(log_px, abs=1e-3, rel=1e-5)

    num = 200_000
    mc = float(elbo.elbo(KEY, model.log_joint(x), mu, log_var, num))
    log_w = elbo._log_weights(KEY, model.log_joint(x), mu, log_var, num)
    stderr = float(jnp.std(log_w)) / np.sqrt(num)
    assert abs(mc - exact) < 5 * stderr
    assert abs(mc + kl - log_px) < 5 * stderr + 1e-3


def test_library_kl_gaussians_matches_reference():
    model, x = make_problem(1)
    post_mean, post_cov = model.posterior(x)
    for i in range(3):
        mu, log_var = random_q(jax.random.key(i), 3)
        a = jax.random.normal(jax.random.key(10 + i), (3, 3))
        for cov_q in (jnp.diag(jnp.exp(log_var)), a @ a.T + 0.1 * jnp.eye(3)):
            got = float(elbo.kl_gaussians(mu, cov_q, post_mean, post_cov))
            assert got == pytest.approx(kl_reference(mu, cov_q, post_mean, post_cov), rel=1e-4, abs=1e-4)
        # against a standard normal it is the diagonal closed form of the core
        assert float(elbo.kl_gaussians(mu, jnp.diag(jnp.exp(log_var)), jnp.zeros(3), jnp.eye(3))) == pytest.approx(
            float(kl_normal_std(mu, log_var)), rel=1e-5)


def test_elbo_equals_log_evidence_at_true_posterior():
    model, x = make_problem(2)
    post_mean, post_cov = model.posterior(x)
    assert float(model.elbo(x, post_mean, post_cov)) == pytest.approx(
        float(model.log_evidence(x)), abs=1e-4)
    # d = 1: the posterior is a 1-D Gaussian, so q can equal it and every log-weight is log p(x)
    model1, x1 = make_problem(3, data_dim=4, latent_dim=1)
    m, c = model1.posterior(x1)
    log_var = jnp.log(jnp.diag(c))
    log_px = float(model1.log_evidence(x1))
    for num in (1, 10):
        assert float(elbo.elbo(KEY, model1.log_joint(x1), m, log_var, num)) == pytest.approx(log_px, abs=1e-4)
        assert float(elbo.log_evidence_is(KEY, model1.log_joint(x1), m, log_var, num)) == pytest.approx(log_px, abs=1e-4)


def test_elbo_below_log_evidence_for_random_q():
    model, x = make_problem(4)
    log_px = float(model.log_evidence(x))
    for i in range(20):
        mu, log_var = random_q(jax.random.key(200 + i), 3)
        exact = float(model.elbo(x, mu, jnp.diag(jnp.exp(log_var))))
        assert exact <= log_px + 1e-4
        assert float(elbo.elbo(jax.random.key(i), model.log_joint(x), mu, log_var, 20_000)) <= log_px


def test_importance_sampling_tightens_to_log_evidence():
    model, x = make_problem(5)
    log_px = float(model.log_evidence(x))
    post_mean, post_cov = model.posterior(x)
    mu = post_mean + 0.3  # a deliberately imperfect, wider proposal
    log_var = jnp.log(jnp.diag(post_cov)) + 0.5
    log_joint = model.log_joint(x)
    gaps, stderrs = [], []
    for num in (1, 10, 100, 1000):
        estimates = jax.vmap(lambda k, n=num: elbo.log_evidence_is(k, log_joint, mu, log_var, n))(
            jax.random.split(KEY, 32))
        gaps.append(log_px - float(jnp.mean(estimates)))
        stderrs.append(float(jnp.std(estimates)) / np.sqrt(32))
    assert all(g > -5 * se for g, se in zip(gaps, stderrs, strict=True))  # a lower bound in expectation
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] > 0.1  # that tightens as S grows
    assert abs(gaps[3]) < 5 * stderrs[3] + 0.01
    assert float(elbo.log_evidence_is(KEY, log_joint, mu, log_var, 200_000)) == pytest.approx(log_px, abs=0.01)


def test_two_forms_agree():
    """E_q[log p(x,z)] + H[q] and E_q[log p(x|z)] - KL(q||p(z)) estimate the same ELBO (to 5 SE)."""
    model, x = make_problem(6)
    mu, log_var = random_q(jax.random.key(7), 3)
    log_joint = model.log_joint(x)
    log_lik = lambda z: log_joint(z) - log_normal_std(z)  # noqa: E731
    exact = float(model.elbo(x, mu, jnp.diag(jnp.exp(log_var))))
    num = 100_000
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(KEY, (num, 3))
    for form, integrand in ((elbo.elbo_entropy_form, log_joint), (elbo.elbo_kl_form, log_lik)):
        stderr = float(jnp.std(jax.vmap(integrand)(z))) / np.sqrt(num)
        assert abs(float(form(KEY, integrand, mu, log_var, num)) - exact) < 5 * stderr


def test_gaussian_entropy_matches_scipy():
    log_var = jnp.array([-1.0, 0.3, 2.0])
    ref = scipy.stats.multivariate_normal(mean=np.zeros(3), cov=np.diag(np.exp(np.asarray(log_var)))).entropy()
    assert float(elbo.gaussian_entropy(log_var)) == pytest.approx(ref, rel=1e-5)


def test_mc_kl_matches_closed_form():
    mu, log_var = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.2, -1.5, 0.7])
    num = 200_000
    mc = float(elbo.kl_normal_std_mc(KEY, mu, log_var, num))
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(KEY, (num, 3))
    stderr = float(jnp.std(jax.scipy.stats.norm.logpdf(z, mu, jnp.exp(0.5 * log_var)).sum(-1)
                           - jax.scipy.stats.norm.logpdf(z).sum(-1))) / np.sqrt(num)
    assert abs(mc - float(kl_normal_std(mu, log_var))) < 5 * stderr


def small_vae(latent_dim=2):
    return VAE(16, hidden=(8,), latent_dim=latent_dim, rngs=nnx.Rngs(0))


def test_vae_elbo_matches_hand_written_reference():
    model = small_vae()
    x = (jax.random.uniform(jax.random.key(1), (5, 16)) > 0.5).astype(jnp.float32)
    num = 3
    got = elbo.vae_elbo(KEY, model, x, num)
    assert got.shape == (5,)
    mu, log_var = model.encoder(x)
    sd = jnp.exp(0.5 * log_var)
    for i, key in enumerate(jax.random.split(KEY, 5)):
        z = mu[i] + sd[i] * jax.random.normal(key, (num, 2))
        logits = model.decoder(z)
        p = jax.nn.sigmoid(logits)
        log_lik = jnp.sum(x[i] * jnp.log(p) + (1 - x[i]) * jnp.log1p(-p), axis=-1)
        log_prior = jax.scipy.stats.norm.logpdf(z).sum(-1)
        log_q = jax.scipy.stats.norm.logpdf(z, mu[i], sd[i]).sum(-1)
        assert float(got[i]) == pytest.approx(float(jnp.mean(log_lik + log_prior - log_q)), rel=1e-4)
    # in expectation it is the trainer's recon - KL (one sample each), here averaged over many keys
    from vae_lite.training import vae_terms
    num = 1000
    recon, kl = jax.vmap(lambda k: vae_terms(k, model, x))(jax.random.split(KEY, num))
    log_w = elbo._vae_log_weights(KEY, model, x, num)  # (5, num)
    stderr = np.sqrt((np.var(recon - kl, axis=0) + np.var(log_w, axis=1)) / num)
    diff = np.abs(elbo.vae_elbo(KEY, model, x, num) - jnp.mean(recon - kl, axis=0))
    np.testing.assert_array_less(diff, 5 * stderr)


def test_vae_log_evidence_is_matches_grid_quadrature():
    model = small_vae()
    x = (jax.random.uniform(jax.random.key(2), (3, 16)) > 0.5).astype(jnp.float32)
    num = 20_000
    got = elbo.vae_log_evidence_is(KEY, model, x, num)
    # standard error of log(mean w) ~ relative standard error of mean w (delta method)
    w = np.exp(np.asarray(elbo._vae_log_weights(KEY, model, x, num), np.float64) - np.asarray(got)[:, None])
    stderr = w.std(axis=1) / np.sqrt(num)
    lower = elbo.vae_elbo(KEY, model, x, 2000)
    axis = jnp.linspace(-7.0, 7.0, 281)
    for i in range(3):
        grid = posterior.grid_posterior(posterior.decoder_log_joint(model.decoder, x[i]), [axis, axis])
        assert abs(float(got[i]) - float(grid.log_evidence)) < 5 * stderr[i]
        assert float(lower[i]) < float(grid.log_evidence)


def test_jit_matches_eager():
    model, x = make_problem(0)
    mu, log_var = random_q(jax.random.key(3), 3)
    log_joint = model.log_joint(x)
    for fn in (elbo.elbo, elbo.log_evidence_is, elbo.elbo_entropy_form):
        eager = fn(KEY, log_joint, mu, log_var, 16)
        jitted = jax.jit(lambda k, m, v, fn=fn: fn(k, log_joint, m, v, 16))(KEY, mu, log_var)
        assert float(jitted) == pytest.approx(float(eager), rel=1e-5)


def test_bad_shapes_raise():
    model, x = make_problem(0)
    log_joint = model.log_joint(x)
    for fn in (elbo.elbo, elbo.log_evidence_is, elbo.elbo_entropy_form, elbo.elbo_kl_form):
        with pytest.raises(ValueError, match="same shape"):
            fn(KEY, log_joint, jnp.zeros(3), jnp.zeros(2), 4)
        with pytest.raises(ValueError, match="latent vector"):
            fn(KEY, log_joint, jnp.zeros((2, 3)), jnp.zeros((2, 3)), 4)
        with pytest.raises(ValueError, match="num_samples"):
            fn(KEY, log_joint, jnp.zeros(3), jnp.zeros(3), 0)
    with pytest.raises(ValueError, match="same shape"):
        elbo.kl_normal_std_mc(KEY, jnp.zeros(3), jnp.zeros(2), 4)
    with pytest.raises(ValueError, match="covariances"):
        elbo.kl_gaussians(jnp.zeros(3), jnp.eye(2), jnp.zeros(3), jnp.eye(3))
    with pytest.raises(ValueError, match="cov_q"):
        model.elbo(x, jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="x must have shape"):
        model.elbo(x[:2], jnp.zeros(3), jnp.eye(3))
    with pytest.raises(ValueError, match="batch of flat images"):
        elbo.vae_elbo(KEY, small_vae(), jnp.zeros(16), 1)
    with pytest.raises(ValueError, match="must have shape"):
        elbo.vae_elbo(KEY, small_vae(), jnp.zeros((2, 15)), 1)


@pytest.mark.parametrize("num_samples", [elbo.SAMPLE_BLOCK * 2 + 4, elbo.SAMPLE_BLOCK - 1])
def test_samples_in_blocks_are_all_used_once(num_samples):
    """Blocks of samples (bounded memory) give every sample its own weight, the last partial block too:
    the per-sample log-weights equal log N(x; Wz + b, s^2 I) + log N(z; 0, I) - log q(z), by scipy."""
    model = posterior.LinearGaussian.random(jax.random.key(5), data_dim=4, latent_dim=2)
    x = model.sample(jax.random.key(6), 1)[1][0]
    mu, log_var = jnp.array([0.3, -0.2]), jnp.array([-0.5, 0.4])
    key = jax.random.key(7)
    log_w = np.asarray(elbo._log_weights(key, model.log_joint(x), mu, log_var, num_samples))
    z = np.asarray(jax.random.normal(key, (num_samples, 2))) * np.exp(0.5 * np.asarray(log_var)) + np.asarray(mu)
    W, b, s = (np.asarray(a, np.float64) for a in (model.W, model.b, model.sigma))
    expected = (
        scipy.stats.norm.logpdf(np.asarray(x), z @ W.T + b, s).sum(-1)
        + scipy.stats.norm.logpdf(z).sum(-1)
        - scipy.stats.norm.logpdf(z, np.asarray(mu), np.exp(0.5 * np.asarray(log_var))).sum(-1)
    )
    np.testing.assert_allclose(log_w, expected, rtol=1e-4, atol=1e-3)
    # and the Monte Carlo ELBO agrees with the closed form within 4 standard errors
    exact = model.elbo(x, mu, jnp.diag(jnp.exp(log_var)))
    assert abs(log_w.mean() - float(exact)) < 4 * log_w.std() / np.sqrt(num_samples)


def test_a_new_data_point_reuses_the_compiled_estimator():
    """The library's log joints are Partials: ten data points (linear-Gaussian, and a VAE decoder)
    compile the estimator once each, not once per point; a new lambda still gives the right value."""
    model, _ = make_problem(7)
    xs = model.sample(jax.random.key(8), 10)[1]
    vae = VAE(16, (8,), 2, rngs=nnx.Rngs(0))
    images = jax.random.bernoulli(jax.random.key(9), 0.3, (10, 16)).astype(jnp.float32)
    mu, log_var = jnp.zeros(3), jnp.zeros(3)
    before = elbo._log_weights_compiled._cache_size()
    for x in xs:
        elbo.elbo(KEY, model.log_joint(x), mu, log_var, 64)
    for x in images:
        elbo.elbo(KEY, posterior.decoder_log_joint(vae.decoder, x), jnp.zeros(2), jnp.zeros(2), 64)
    assert elbo._log_weights_compiled._cache_size() - before == 2
    x = xs[0]
    via_lambda = elbo.elbo(KEY, lambda z: model.log_joint(x)(z), mu, log_var, 64)
    np.testing.assert_allclose(via_lambda, elbo.elbo(KEY, model.log_joint(x), mu, log_var, 64), rtol=1e-6)


def test_a_log_joint_that_is_not_a_function_is_refused():
    with pytest.raises(ValueError, match=r"log_joint must be a function z \(latent_dim,\) -> scalar, got ndarray"):
        elbo.elbo(KEY, np.zeros(3), jnp.zeros(3), jnp.zeros(3), 4)


def test_a_mean_beyond_float32_is_refused_instead_of_minus_infinity():
    """elbo with mu = 1e20 once returned -inf silently: log N(z; 0, I) = -z^2/2 overflows float32."""
    model, x = make_problem(0)
    for estimator in (elbo.elbo, elbo.log_evidence_is, elbo.elbo_kl_form):
        with pytest.raises(ValueError, match=r"mu = 1e\+20 is outside \[-1e\+08, 1e\+08\]"):
            estimator(KEY, model.log_joint(x), jnp.array([1e20, 0.0, 0.0]), jnp.zeros(3), 4)
    with pytest.raises(ValueError, match=r"log_var = 200 is outside"):
        elbo.elbo(KEY, model.log_joint(x), jnp.zeros(3), jnp.array([0.0, 200.0, 0.0]), 4)
