"""Checks of lesson 6's model exercises: the encoder, the decoder, the loss through them, one training step.

Re-exported by :mod:`vae_lite.grading` (``grading.check_encoder`` …) and built, as its checks
are, on :mod:`vae_lite._checking`; a module of their own only to keep each file readable. The
references are :mod:`vae_lite._reference`'s float64 NumPy network, back-propagation written out by hand,
and Adam as its paper states it: nothing here trains or differentiates with the library.
Weights are copied into the student's modules by the layer names the lesson prescribes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vae_lite import _reference as R
from vae_lite._checking import (
    Case,
    _exercise,
    _f32,
    _f64,
    _passed,
    _TimeUp,
    as_array,
    call,
    compiled,
    describe,
    expect_close,
    unpack,
)

ENCODER_LAYERS = ("hidden", "mu", "log_var")
DECODER_LAYERS = ("hidden", "logits")
STEP_MARGIN_NATS = 437.0
"""The ELBO gain (nats per image) that 200 of the student's steps must reach (see
:func:`check_train_step`), read off ``benchmarks/bench_training_lesson.py`` (5 seeds each, the
check's own model and data): a correct step gains 455.9-472.5; the best wrong steps 386.8-418.9
(the mean of q instead of a sample), 284.6-330.4 (no KL term), 274.2-292.1 (grey pixels); a step
that never updates 0, one that ascends the loss diverges. 437 lies halfway between the worst
correct run and the best wrong one, about 3 of the correct runs' standard deviations (6.9) from each."""


# ---------------------------------------------------------------- parameters by name
def _flat(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def param_arrays(module):
    """``{"hidden.kernel": array, ...}``: a module's ``nnx.Param`` values by dotted name."""
    return {name: np.asarray(value) for name, value in _flat(nnx.to_pure_dict(nnx.state(module, nnx.Param))).items()}


def set_params(module, flat):
    """Copy arrays ``{"hidden.kernel": ..., ...}`` (the names :func:`param_arrays` gives) into ``module``."""
    state = nnx.state(module, nnx.Param)
    nested = {}
    for name, value in flat.items():
        *path, last = name.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[last] = jnp.asarray(value, jnp.float32)
    nnx.replace_by_pure_dict(state, nested)
    nnx.update(module, state)


def _layer_shapes(prefix, sizes):
    """Expected ``{name: shape}`` of nnx.Linear layers ``{layer: (in, out)}``."""
    shapes = {}
    for layer, (n_in, n_out) in sizes.items():
        shapes[f"{prefix}{layer}.kernel"], shapes[f"{prefix}{layer}.bias"] = (n_in, n_out), (n_out,)
    return shapes


def _random_params(rng, shapes, scale=0.5):
    return {name: _f64(_f32(rng.normal(size=shape) * (scale / np.sqrt(shape[0]) if len(shape) == 2 else 0.1)))
            for name, shape in shapes.items()}


class _Encoder(nnx.Module):
    """The checks' own model, in the prescribed layout (a harness for the loss and step checks)."""

    def __init__(self, num_pixels, hidden, latent_dim, rngs):
        self.hidden = nnx.Linear(num_pixels, hidden, rngs=rngs)
        self.mu = nnx.Linear(hidden, latent_dim, rngs=rngs)
        self.log_var = nnx.Linear(hidden, latent_dim, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.hidden(x))
        return self.mu(h), self.log_var(h)


class _Decoder(nnx.Module):
    def __init__(self, latent_dim, hidden, num_pixels, rngs):
        self.hidden = nnx.Linear(latent_dim, hidden, rngs=rngs)
        self.logits = nnx.Linear(hidden, num_pixels, rngs=rngs)

    def __call__(self, z):
        return self.logits(jax.nn.relu(self.hidden(z)))


class HarnessVAE(nnx.Module):
    """``model.encoder(x) -> (mu, log_var)``, ``model.decoder(z) -> logits``: what a step or loss receives."""

    def __init__(self, num_pixels, hidden, latent_dim):
        rngs = nnx.Rngs(0)
        self.encoder = _Encoder(num_pixels, hidden, latent_dim, rngs)
        self.decoder = _Decoder(latent_dim, hidden, num_pixels, rngs)


def harness_from(names, arrays):
    """A :class:`HarnessVAE` holding ``arrays`` under ``names`` ("encoder.hidden.kernel", ...): what the
    hidden tests' drivers hand a student's loss or step (sizes read off the arrays)."""
    weights = dict(zip(names, arrays, strict=True))
    num_pixels, hidden = weights["encoder.hidden.kernel"].shape
    model = nnx.eval_shape(lambda: HarnessVAE(num_pixels, hidden, weights["encoder.mu.bias"].shape[0]))
    set_params(model, weights)
    return model


def vae_shapes(num_pixels, hidden, latent_dim):
    return {**_layer_shapes("encoder.", {"hidden": (num_pixels, hidden), "mu": (hidden, latent_dim),
                                         "log_var": (hidden, latent_dim)}),
            **_layer_shapes("decoder.", {"hidden": (latent_dim, hidden), "logits": (hidden, num_pixels)})}


# ---------------------------------------------------------------- the modules
def _build(case, cls, args, label):
    if not (isinstance(cls, type) and issubclass(cls, nnx.Module)):
        case.fail(f"{label} is a {type(cls).__name__}, expected a class derived from nnx.Module",
                  hint=f"define `class {label}(nnx.Module):` with the layers in __init__ and the computation in "
                  "__call__, and pass the class itself")
    # built abstractly (nnx.eval_shape: the student's __init__ runs, no weights are drawn); the check's own
    # weights are copied in afterwards
    return call(case, lambda: nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0))),
                what=f"{label}{args[:3]} with rngs=nnx.Rngs(0)")


def _compare_layout(case, module, expected, label, layers):
    try:
        got = {name: tuple(a.shape) for name, a in _flat(nnx.to_pure_dict(nnx.state(module, nnx.Param))).items()}
    except _TimeUp:
        raise
    except BaseException as error:  # noqa: BLE001 - whatever the student's module holds, or raises
        case.fail(f"the parameters of your {label} could not be read ({describe(error)})",
                  hint="create each layer in __init__ and keep it as an attribute of the module, under the name "
                  "the exercise gives it")
    if got == expected:
        return
    missing = sorted({n.split(".")[0] for n in expected} - {n.split(".")[0] for n in got})
    if missing:
        case.fail(f"your {label} has no layer named {', '.join(missing)} (its parameters: "
                  f"{', '.join(sorted(got)) or 'none'})",
                  hint=f"the check copies known weights in by name: the layers are {', '.join(layers)}, "
                  "each an nnx.Linear created in __init__")
    wrong = [f"{n} {got.get(n)} (expected {s})" for n, s in expected.items() if got.get(n) != s]
    extra = sorted(set(got) - set(expected))
    case.fail(f"your {label}'s parameters differ from the prescribed layout: "
              + "; ".join(wrong + [f"{n} is extra" for n in extra]),
              hint="nnx.Linear(in_features, out_features) holds kernel (in, out) and bias (out,); "
              "keep exactly the layers the exercise names")


@_exercise("networks.Encoder")
def check_encoder(cls):
    """Lesson 6, ``ex06_encoder``: ``Encoder(num_pixels, hidden, latent_dim, *, rngs)``, an ``nnx.Module``
    with layers ``hidden``, ``mu``, ``log_var``; ``encoder(x (..., num_pixels)) -> (mu, log_var)``.

    The 784-400-20 layout is compared by parameter name and shape; then known weights are copied
    in and the outputs compared with :func:`vae_lite._reference.encoder_forward` (float64).
    """
    rng = np.random.default_rng(60)
    sizes = ((784, 400, 20, 8), (12, 7, 3, 5), (30, 16, 2, 1))
    for i, (num_pixels, hidden, latent_dim, batch) in enumerate(sizes):
        case = Case("check_encoder", i, len(sizes), {"num_pixels": num_pixels, "hidden": hidden,
                                                      "latent_dim": latent_dim, "x": f"{batch} binary images"})
        encoder = _build(case, cls, (num_pixels, hidden, latent_dim), "Encoder")
        expected = _layer_shapes("", {"hidden": (num_pixels, hidden), "mu": (hidden, latent_dim),
                                      "log_var": (hidden, latent_dim)})
        _compare_layout(case, encoder, expected, "Encoder", ENCODER_LAYERS)
        local = _random_params(rng, expected)
        set_params(encoder, local)
        weights = {f"encoder.{k}": v for k, v in local.items()}  # the reference's names
        x = _f64(rng.random((batch, num_pixels)) < 0.5)
        if i == 2:
            x = x[0]  # one image, no batch axis
        mu_ref, lv_ref = R.encoder_forward(weights, x)
        out = call(case, compiled(lambda m, x: m(x)), encoder, _f32(x), what="your encoder")
        mu, log_var = unpack(case, out, ("mu", "log_var"))
        mu = as_array(case, mu, mu_ref.shape, name="mu")
        log_var = as_array(case, log_var, lv_ref.shape, name="log_var")
        pre = _f64(x) @ weights["encoder.hidden.kernel"] + weights["encoder.hidden.bias"]

        def heads(h, w=weights):
            return (h @ w["encoder.mu.kernel"] + w["encoder.mu.bias"], h @ w["encoder.log_var.kernel"]
                    + w["encoder.log_var.bias"])

        got = np.concatenate([mu, log_var], axis=-1)
        expect_close(case, got, np.concatenate([mu_ref, lv_ref], axis=-1), rtol=1e-4, atol=1e-4,
                     name="(mu, log_var) side by side",
                     hint="the layers of section 2's table, a ReLU after the hidden layer and two heads on the same "
                     "hidden units: which of the outputs must be free to take any real value?",
                     variants=[
                         ("no ReLU after the hidden layer", np.concatenate(heads(pre), -1)),
                         ("a nonlinearity other than ReLU after the hidden layer (the library's encoder uses "
                          "jax.nn.relu)", np.concatenate(heads(np.tanh(pre)), -1)),
                         ("a nonlinearity other than ReLU after the hidden layer (the library's encoder uses "
                          "jax.nn.relu)", np.concatenate(heads(1 / (1 + np.exp(-pre))), -1)),
                         ("a ReLU on the outputs: mu and log_var must be free to take negative values too",
                          np.concatenate([R.relu(mu_ref), R.relu(lv_ref)], -1)),
                         ("the outputs are swapped: return (mu, log_var)", np.concatenate([lv_ref, mu_ref], -1)),
                         ("the second output is the variance, not its log: the log_var head already gives "
                          "log sigma**2, so leave its output as it is",
                          np.concatenate([mu_ref, np.exp(lv_ref)], -1)),
                         ("the second output is the standard deviation, not log sigma**2: the log_var head already "
                          "gives log sigma**2, so leave its output as it is",
                          np.concatenate([mu_ref, np.exp(0.5 * lv_ref)], -1)),
                     ])
    return _passed("check_encoder", len(sizes))


@_exercise("networks.Decoder")
def check_decoder(cls):
    """Lesson 6, ``ex06_decoder``: ``Decoder(latent_dim, hidden, num_pixels, *, rngs)``, an ``nnx.Module``
    with layers ``hidden``, ``logits``; ``decoder(z (..., latent_dim)) -> logits (..., num_pixels)``.

    Layout by name and shape, then outputs with known weights against
    :func:`vae_lite._reference.decoder_forward` (float64).
    """
    rng = np.random.default_rng(61)
    sizes = ((20, 400, 784, 8), (3, 7, 12, 5), (2, 16, 30, 1))
    for i, (latent_dim, hidden, num_pixels, batch) in enumerate(sizes):
        case = Case("check_decoder", i, len(sizes), {"latent_dim": latent_dim, "hidden": hidden,
                                                      "num_pixels": num_pixels, "z": f"{batch} codes"})
        decoder = _build(case, cls, (latent_dim, hidden, num_pixels), "Decoder")
        expected = _layer_shapes("", {"hidden": (latent_dim, hidden), "logits": (hidden, num_pixels)})
        _compare_layout(case, decoder, expected, "Decoder", DECODER_LAYERS)
        local = _random_params(rng, expected, scale=2.0)
        set_params(decoder, local)
        weights = {f"decoder.{k}": v for k, v in local.items()}  # the reference's names
        z = _f64(_f32(rng.normal(size=(batch, latent_dim))))
        if i == 2:
            z = z[0]
        ref = R.decoder_forward(weights, z)
        got = as_array(case, call(case, compiled(lambda m, z: m(z)), decoder, _f32(z), what="your decoder"), ref.shape,
                       name="the logits",
                       shape_hints={(*ref.shape[:-1], hidden): "return the output layer's values (num_pixels of "
                                    "them), not the hidden units"})
        pre = z @ weights["decoder.hidden.kernel"] + weights["decoder.hidden.bias"]
        expect_close(case, got, ref, rtol=1e-4, atol=1e-4, name="the logits",
                     hint="the two layers of section 2's table, a ReLU after the hidden one, and the logits out as "
                     "they are: any real number per pixel, no squashing",
                     variants=[
                         ("these are probabilities: the decoder returns logits (the loss applies the sigmoid "
                          "inside its stable log-likelihood)", 1 / (1 + np.exp(-ref))),
                         ("no ReLU after the hidden layer",
                          pre @ weights["decoder.logits.kernel"] + weights["decoder.logits.bias"]),
                         ("a ReLU on the output: logits can be negative", R.relu(ref)),
                     ])
    return _passed("check_decoder", len(sizes))


# ---------------------------------------------------------------- the loss through the modules
def _harness(rng, num_pixels, hidden, latent_dim, scale=0.5):
    weights = _random_params(rng, vae_shapes(num_pixels, hidden, latent_dim), scale)
    return harness_from(list(weights), list(weights.values())), weights


def _noise(key, batch, latent_dim):
    """The noise the exercises prescribe: ``jax.random.normal(key, mu.shape)``."""
    return _f64(jax.random.normal(key, (batch, latent_dim), jnp.float32))


def _grad_variants(weights, x, eps):
    """Typical wrong gradients, each as a flat vector."""
    def flat(g):
        return np.concatenate([np.ravel(g[k]) for k in sorted(g)])

    zero_eps = R.vae_loss_and_grad(weights, x, np.zeros_like(eps))[1]
    cut = R.vae_loss_and_grad(weights, x, eps, through_sample=False)[1]
    return flat, [
        ("no gradient reaches the encoder through the sample: build z from the encoder's outputs with lesson 5's "
         "reparameterisation (a sampler that is not a function of mu and log_var, or jax.lax.stop_gradient, "
         "cuts the path)", flat(cut)),
        ("the gradient is that of a loss without noise: z must be a random sample of q(z|x), not its mean",
         flat(zero_eps)),
    ]


@_exercise("training.vae_terms", "training.make_epoch")
def check_vae_loss(fn):
    """Lesson 6, ``ex06_model_loss``: ``vae_loss(model, x (B, D), key) -> scalar``, the negative ELBO
    averaged over the batch with one reparameterised sample per image, noise
    ``jax.random.normal(key, mu.shape)``, through ``model.encoder`` and ``model.decoder``.

    Value and gradient (``nnx.grad``, every parameter) against
    :func:`vae_lite._reference.vae_loss_and_grad`, back-propagation by hand in float64.
    """
    rng = np.random.default_rng(62)
    sizes = ((12, 7, 3, 5), (784, 64, 20, 6))
    for i, (num_pixels, hidden, latent_dim, batch) in enumerate(sizes):
        case = Case("check_vae_loss", i, len(sizes), {"model": f"{num_pixels}-{hidden}-{latent_dim} VAE",
                                                       "x": f"{batch} binary images", "key": f"jax.random.key({i})"})
        model, weights = _harness(rng, num_pixels, hidden, latent_dim)
        x = _f64(rng.random((batch, num_pixels)) < 0.5)
        key = jax.random.key(i)
        eps = _noise(key, batch, latent_dim)
        ref, grads = R.vae_loss_and_grad(weights, x, eps)
        mu, log_var = R.encoder_forward(weights, x)
        kl = R.kl_std(mu, log_var)

        def loss_with(z, w=weights, x=x):
            logits = R.decoder_forward(w, z)
            return np.sum(x * logits - R.softplus(logits), axis=1)

        rec = loss_with(mu + np.exp(0.5 * log_var) * eps)
        got = as_array(case, call(case, compiled(fn), model, _f32(x), key), (), name="the loss",
                       shape_hints={(batch,): "one loss per image: take the mean over the batch"},
                       nonfinite_hint="use a stable log-likelihood of the logits (lesson 6's negative_elbo_loss, "
                       "or vae_lite.distributions.log_bernoulli)")
        expect_close(case, got, ref, rtol=1e-4, atol=1e-3, name="the loss",
            hint="the negative ELBO of section 1, averaged over the batch, with one sample z per image drawn "
            "from q(z|x) with noise jax.random.normal(key, mu.shape)",
            variants=[
                ("you summed over the batch; the loss is the MEAN over the batch", batch * ref),
                ("you returned the ELBO; the loss is its negative", -ref),
                ("you forgot the KL term", np.mean(-rec)),
                ("wrong sign of the KL", np.mean(-kl - rec)),
                ("z has the right mean but the wrong spread: log_var is the log of the VARIANCE; which of sigma, "
                 "sigma**2 and log sigma**2 scales the noise?", np.mean(kl - loss_with(mu + np.exp(log_var) * eps))),
                ("z has the right mean but the wrong spread: log_var is the log of the VARIANCE; which of sigma, "
                 "sigma**2 and log sigma**2 scales the noise?", np.mean(kl - loss_with(mu + log_var * eps))),
                ("z is the mean of q(z|x): draw one sample per image", np.mean(kl - loss_with(mu))),
                *[("the noise differs: draw it with jax.random.normal(key, mu.shape), the key as given",
                   lambda k=k, w=weights, x=x, b=batch, d=latent_dim: R.vae_loss_and_grad(w, x, _noise(k, b, d))[0])
                  for k in jax.random.split(key)],
            ])
        x32 = _f32(x)
        grad_fn = compiled(nnx.grad(lambda m, x=x32, k=key: fn(m, x, k)))
        got_grads = call(case, grad_fn, model, what="nnx.grad of your loss w.r.t. the model")
        flat, variants = _grad_variants(weights, x, eps)
        try:
            got_flat = flat({k: np.asarray(v) for k, v in
                             _flat(nnx.to_pure_dict(got_grads)).items()})
        except _TimeUp:
            raise
        except BaseException:  # noqa: BLE001 - a gradient tree of another shape, or one that raises
            case.fail("the gradient of your loss could not be matched with the model's parameters",
                      hint="compute the loss from model.encoder and model.decoder only, with jax.numpy operations")
        expect_close(case, got_flat, flat(grads), rtol=1e-3, atol=1e-4, name="the gradient w.r.t. every parameter",
                     hint="the loss must be a differentiable function of every parameter of the encoder and "
                     "the decoder", variants=variants)
    return _passed("check_vae_loss", len(sizes))


# ---------------------------------------------------------------- one training step
def _reference_steps(weights, batches, keys, learning_rate, fresh_state=False):
    """Parameters after each of ``len(batches)`` Adam steps on the minibatch loss, and each step's loss."""
    losses = []

    def grads_of(t, params):
        eps = _noise(keys[t - 1], batches[t - 1].shape[0], params["encoder.mu.bias"].shape[0])
        loss, grads = R.vae_loss_and_grad(params, batches[t - 1], eps)
        losses.append(loss)
        return grads

    if not fresh_state:
        return R.adam(weights, grads_of, len(batches), learning_rate), losses
    history, params = [], weights
    for t in range(1, len(batches) + 1):
        params = R.adam(params, lambda _, p, t=t: grads_of(t, p), 1, learning_rate)[0]
        history.append(params)
    return history, losses


def _vector(params):
    return np.concatenate([np.ravel(params[k]) for k in sorted(params)])


def step_check_model(num_pixels, seed=0):
    """The 784-400-20 :class:`HarnessVAE` the 200-step check trains: kernels N(0, 1/fan_in), zero biases
    (the scale nnx.Linear draws), from NumPy's generator, so no eager JAX initialisation is compiled."""
    model = nnx.eval_shape(lambda: HarnessVAE(num_pixels, 400, 20))
    rng = np.random.default_rng(seed)
    set_params(model, {n: rng.normal(size=s) / np.sqrt(s[0]) if len(s) == 2 else np.zeros(s)
                       for n, s in vae_shapes(num_pixels, 400, 20).items()})
    return model


def _elbo_gain_of_steps(fn, case, num_steps=200, batch=100):
    """Mean ELBO (nats per image) gained by ``num_steps`` of the student's step on 1,000 MNIST images."""
    from vae_lite import data

    # MNIST itself (package data), whatever VAE_LITE_DATASET says: the margin was measured on these images
    images = data._load_idx("mnist", None, download=False).x_train[:1000]
    x = jax.random.bernoulli(jax.random.key(7), jnp.asarray(images, jnp.float32))
    x = x.astype(jnp.float32)
    model = step_check_model(x.shape[1])
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    probe = jax.random.key(8)

    @nnx.jit
    def elbo(model, x, key):  # x an argument: a captured array would be compiled in as a constant
        mu, log_var = model.encoder(x)
        z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
        logits = model.decoder(z)
        recon = jnp.sum(x * logits - jax.nn.softplus(logits), axis=1)
        return jnp.mean(recon - 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var, axis=1))

    before = float(elbo(model, x, probe))
    for step, key in enumerate(jax.random.split(jax.random.key(9), num_steps)):
        start = (step * batch) % x.shape[0]
        call(case, fn, model, optimizer, x[start : start + batch], key, what=f"your train_step (step {step + 1})")
    return float(elbo(model, x, probe)) - before


@_exercise("training.make_epoch", "training.fit")
def check_train_step(fn):
    """Lesson 6, ``ex06_train_step``: ``train_step(model, optimizer, x (B, D), key) -> loss`` (the loss
    before the update) that updates ``model`` in place through ``optimizer``
    (``nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)``).

    Three steps on a small model, compared after each with Adam written out
    (:func:`vae_lite._reference.adam`) on back-propagation by hand; then 200 steps on 1,000
    MNIST images must raise the ELBO by :data:`STEP_MARGIN_NATS`.
    """
    rng = np.random.default_rng(63)
    configs = ((12, 7, 3, 5, 0.01), (40, 16, 4, 9, 0.003))
    for i, (num_pixels, hidden, latent_dim, batch, lr) in enumerate(configs):
        case = Case("check_train_step", i, len(configs) + 1, {
            "model": f"{num_pixels}-{hidden}-{latent_dim} VAE", "optimizer": f"Adam, learning rate {lr}",
            "x": f"3 minibatches of {batch} binary images", "key": "a new key each step"})
        model, weights = _harness(rng, num_pixels, hidden, latent_dim)
        optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
        batches = [_f64(rng.random((batch, num_pixels)) < 0.5) for _ in range(3)]
        keys = list(jax.random.split(jax.random.key(10 + i), 3))
        reference, ref_losses = _reference_steps(weights, batches, keys, lr)
        for t, (xb, key) in enumerate(zip(batches, keys, strict=True)):
            before = _vector(param_arrays(model))
            out = call(case, fn, model, optimizer, _f32(xb), key, what=f"your train_step (step {t + 1})")
            kinds = (nnx.Module, nnx.Optimizer)  # by the actual type: a student's __class__ runs no code here
            if issubclass(type(out), kinds) or (
                    type(out) in (tuple, list) and any(issubclass(type(o), kinds) for o in out)):
                case.fail(f"train_step returned {type(out).__name__} (step {t + 1})",
                          hint="update the model in place through optimizer.update and return only the loss")
            loss = as_array(case, out, (), name=f"the loss returned by step {t + 1}")
            after = as_array(case, _vector(param_arrays(model)), before.shape, name=f"the parameters after step {t + 1}",
                             nonfinite_hint="the update made the parameters NaN or inf: check the loss and its gradient")
            if np.array_equal(after, before):
                case.fail(f"the model's parameters did not change in step {t + 1}",
                          hint="call optimizer.update(model, grads) inside the step: it changes the model in place "
                          "(a copy of the model, or new parameters you return, never reach the caller's model)")
            expect_close(case, loss, ref_losses[t], rtol=1e-4, atol=1e-3, name=f"the loss of step {t + 1}",
                         hint="return the minibatch loss (your vae_loss), computed before the update")
            ref = _vector(reference[t])

            def fresh(t=t, w=weights, b=batches, k=keys, lr=lr):
                return _vector(_reference_steps(w, b, k, lr, fresh_state=True)[0][t])

            expect_close(case, after, ref, rtol=1e-3, atol=1e-5, name=f"the parameters after step {t + 1}",
                         hint="one Adam step on the gradient of your vae_loss for this minibatch and key: "
                         "nnx.value_and_grad gives the loss and its gradient with respect to the model, and "
                         "optimizer.update applies the gradient to the model in place",
                         variants=[("the parameters moved the wrong way: the optimizer minimises the loss you give "
                                    "it, so give it the loss (the negative ELBO), not the ELBO", 2 * before - ref),
                                   ("Adam's moments restart every step: create the optimizer once, outside the "
                                    "step, and pass it in", fresh)])
    case = Case("check_train_step", len(configs), len(configs) + 1,
                {"model": "784-400-20 VAE", "x": "1,000 MNIST images, batches of 100", "steps": 200})
    gain = _elbo_gain_of_steps(fn, case)
    if not gain >= STEP_MARGIN_NATS:
        case.fail(f"200 steps raised the ELBO by only {gain:.1f} nats per image (correct steps gain over "
                  f"{STEP_MARGIN_NATS:.0f} here)", hint="train on the minibatch and the key each call receives, with "
                  "the loss of section 3: a missing term, the mean of q in place of a sample or grey pixels each "
                  "gain less")
    return _passed("check_train_step", len(configs) + 1)
