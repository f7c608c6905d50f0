"""Careless arguments get a teaching ``ValueError`` (what was expected, what came, the fix),
never a raw JAX traceback or a silently wrong number."""

import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_lite import (
    _args,
    data,
    distributions,
    elbo,
    explorer,
    factorization,
    inference,
    posterior,
    reparam,
    sampling,
    training,
)

KEY = jax.random.key(0)
MU, LOG_VAR = jnp.zeros(2), jnp.zeros(2)
X = jnp.array([0.3, -1.2, 0.7])  # one point of a 3-d linear-Gaussian model
MODEL = posterior.LinearGaussian.random(jax.random.key(1), data_dim=3, latent_dim=2)


def vector_log_joint(z):
    """log p(x, z) that forgets to sum over the data dimensions: one value per coordinate of x."""
    mean = MODEL.W @ z + MODEL.b
    per_dim = -0.5 * ((X - mean) / MODEL.sigma) ** 2 - jnp.log(MODEL.sigma) - 0.5 * jnp.log(2 * jnp.pi)
    return per_dim + distributions.log_normal_std(z) / 3


@pytest.mark.parametrize("num_samples", [1, 3, 5])  # 1 and 3 (= the data dimension) used to pass silently
@pytest.mark.parametrize("estimator", [elbo.elbo, elbo.log_evidence_is, elbo.elbo_entropy_form])
def test_a_log_joint_that_returns_a_vector_is_rejected(estimator, num_samples):
    with pytest.raises(ValueError, match=r"log_joint must return one number .* returns shape \(3,\) for one z"):
        estimator(KEY, vector_log_joint, MU, LOG_VAR, num_samples)


def test_the_summed_log_joint_is_accepted_and_right():
    """The same function summed is the model's log joint: its IS estimate approaches the exact log p(x)."""
    estimate = elbo.log_evidence_is(KEY, lambda z: jnp.sum(vector_log_joint(z)), MU, LOG_VAR, 20000)
    np.testing.assert_allclose(estimate, MODEL.log_evidence(X), atol=0.05)


def test_mean_field_rejects_a_vector_log_joint():
    x = jnp.stack([X, X])
    with pytest.raises(ValueError, match="log_joint must return one number"):
        inference.fit_mean_field(KEY, lambda xi, z: vector_log_joint(z), x, latent_dim=2, num_steps=3, num_samples=3)


@pytest.mark.parametrize("bad, fix", [(2.5, "pass a whole number"), (True, "pass a whole number"),
                                      (4.0, "write num_samples=4"), (0, "num_samples=1 or more")])  # fmt: skip
@pytest.mark.parametrize(
    "call",
    [
        lambda s: elbo.elbo(KEY, MODEL.log_joint(X), MU, LOG_VAR, s),
        lambda s: elbo.kl_normal_std_mc(KEY, MU, LOG_VAR, s),
        lambda s: reparam.reparam_grad(KEY, jnp.sum, MU, LOG_VAR, s),
        lambda s: distributions.reparameterize(KEY, MU, LOG_VAR, s),
        lambda s: inference.elbo_per_point(KEY, MODEL.point_log_joint(), X[None], MU[None],
                                           LOG_VAR[None], s),
    ],
)  # fmt: skip
def test_sample_counts_must_be_whole_numbers(call, bad, fix):
    with pytest.raises(ValueError, match=rf"num_samples must be an integer >= 1, got {bad!r}.*{fix}"):
        call(bad)


@pytest.mark.parametrize("key", [0, np.int32(3), jnp.zeros(3)])
def test_a_key_must_be_a_jax_key(key):
    with pytest.raises(ValueError, match=r"key must be a JAX random key.*jax.random.key\(0\)"):
        elbo.elbo(key, MODEL.log_joint(X), MU, LOG_VAR, 4)
    with pytest.raises(ValueError, match="key must be a JAX random key"):
        distributions.reparameterize(key, MU, LOG_VAR)


def test_the_old_style_key_is_accepted():
    assert np.isfinite(elbo.elbo(jax.random.PRNGKey(0), MODEL.log_joint(X), MU, LOG_VAR, 4))


def test_lists_are_read_as_arrays():
    from_lists = elbo.elbo(KEY, MODEL.log_joint(X), [0.0, 0.0], [0.0, 0.0], 8)
    np.testing.assert_allclose(from_lists, elbo.elbo(KEY, MODEL.log_joint(X), MU, LOG_VAR, 8), rtol=1e-6)
    with pytest.raises(ValueError, match="mu must be an array of numbers"):
        elbo.elbo(KEY, MODEL.log_joint(X), ["a", 0.0], [0.0, 0.0], 8)


@pytest.mark.parametrize("log_var, word", [(jnp.array([0.0, 200.0]), "overflows"), (jnp.array([-150.0, 0.0]), "underflows")])
def test_a_log_variance_beyond_float32_is_rejected(log_var, word):
    with pytest.raises(ValueError, match=rf"log_var = .* is outside \[-80, 80\].*{word} float32"):
        elbo.elbo(KEY, MODEL.log_joint(X), MU, log_var, 4)


def test_nan_parameters_are_rejected():
    with pytest.raises(ValueError, match="mu holds NaN"):
        elbo.elbo(KEY, MODEL.log_joint(X), jnp.array([jnp.nan, 0.0]), LOG_VAR, 4)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"hidden": 400}, r"hidden must be a tuple or list, got int. .*write hidden=\(400,\)"),
        ({"hidden": (400.5,)}, "each hidden width must be an integer"),
        ({"latent_dim": 2.5}, r"latent_dim must be an integer >= 1, got 2.5 \(float\)"),
        ({"batch_size": 64.0}, "batch_size must be an integer >= 1, got 64.0 .*write batch_size=64"),
        ({"epochs": 1.5}, "epochs must be an integer >= 1, got 1.5"),
        ({"learning_rate": -1e-3}, "learning_rate must be positive"),
        ({"beta": float("nan")}, "beta must be one finite number"),
    ],
)
def test_training_configuration_is_checked(override, message):
    with pytest.raises(ValueError, match=message):
        training.TrainConfig(**override)
    with pytest.raises(ValueError, match=message):  # the same through train(**overrides), before any work
        training.train(training.TrainConfig(dataset="digits"), data.load("digits"), **override)


def test_binarize_rejects_grey_levels_and_integers():
    levels = jnp.array([[0.0, 128.0, 255.0]])
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] \(2 of 3 values outside.*grey levels 0-255 must be divided"):
        data.binarize(KEY, levels)
    with pytest.raises(ValueError, match="floating-point array, got dtype uint8.*x / 255"):
        data.binarize(KEY, np.array([[0, 128, 255]], np.uint8))
    with pytest.raises(ValueError, match="divided by 255"):
        data.binarize_fixed(np.array([[0.0, 128.0, 255.0]], np.float32))
    bits = data.binarize(KEY, levels / 255)  # the fix works
    assert bits.shape == (1, 3) and set(np.unique(bits)) <= {0.0, 1.0}


def test_an_unevenly_spaced_grid_is_rejected():
    uneven = jnp.concatenate([jnp.linspace(-4, 0, 11), jnp.linspace(0.5, 4, 5)])
    with pytest.raises(ValueError, match="axis 0 must be increasing and evenly spaced.*jnp.linspace"):
        posterior.grid_posterior(MODEL.log_joint(X), [uneven, jnp.linspace(-4, 4, 21)])


def test_grid_points_instead_of_axes_get_a_clear_error():
    points = posterior.make_grid([jnp.linspace(-4, 4, 41)] * 2)
    with pytest.raises(ValueError, match=r"one array of shape \(1681, 2\).*not make_grid"):
        posterior.grid_posterior(MODEL.log_joint(X), points)
    with pytest.raises(ValueError, match="too large"):
        posterior.make_grid([jnp.linspace(-1, 1, 300)] * 4)


# ------------------------------------------------------------------ widgets and the explorer

def _one_d_log_joint(z):
    """log p(x, z) of a 1-D linear-Gaussian model at x = 1: N(z; 0, 1) N(x; 2z, 0.5^2)."""
    return jnp.sum(-0.5 * z**2 - 0.5 * ((1.0 - 2.0 * z) / 0.5) ** 2) - jnp.log(2 * jnp.pi * 0.5)


def test_elbo_widget_rejects_an_uneven_grid_nan_start_and_a_2d_log_joint():
    from vae_lite import widgets

    uneven = jnp.concatenate([jnp.linspace(-4, 0, 41), jnp.linspace(0.2, 4, 11)])
    with pytest.raises(ValueError, match="evenly spaced"):
        widgets.elbo_widget(_one_d_log_joint, uneven)
    with pytest.raises(ValueError, match="mu must be one finite number"):
        widgets.elbo_widget(_one_d_log_joint, jnp.linspace(-4, 4, 81), mu=float("nan"))
    with pytest.raises(ValueError, match=r"log_joint\(z\) on z of shape \(1,\) failed.*a model with a 1-D latent"):
        widgets.elbo_widget(MODEL.log_joint(X), jnp.linspace(-4, 4, 81))  # the 2-d model's log joint
    w = widgets.elbo_widget(_one_d_log_joint, jnp.linspace(-4, 4, 161))
    # log p(x) of this model in closed form: x ~ N(0, 2^2 + 0.5^2)
    np.testing.assert_allclose(w.log_evidence, -0.5 * np.log(2 * np.pi * 4.25) - 0.5 / 4.25, atol=1e-3)


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory):
    digits = data.load("digits")
    config = training.TrainConfig(dataset="digits", hidden=(16,), latent_dim=2, epochs=1, batch_size=64)
    with mock.patch.dict(os.environ, {"VAE_LITE_CACHE": str(tmp_path_factory.mktemp("cache"))}):
        return digits, training.train(config, digits, progress=False).model


def test_explorer_arguments_are_checked(digits_models):
    from vae_lite import explorer

    digits, model = digits_models
    x = digits.x_test[:10]
    with pytest.raises(ValueError, match=r"num_points must be an integer >= 3, got 2"):
        explorer.manifold(model, (8, 8), num_points=2)
    with pytest.raises(ValueError, match=r"image_shape \(28, 28\) has 784 pixels but the model's images have 64"):
        explorer.manifold(model, (28, 28))
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width\)"):
        explorer.latent_sliders(model, x, 64)
    with pytest.raises(ValueError, match=r"index=10 is out of range: there are 10 images \(0 to 9\)"):
        explorer.encode_and_perturb(model, x, (8, 8), index=10)
    with pytest.raises(ValueError, match="index_b must be an integer >= 0, got -1"):
        explorer.interpolation(model, x, (8, 8), index_b=-1)


def _mixture():
    weights = jnp.array([0.5, 0.5])
    probs = jnp.array([[0.1, 0.9], [0.8, 0.2]])
    return weights, probs


def _decoder(z):
    return jnp.zeros((z.shape[0], 3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: posterior.naive_log_evidence(KEY, lambda z: jnp.sum(z), 2, 2.5),
         r"num_samples must be an integer >= 1, got 2.5 \(float\)"),
        (lambda: posterior.naive_log_evidence(KEY, lambda z: jnp.sum(z), 2.0, 4), r"latent_dim .*write latent_dim=2"),
        (lambda: factorization.minibatch_log_likelihood(KEY, lambda x: jnp.sum(x, -1), jnp.ones((40, 3)), 2.5),
         r"batch_size must be an integer >= 1, got 2.5"),
        (lambda: sampling.sample_mixture(KEY, *_mixture(), 2.7), r"num_samples must be an integer >= 1, got 2.7"),
        (lambda: sampling.ancestral_sample(KEY, _decoder, 2, True), r"num_samples must be an integer >= 1, got True \(bool\)"),
        (lambda: sampling.fit_mixture_em(KEY, jnp.ones((10, 3)), 2, num_iters=2.5), r"num_iters must be an integer >= 1"),
        (lambda: explorer.inverse_cdf_grid(2.5), r"num_points must be an integer >= 1, got 2.5"),
        (lambda: sampling.sample_mixture(0, *_mixture(), 3), r"key must be a JAX random key, got int 0"),
        (lambda: data.binarize(0, jnp.full((2, 3), 0.5)), r"key must be a JAX random key, got int 0"),
        (lambda: posterior.naive_log_evidence(0, lambda z: jnp.sum(z), 2, 4), r"key must be a JAX random key"),
        (lambda: factorization.minibatch_log_likelihood(7, lambda x: jnp.sum(x, -1), jnp.ones((40, 3)), 4),
         r"key must be a JAX random key"),
        (lambda: inference.fit_mean_field(0, MODEL.point_log_joint(), X[None], latent_dim=2,
                                          num_steps=10), r"key must be a JAX random key, got int 0"),
    ],
    ids=["naive-samples-float", "naive-dim-float", "minibatch-float", "mixture-samples-float", "ancestral-bool",
         "em-iters-float", "inverse-cdf-float", "mixture-key-int", "binarize-key-int", "naive-key-int",
         "minibatch-key-int", "mean-field-key-int"],
)
def test_counts_and_keys_are_checked_where_they_used_to_slip_through(call, message):
    """Each of these once ran: a fractional count was truncated (2 samples divided by 2.5: a wrong number) or
    a key of 0 reached JAX's raw TypeError."""
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- the rules themselves, on values made here

@pytest.mark.parametrize("call, message", [
    (lambda: _args.at_least("n", 1, 2, "a covariance needs two codes."), r"n=1 is too small \(at least 2\): a covariance"),
    (lambda: _args.in_range("p", 1.5, 0, 1, "A probability.", closed=False), r"p must lie in \(0, 1\), got 1.5. A probability."),
    (lambda: _args.in_range("p", 1.0, 0, 1, closed=False), r"p must lie in \(0, 1\), got 1.0"),
    (lambda: _args.in_range("x", np.array([0.2, np.nan, 3.0]), 0, 1), r"x must lie in \[0, 1\] \(2 of 3 values outside"),
    (lambda: _args.in_range("s", np.array([1.0, 0.0]), 0, np.inf, closed=False), r"s must lie in \(0, inf\)"),
    (lambda: _args.increasing("sizes", [1, 4, 4], "e.g. [1, 2, 4]."), r"strictly increasing list, got \[1, 4, 4\]. e.g."),
    (lambda: _args.increasing("sizes", []), "non-empty"),
    (lambda: _args.divisor("S", 3, 64, "Pick a divisor."), r"S=3 must divide 64 into equal blocks, but 64 % 3 = 1. Pick"),
    (lambda: _args.flag("standardize", 1), "standardize must be True or False, got 1"),
    (lambda: _args.given("latent_dim", None, "Pass latent_dim or init."), "latent_dim is needed here, got None. Pass"),
    (lambda: _args.together("a", None, "b", 2), "a and b go together: got b without a. Pass both, or neither."),
    (lambda: _args.pair("init", (1, 2, 3), "(mu, log_var)"), r"init must be a pair \(mu, log_var\), got 3 item"),
    (lambda: _args.pair("init", 5, "(mu, log_var)"), r"init must be a pair \(mu, log_var\), got int"),
    (lambda: _args.instance("hidden", 256, (tuple, list), "e.g. (256,)."), r"hidden must be a tuple or list, got int. e.g."),
    (lambda: _args.nonempty_mapping("models", {}, "Map beta to a model."), "models must be a non-empty mapping, got an empty dict"),
    (lambda: _args.nonempty_mapping("models", [1], "Map beta to a model."), "non-empty mapping, got a list"),
    (lambda: _args.class_labels("y", np.array([0, 1]), 3), r"y must be \(3,\) integer class labels"),
    (lambda: _args.class_labels("y", np.array([0.0, 1.0]), 2), "dtype float64"),
    (lambda: _args.class_labels("y", np.array([True, False]), 2), "dtype bool"),
    (lambda: _args.class_labels("y", np.array([0, 10]), 2, num_classes=10), "class indices >= 0 and < 10, got 10"),
    (lambda: _args.class_labels("y", np.array([-1, 0]), 2), "class indices >= 0, got -1"),
    (lambda: _args.cholesky_factor("L", np.array([[1.0, 0.1], [0.0, 1.0]])), "lower-triangular"),
    (lambda: _args.cholesky_factor("L", np.array([[1.0, 0.0], [0.3, 0.0]])), "positive diagonal"),
    (lambda: _args.cholesky_factor("L", np.array([[np.nan, 0.0], [0.3, 1.0]])), "L holds NaN"),
], ids=["at-least", "open-range", "open-range-edge", "closed-range-nan", "positive", "increasing", "increasing-empty",
        "divisor", "flag", "given", "together", "pair-3", "pair-int", "instance", "mapping-empty", "mapping-list",
        "labels-length", "labels-float", "labels-bool", "labels-too-large", "labels-negative", "chol-upper",
        "chol-diagonal", "chol-nan"])
def test_each_new_rule_refuses_with_what_was_expected_and_what_came(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_new_rules_accept_what_they_describe():
    """The edges that are inside: a closed range holds its ends, a mapping of one, labels as given."""
    _args.at_least("n", 2, 2, "")
    _args.in_range("x", np.array([0.0, 0.5, 1.0]), 0, 1)
    _args.in_range("x", np.zeros(0), 0, 1)  # nothing is outside an empty array
    _args.in_range("lr", 1e-3, 0, np.inf, closed=False)
    _args.in_range("traced", jnp.ones(2), 0, 1)  # concrete, inside
    jax.jit(lambda a: _args.in_range("a", a, 5, 6) or a)(jnp.zeros(2))  # traced: no values, not checked
    _args.increasing("sizes", [1])
    _args.divisor("S", 4, 64, "")
    assert _args.flag("f", np.bool_(True)) is True
    _args.together("a", None, "b", None)
    _args.together("a", 1, "b", 2)
    assert _args.pair("init", [1, 2], "(a, b)") == (1, 2)
    _args.nonempty_mapping("models", {1.0: "m"}, "")
    labels = _args.class_labels("y", np.array([3, 0], np.uint8), 2, num_classes=10)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0]
    _args.cholesky_factor("L", np.linalg.cholesky(np.array([[2.0, 0.5], [0.5, 1.0]])))
