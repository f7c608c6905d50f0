"""Tests for lesson 6's model checks (vae_lite._checks_training, re-exported by grading): the float64
references against finite differences and optax, correct modules / losses / steps pass, and each
typical mistake or bad input fails with the message that names it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _checks import fails_with  # tests/_checks.py
from flax import nnx

from vae_lite import _reference as R
from vae_lite import grading
from vae_lite._checks_training import HarnessVAE, param_arrays, set_params, vae_shapes


# ------------------------------------------------------------ correct solutions
class Encoder(nnx.Module):
    def __init__(self, num_pixels, hidden, latent_dim, *, rngs):
        self.hidden = nnx.Linear(num_pixels, hidden, rngs=rngs)
        self.mu = nnx.Linear(hidden, latent_dim, rngs=rngs)
        self.log_var = nnx.Linear(hidden, latent_dim, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.hidden(x))
        return self.mu(h), self.log_var(h)


class Decoder(nnx.Module):
    def __init__(self, latent_dim, hidden, num_pixels, *, rngs):
        self.hidden = nnx.Linear(latent_dim, hidden, rngs=rngs)
        self.logits = nnx.Linear(hidden, num_pixels, rngs=rngs)

    def __call__(self, z):
        return self.logits(jax.nn.relu(self.hidden(z)))


def vae_loss(model, x, key):
    mu, log_var = model.encoder(x)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
    logits = model.decoder(z)
    recon = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
    return jnp.mean(0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var, axis=-1) - recon)


@nnx.jit
def train_step(model, optimizer, x, key):
    loss, grads = nnx.value_and_grad(vae_loss)(model, x, key)
    optimizer.update(model, grads)
    return loss




# ------------------------------------------------------------ the references, independently
def test_reference_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    shapes = vae_shapes(6, 5, 2)
    weights = {k: rng.normal(size=s) * 0.7 for k, s in shapes.items()}
    x, eps = (rng.random((4, 6)) < 0.5).astype(float), rng.normal(size=(4, 2))
    _, grads = R.vae_loss_and_grad(weights, x, eps)
    h = 1e-6
    for name in shapes:
        flat = weights[name].ravel()
        for j in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            up, down = dict(weights), dict(weights)
            up[name], down[name] = flat.copy(), flat.copy()
            up[name][j] += h
            down[name][j] -= h
            up[name], down[name] = up[name].reshape(weights[name].shape), down[name].reshape(weights[name].shape)
            fd = (R.vae_loss_and_grad(up, x, eps)[0] - R.vae_loss_and_grad(down, x, eps)[0]) / (2 * h)
            assert abs(fd - grads[name].ravel()[j]) < 1e-6 * (1 + abs(fd)), name


def test_reference_adam_matches_optax():
    rng = np.random.default_rng(1)
    params = {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
    gradients = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(4)]
    ours = R.adam(params, lambda t, p: gradients[t - 1], 4, 0.01)
    tx = optax.adam(0.01)
    state, current = tx.init(params), params
    for t, g in enumerate(gradients):
        updates, state = tx.update(g, state, current)
        current = optax.apply_updates(current, updates)
        for k in params:
            np.testing.assert_allclose(ours[t][k], current[k], rtol=1e-5, atol=1e-6)  # optax runs in float32


def test_parameters_round_trip_by_name():
    model = HarnessVAE(5, 4, 2)
    arrays = {k: np.full(s, i, np.float32) for i, (k, s) in enumerate(sorted(vae_shapes(5, 4, 2).items()))}
    set_params(model, arrays)
    assert {k: v.tolist() for k, v in param_arrays(model).items()} == {k: v.tolist() for k, v in arrays.items()}


# ------------------------------------------------------------ correct answers pass
@pytest.mark.parametrize(("check", "correct"), [
    (grading.check_encoder, Encoder), (grading.check_decoder, Decoder),
    (grading.check_vae_loss, vae_loss), (grading.check_train_step, train_step)])
def test_correct_solution_passes(check, correct):
    assert "passed" in check(correct)


# ------------------------------------------------------------ the modules
def _encoder(call, layers=("hidden", "mu", "log_var"), widths=None):
    class Wrong(nnx.Module):
        def __init__(self, num_pixels, hidden, latent_dim, *, rngs):
            sizes = widths or {"hidden": (num_pixels, hidden), "mu": (hidden, latent_dim),
                               "log_var": (hidden, latent_dim)}
            for name in layers:
                setattr(self, name, nnx.Linear(*sizes[name], rngs=rngs))

        def __call__(self, x):
            return call(self, x)

    return Wrong


def _two_heads(self, h):
    return self.mu(h), self.log_var(h)


@pytest.mark.parametrize(("wrong", "hint"), [
    (_encoder(lambda s, x: _two_heads(s, s.hidden(x))), "no ReLU"),
    (_encoder(lambda s, x: _two_heads(s, jnp.tanh(s.hidden(x)))), "other than ReLU"),
    (_encoder(lambda s, x: tuple(jax.nn.relu(o) for o in _two_heads(s, jax.nn.relu(s.hidden(x))))),
     "ReLU on the outputs"),
    (_encoder(lambda s, x: _two_heads(s, jax.nn.relu(s.hidden(x)))[::-1]), "swapped"),
    (_encoder(lambda s, x: (lambda m, v: (m, jnp.exp(v)))(*_two_heads(s, jax.nn.relu(s.hidden(x))))), "variance"),
    (_encoder(lambda s, x: (lambda m, v: (m, jnp.exp(0.5 * v)))(*_two_heads(s, jax.nn.relu(s.hidden(x))))),
     "standard deviation"),
    (_encoder(lambda s, x: s.mu(jax.nn.relu(s.hidden(x))), layers=("hidden", "mu")), "no layer named log_var"),
    (_encoder(lambda s, x: s.mu(x), layers=("hidden", "mu", "log_var")), "expected a tuple (mu, log_var)"),
    (_encoder(lambda s, x: _two_heads(s, jax.nn.relu(s.hidden(x))),
              widths={"hidden": (784, 400), "mu": (400, 20), "log_var": (400, 20)}), "parameters differ"),
])
def test_encoder_mistakes(wrong, hint):
    fails_with(grading.check_encoder, wrong, hint)


def test_a_module_that_is_not_implemented_or_not_a_module():
    class Blank(nnx.Module):
        def __init__(self, *args, rngs):
            raise NotImplementedError()

    fails_with(grading.check_encoder, Blank, "not implemented yet")
    fails_with(grading.check_decoder, lambda *args, rngs: object(), "expected a class derived from nnx.Module")


def _decoder(call):
    class Wrong(Decoder):
        def __call__(self, z):
            return call(self, z)

    return Wrong


@pytest.mark.parametrize(("wrong", "hint"), [
    (_decoder(lambda s, z: jax.nn.sigmoid(s.logits(jax.nn.relu(s.hidden(z))))), "probabilities"),
    (_decoder(lambda s, z: s.logits(s.hidden(z))), "no ReLU"),
    (_decoder(lambda s, z: jax.nn.relu(s.logits(jax.nn.relu(s.hidden(z))))), "ReLU on the output"),
    (_decoder(lambda s, z: jax.nn.relu(s.hidden(z))), "not the hidden units"),
])
def test_decoder_mistakes(wrong, hint):
    fails_with(grading.check_decoder, wrong, hint)


# ------------------------------------------------------------ the loss
def _loss(sample="reparam", kl_sign=1.0, reduce=jnp.mean, kl=True):
    def fn(model, x, key):
        mu, log_var = model.encoder(x)
        eps = jax.random.normal(key, mu.shape)
        z = {"reparam": mu + jnp.exp(0.5 * log_var) * eps, "mean": mu,
             "variance": mu + jnp.exp(log_var) * eps,
             "stop": jax.lax.stop_gradient(mu + jnp.exp(0.5 * log_var) * eps)}[sample]
        logits = model.decoder(z)
        recon = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
        k = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var, axis=-1) if kl else 0.0
        return reduce(kl_sign * k - recon)

    return fn


@pytest.mark.parametrize(("wrong", "hint"), [
    (_loss(reduce=jnp.sum), "summed over the batch"),
    (_loss(kl=False), "forgot the KL"),
    (_loss(kl_sign=-1.0), "sign of the KL"),
    (_loss(sample="variance"), "log of the VARIANCE"),
    (_loss(sample="mean"), "z is the mean"),
    (_loss(sample="stop"), "no gradient reaches the encoder through the sample"),
    (_loss(reduce=lambda v: v), "one loss per image"),
    (lambda model, x, key: _loss()(model, x, jax.random.split(key)[0]), "the noise differs"),
])
def test_vae_loss_mistakes(wrong, hint):
    fails_with(grading.check_vae_loss, wrong, hint)


# ------------------------------------------------------------ the step
def _step(kind):
    def step(model, optimizer, x, key):
        sign = -1.0 if kind == "ascends" else 1.0
        loss, grads = nnx.value_and_grad(lambda m: sign * vae_loss(m, x, key))(model)
        if kind == "nan":
            grads = jax.tree.map(lambda g: g * jnp.nan, grads)
        if kind == "copy":
            model = nnx.clone(model)
            optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        if kind != "never updates":
            optimizer.update(model, grads)
        if kind == "returns nothing":
            return None
        if kind == "returns the model":
            return model, optimizer
        if kind == "loss after":
            return vae_loss(model, x, key)
        return sign * loss

    return step


@pytest.mark.parametrize(("kind", "hint"), [
    ("ascends", "moved the wrong way"),
    ("never updates", "did not change"),
    ("copy", "did not change"),
    ("nan", "NaN"),
    ("returns nothing", "None"),
    ("returns the model", "update the model in place"),
    ("loss after", "computed before the update"),
])
def test_train_step_mistakes(kind, hint):
    fails_with(grading.check_train_step, _step(kind), hint)


def test_train_step_that_restarts_adam_each_step():
    def restarts(model, optimizer, x, key):
        learning_rate = 0.01 if model.encoder.hidden.kernel.shape[0] == 12 else 0.003
        fresh = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)
        loss, grads = nnx.value_and_grad(vae_loss)(model, x, key)
        fresh.update(model, grads)
        return loss

    fails_with(grading.check_train_step, restarts, "moments restart every step")
