"""Fast VAE / autoencoder training (core; lessons 2-8).

One epoch is one compiled function: ``jax.lax.scan`` over minibatches, with the data
set passed as an argument (a captured array would be baked into the program as a
constant). :func:`train` loads or trains a model through :func:`vae_lite.checkpoints.obtain`:
the user's model cache, then the models that ship with vae-lite, then training.
"""

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vae_lite import _args
from vae_lite import data as data_lib
from vae_lite._runtime import (  # noqa: F401 - the lessons' explicit set-up calls live here
    compilation_cache,
    enable_compilation_cache,
    release_memory,
)
from vae_lite.checkpoints import Recipe, cache_file, entry_name, obtain
from vae_lite.data import load
from vae_lite.distributions import kl_normal_std, log_bernoulli, reparameterize
from vae_lite.networks import VAE, Autoencoder

MONITOR_IMAGES = 2000  # training and held-out images whose ELBO :func:`fit` records after each epoch


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


class Terms(NamedTuple):
    """Per-image terms of the training objective, each ``(batch,)``; the ELBO is ``recon - kl``.

    Attributes:
        recon: log p(x | z), z drawn from q(z|x) (a VAE) or the code itself (an autoencoder).
        kl: KL(q(z|x) || p(z)) in closed form; zeros for an autoencoder.
    """

    recon: jnp.ndarray
    kl: jnp.ndarray


class Metrics(NamedTuple):
    """Mean per-image figures of a model on a set of images (nats), from :func:`evaluate`."""

    elbo: float
    recon: float
    kl: float


def vae_terms(key, model, x):
    r"""Per-image ELBO terms of a VAE with one reparameterised sample.

    Returns a :class:`Terms` ``(recon, kl)``, each ``(batch,)``: recon = log p(x|z) with
    z ~ q(z|x), kl = KL(q(z|x) || p(z)); the ELBO is ``recon - kl``. Introduced in lesson 6.
    """
    mu, log_var = model.encoder(x)
    z = reparameterize(key, mu, log_var)
    return Terms(log_bernoulli(x, model.decoder(z)), kl_normal_std(mu, log_var))


def autoencoder_terms(key, model, x):
    """Per-image terms of a plain autoencoder: ``Terms(log p(x | z = encoder(x)), zeros)``. Lesson 2.

    ``key`` is unused (the code is deterministic); it is there so both models' terms are called alike.
    """
    recon = log_bernoulli(x, model.decoder(model.code(x)))
    return Terms(recon, jnp.zeros_like(recon))


MODELS = {VAE.kind: (VAE, vae_terms), Autoencoder.kind: (Autoencoder, autoencoder_terms)}
EVAL_BLOCK = 2000  # images evaluated together by evaluate()
_JITTED_TERMS = {kind: nnx.jit(terms) for kind, (_, terms) in MODELS.items()}  # compiled once per shape


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (and so its cache entry).

    ``model`` is ``"vae"`` or ``"ae"``; ``beta`` weights the KL term (1 is the ELBO).
    """

    dataset: str = "mnist"
    model: str = "vae"
    hidden: tuple = (400,)
    latent_dim: int = 20
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    seed: int = 0

    def __post_init__(self):
        _args.one_of("model", self.model, list(MODELS))
        _args.instance("hidden", self.hidden, (tuple, list), f"hidden is a tuple of hidden-layer widths: write "
                       f"hidden=({self.hidden!r},) for one layer, hidden=(512, 256) for two.")
        object.__setattr__(self, "hidden", tuple(_args.count("each hidden width", h) for h in self.hidden))
        for name in ("latent_dim", "epochs", "batch_size"):
            object.__setattr__(self, name, _args.count(name, getattr(self, name)))
        object.__setattr__(self, "seed", _args.count("seed", self.seed, minimum=0))
        for name, low in (("learning_rate", 0.0), ("beta", None)):
            value = getattr(self, name)
            value = _args.number(name, value)
            _args.in_range(name, value, 0, np.inf, "learning_rate must be positive, beta at least 0.",
                           closed=low is None)


@dataclass
class TrainResult:
    """A trained model, its per-epoch history, and where it came from.

    ``source`` is ``"cache"`` (the user's model cache), ``"shipped"`` (the model that ships
    with vae-lite) or ``"trained"`` (trained by this call).
    """

    model: nnx.Module
    config: TrainConfig
    history: dict = field(default_factory=dict)
    source: str = "trained"


def build_model(config, num_pixels):
    """A freshly initialised model for ``config`` (deterministic from ``config.seed``)."""
    model_cls, _ = MODELS[config.model]
    return model_cls(num_pixels, config.hidden, config.latent_dim, rngs=nnx.Rngs(config.seed))


def make_epoch(graphdef, terms_fn, optimizer, batch_size, max_level=1):
    """Compile one epoch: shuffle, binarise each minibatch afresh, scan the Adam steps.

    ``terms_fn(key, model, x) -> Terms`` gives the per-image terms (:func:`vae_terms`).
    Returns ``epoch(params, opt_state, x, key, beta=1.0) -> (params, opt_state, recon, kl)``
    where ``recon`` and ``kl`` are the epoch's mean per-image terms and ``beta`` weights
    the KL (an argument, so one compiled epoch serves a whole beta sweep). ``x`` holds grey levels
    (uint8, with intensity = level / ``max_level``) or intensities in [0, 1]
    (``max_level=1``); only the current minibatch is ever converted to float32.
    """

    def loss_fn(params, key, xb, beta):
        recon, kl = terms_fn(key, nnx.merge(graphdef, params), xb)
        return -jnp.mean(recon - beta * kl), (jnp.mean(recon), jnp.mean(kl))

    def step(carry, inputs):
        params, opt_state, x, beta = carry
        idx, key = inputs
        key_bin, key_z = jax.random.split(key)
        xb = data_lib.binarize(key_bin, data_lib.intensities_of(x[idx], max_level))  # dynamic binarisation
        grads, terms = jax.grad(loss_fn, has_aux=True)(params, key_z, xb, beta)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, x, beta), terms

    @jax.jit
    def epoch(params, opt_state, x, key, beta=1.0):
        num_batches = x.shape[0] // batch_size
        key_perm, key_steps = jax.random.split(key)
        order = jax.random.permutation(key_perm, x.shape[0])[: num_batches * batch_size]
        inputs = (order.reshape(num_batches, batch_size), jax.random.split(key_steps, num_batches))
        carry = (params, opt_state, x, jnp.asarray(beta, jnp.float32))
        (params, opt_state, _, _), (recon, kl) = jax.lax.scan(step, carry, inputs)
        return params, opt_state, jnp.mean(recon), jnp.mean(kl)

    return epoch


@functools.lru_cache(maxsize=8)
def _epoch_for(graphdef, model, batch_size, learning_rate, max_level):
    """``(optimizer, epoch)`` for one architecture and optimiser, made once per process, so a
    second training of the same shapes (another seed, beta or number of epochs) reuses the
    compiled epoch."""
    optimizer = optax.adam(learning_rate)
    return optimizer, make_epoch(graphdef, MODELS[model][1], optimizer, batch_size, max_level)


def _monitor_set(levels, max_level, key):
    """The first :data:`MONITOR_IMAGES` of ``levels`` (see :func:`_training_levels`), binarised once
    with ``key`` (float32 0/1)."""
    return data_lib.binarize(key, data_lib.intensities_of(levels[:MONITOR_IMAGES], max_level))


def _monitor_keys(seed):
    """``(train, test, evaluation)`` keys of the monitor sets :func:`fit` records."""
    return jax.random.split(jax.random.key(seed + 2), 3)


def held_out_elbo(model, held_out, seed=0):
    """The ELBO that :func:`fit` records as ``history["test_elbo"]``, for any model with
    ``encoder(x) -> (mu, log_var)`` and ``decoder(z) -> logits``: the first :data:`MONITOR_IMAGES`
    of ``held_out``, binarised once, evaluated with the same keys (``seed`` as in the
    configuration). Lesson 6 compares the student's own VAE with the library's this way.
    """
    _, key_test, eval_key = _monitor_keys(_args.count("seed", seed, minimum=0))
    images = _monitor_set(*data_lib.levels_of(held_out, "held_out"), key_test)
    return evaluate(eval_key, model, images).elbo


def fit(model, config, x, *, held_out=None, progress=True):
    """Train ``model`` in place on images ``x`` and return the history.

    ``x``: ``(num_images, pixels)`` intensities in [0, 1], or a data set's :class:`Images`
    (trained from their uint8 levels, a quarter of the memory).

    The history holds, per epoch, the running means over the epoch's minibatches (``elbo``,
    ``recon``, ``kl``: the parameters change during the epoch) and its ``seconds``. With
    ``held_out`` images (e.g. the test set) it also holds ``train_elbo`` and ``test_elbo``:
    the ELBO at the end of each epoch on the first :data:`MONITOR_IMAGES` training and
    held-out images, each binarised once and evaluated with the same key, so the two curves
    differ only in the images (their distance is the generalisation gap).
    """
    x, max_level = data_lib.levels_of(x)
    monitor = None
    if held_out is not None:
        key_train, key_test, eval_key = _monitor_keys(config.seed)
        monitor = {"train_elbo": _monitor_set(x, max_level, key_train),
                   "test_elbo": _monitor_set(*data_lib.levels_of(held_out, "held_out"), key_test)}
    _args.at_least("the number of training images", x.shape[0], config.batch_size,
                   f"one minibatch takes batch_size={config.batch_size}; pass more images or a smaller batch_size.")
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer, epoch = _epoch_for(graphdef, config.model, config.batch_size, config.learning_rate, max_level)
    opt_state = optimizer.init(params)
    x = jnp.asarray(x)
    key = jax.random.key(config.seed + 1)
    history = {name: [] for name in ("elbo", "recon", "kl", "seconds", *(monitor or ()))}
    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.epochs + 1), desc=f"training {config.model}", disable=not progress)
    for e in bar:
        start = time.perf_counter()
        key, epoch_key = jax.random.split(key)
        params, opt_state, recon, kl = epoch(params, opt_state, x, epoch_key, config.beta)
        recon, kl = float(recon), float(kl)
        if not (np.isfinite(recon) and np.isfinite(kl)):
            raise TrainingDivergedError(
                f"Training diverged in epoch {e}: the loss became {-(recon - kl)}. Try a smaller "
                f"learning_rate (now {config.learning_rate}) or check the data for NaN."
            )
        for name, value in (("elbo", recon - kl), ("recon", recon), ("kl", kl)):
            history[name].append(value)
        history["seconds"].append(time.perf_counter() - start)
        if monitor:
            nnx.update(model, params)
            for name, images in monitor.items():
                history[name].append(evaluate(eval_key, model, images).elbo)
        bar.set_postfix(elbo=f"{recon - kl:.2f}")
    nnx.update(model, params)
    return history


def cache_path(config, data):
    """The model cache's file for ``config`` trained on ``data`` with this library version."""
    return cache_file(train_recipe(config, data))


def train_recipe(config, data):
    """The :class:`Recipe` of a VAE or autoencoder for ``config`` trained on ``data`` (see :func:`train`)."""
    stem = f"{config.model}-{config.dataset}-z{config.latent_dim}-e{config.epochs}"
    stem += f"-beta{config.beta:g}" if config.beta != 1 else ""
    return Recipe(
        what="model",
        entry=entry_name(stem, config, data),
        config=config,
        call="training.train",
        build=lambda: build_model(config, data.num_pixels),
        fit=lambda model, progress: fit(model, config, data.x_train, held_out=data.x_test, progress=progress),
    )


def train(config=None, data=None, *, retrain=False, progress=True, **overrides):
    """Load a trained model for ``config`` on ``data``, or train it (see :func:`obtain` for the order).

    Args:
        config: a :class:`TrainConfig` (default: the standard 784-400-20 MNIST VAE).
        data: a :class:`vae_lite.data.Dataset`; by default ``load(config.dataset,
            fallback=True)`` — offline without MNIST that is the bundled digits, and
            the returned config says so.
        retrain: train even if the model cache or the shipped models have this configuration.
        progress: say in one line where a loaded model came from; show a ``tqdm`` progress
            bar with the running ELBO while training.
        **overrides: fields of :class:`TrainConfig` to replace, e.g. ``latent_dim=2``.

    Returns:
        a :class:`TrainResult`. Introduced in lesson 2 (autoencoder) and lesson 6 (VAE).
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    if data is None:
        data = load(config.dataset, fallback=True)
    config = dataclasses.replace(config, dataset=data.name)
    model, metadata, source = obtain(train_recipe(config, data), retrain=retrain, progress=progress)
    return TrainResult(model, config, metadata["history"], source)


def evaluate(key, model, x):
    """Mean per-image :class:`Metrics` ``(elbo, recon, kl)`` of ``model`` on images ``x`` (one z sample each).

    For a plain autoencoder, ``kl`` is 0 and ``elbo`` is just the reconstruction term. A model
    without a ``kind`` (lesson 6's own) is evaluated as a VAE: ``encoder(x) -> (mu, log_var)``.
    Introduced in lesson 6.
    """
    _args.prng_key("key", key)
    _args.nonempty_image_batch("x", x)
    terms_fn = _JITTED_TERMS[getattr(model, "kind", VAE.kind)]  # a model of the student's own is a VAE
    blocks = [  # blocks of images keep the (images, pixels) intermediates small
        terms_fn(jax.random.fold_in(key, i), model, jnp.asarray(x[start : start + EVAL_BLOCK]))
        for i, start in enumerate(range(0, len(x), EVAL_BLOCK))
    ]
    recon, kl = (jnp.concatenate(parts) for parts in zip(*blocks, strict=True))
    return Metrics(float(jnp.mean(recon - kl)), float(jnp.mean(recon)), float(jnp.mean(kl)))


def seconds_per_point(fn, num_points, repeats=3):
    """Best wall time of ``fn()`` over ``repeats`` runs (after one warm-up run, so compilation is
    excluded), divided by ``num_points``. Timings depend on the machine and its load. Lesson 7
    times inference by optimisation against one encoder pass with it.
    """
    num_points, repeats = _args.count("num_points", num_points), _args.count("repeats", repeats)
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best / num_points
