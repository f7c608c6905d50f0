"""Core densities and KL against jax.scipy.stats, closed forms and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

from vae_lite import distributions as D


def _normal_inputs(shape=(5, 3), seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(k1, shape), jax.random.normal(k2, shape), jax.random.normal(k3, shape))


@pytest.mark.parametrize("jit", [False, True])
def test_log_normal_diag_matches_scipy(jit):
    x, mu, log_var = _normal_inputs()
    fn = jax.jit(D.log_normal_diag) if jit else D.log_normal_diag
    expected = stats.norm.logpdf(x, mu, jnp.exp(0.5 * log_var)).sum(-1)
    np.testing.assert_allclose(fn(x, mu, log_var), expected, rtol=1e-5, atol=1e-5)


def test_log_normal_diag_broadcasts_leading_axes():
    x, mu, log_var = _normal_inputs((4, 3))
    out = D.log_normal_diag(x, mu[0], log_var[0])
    expected = stats.norm.logpdf(x, mu[0], jnp.exp(0.5 * log_var[0])).sum(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_log_normal_std_is_standard_normal():
    z = _normal_inputs()[0]
    np.testing.assert_allclose(D.log_normal_std(z), stats.norm.logpdf(z).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_log_bernoulli_matches_scipy(jit):
    key_x, key_l = jax.random.split(jax.random.key(1))
    logits = 3 * jax.random.normal(key_l, (6, 10))
    x = jax.random.bernoulli(key_x, 0.4, (6, 10)).astype(jnp.float32)
    fn = jax.jit(D.log_bernoulli) if jit else D.log_bernoulli
    expected = stats.bernoulli.logpmf(x, jax.nn.sigmoid(logits)).sum(-1)
    np.testing.assert_allclose(fn(x, logits), expected, rtol=1e-5, atol=1e-5)


def test_log_bernoulli_is_stable_for_huge_logits():
    x = jnp.array([1.0, 0.0, 1.0, 0.0])
    logits = jnp.array([200.0, -200.0, -200.0, 200.0])
    out = D.log_bernoulli(x, logits)
    # Exact: the first two pixels have log-prob ~0, the last two ~ -200 each.
    np.testing.assert_allclose(out, -400.0, rtol=1e-6)
    grads = jax.grad(lambda lg: D.log_bernoulli(x, lg))(logits)
    assert np.all(np.isfinite(grads))


def test_kl_normal_std_closed_form_matches_monte_carlo():
    mu = jnp.array([0.5, -1.0, 2.0])
    log_var = jnp.array([0.3, -0.7, 0.0])
    z = D.reparameterize(jax.random.key(2), mu, log_var, num_samples=400_000)
    mc = jnp.mean(D.log_normal_diag(z, mu, log_var) - D.log_normal_std(z))
    closed = D.kl_normal_std(mu, log_var)
    # Monte Carlo standard error here is about 0.004; allow 5 of them.
    assert abs(float(mc - closed)) < 0.02
    assert float(D.kl_normal_std(jnp.zeros(3), jnp.zeros(3))) == 0.0


def test_reparameterize_moments_and_gradient():
    mu, log_var = jnp.array([1.0, -2.0]), jnp.array([0.0, jnp.log(4.0)])
    z = D.reparameterize(jax.random.key(3), mu, log_var, num_samples=200_000)
    assert z.shape == (200_000, 2)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.02)
    np.testing.assert_allclose(z.std(0), jnp.array([1.0, 2.0]), atol=0.02)
    # dz/dmu = 1 for every sample: the path runs through mu, not the noise.
    grad_mu = jax.grad(lambda m: D.reparameterize(jax.random.key(4), m, log_var).sum())(mu)
    np.testing.assert_allclose(grad_mu, jnp.ones(2))


@pytest.mark.parametrize(
    "fn, args, message",
    [
        (D.log_normal_diag, (jnp.zeros((4, 3)), jnp.zeros((4, 2)), jnp.zeros((4, 3))),
         r"x \(4, 3\) and mu \(4, 2\) must share the last axis"),
        (D.log_normal_diag, (jnp.zeros((4, 3)), jnp.zeros((5, 3)), jnp.zeros((4, 3))),
         r"x \(4, 3\) and mu \(5, 3\) must share the last axis and broadcast"),
        (D.log_bernoulli, (jnp.zeros((2, 784)), jnp.zeros((2, 28, 28))),
         r"x \(2, 784\) and logits \(2, 28, 28\) must share the last axis.*Flatten images"),
        (D.kl_normal_std, (jnp.zeros(3), jnp.zeros(4)),
         r"mu and log_var must have the same shape, got mu: \(3,\) and log_var: \(4,\)"),
        (D.reparameterize, (jax.random.key(0), jnp.zeros(3), jnp.zeros(2)),
         r"mu and log_var must have the same shape, got mu: \(3,\) and log_var: \(2,\)"),
    ],
)  # fmt: skip
def test_shape_mismatch_raises_value_error_naming_shapes(fn, args, message):
    """The library's own message (JAX's broadcasting errors would also contain shapes)."""
    with pytest.raises(ValueError, match=message):
        fn(*args)


def test_integer_input_raises_value_error():
    with pytest.raises(ValueError, match="floating-point"):
        D.log_bernoulli(jnp.ones(3, dtype=jnp.int32), jnp.zeros(3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: D.kl_normal_std(jnp.zeros(2), jnp.array([0.0, 200.0])), r"log_var = 200 is outside \[-80, 80\]"),
        (lambda: D.kl_normal_std(jnp.array([1e20, 0.0]), jnp.zeros(2)), r"mu = 1e\+20 is outside \[-1e\+08, 1e\+08\]"),
        (lambda: D.kl_normal_std(jnp.array([jnp.nan]), jnp.zeros(1)), "mu holds NaN"),
        (lambda: D.log_normal_diag(jnp.zeros(2), jnp.zeros(2), jnp.array([-200.0, 0.0])), "log_var = -200"),
        (lambda: D.reparameterize(jax.random.key(0), jnp.zeros(2), jnp.full(2, 200.0)), "log_var = 200"),
    ],
    ids=["kl-log-var", "kl-mu", "kl-nan", "density-log-var", "reparameterize-log-var"],
)
def test_values_beyond_float32_are_refused_instead_of_inf(call, message):
    """kl_normal_std(0, 200) once returned inf silently (e^200 overflows float32)."""
    with pytest.raises(ValueError, match=message):
        call()


def test_the_float32_range_edge_still_gives_the_closed_form():
    """At |log_var| = 80 and |mu| = 1e8, the limits, the KL is finite and equals the float64 formula."""
    mu, log_var = np.array([1e8, 0.5]), np.array([80.0, -80.0])
    expected = 0.5 * np.sum(mu**2 + np.exp(log_var) - 1 - log_var)
    np.testing.assert_allclose(D.kl_normal_std(jnp.asarray(mu), jnp.asarray(log_var)), expected, rtol=1e-5)


def test_inside_jit_the_values_are_not_known_and_not_checked():
    """The documented limit of the value checks: a traced log_var of 200 gives float32's inf, not an error."""
    assert jnp.isinf(jax.jit(D.kl_normal_std)(jnp.zeros(1), jnp.array([200.0])))
