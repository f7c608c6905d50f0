r"""A small digit classifier, a judge of generated images (core; lesson 2).

"Does this decoded image look like a digit?" is answered here by an independent
network trained on real labelled digits: a sample *looks like a digit* when the
classifier is confident about it, max_k p(k | x) >= 0.9. Unlike the distance to the
nearest training image, this does not reward blur: a blurred hybrid of a 3 and an 8 is
close to many training images but leaves the classifier unsure.

The classifier is an MLP (pixels -> hidden -> 10 logits) in Flax NNX, trained with Adam
on the grey-level training images, one compiled ``jax.lax.scan`` per epoch, and cached
and obtained like the VAEs (:func:`vae_lite.checkpoints.obtain`: the user's model cache, the
model shipped with vae-lite, then training).
"""

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vae_lite import _args
from vae_lite import data as data_lib
from vae_lite.checkpoints import Recipe, cache_file, entry_name, obtain
from vae_lite.data import load
from vae_lite.networks import MLP

NUM_CLASSES = 10
CONFIDENT = 0.9  # a sample counts as "recognised" when its top class has at least this probability
PREDICT_BLOCK = 2000  # images classified together


class Classifier(nnx.Module):
    """Digit classifier: ``classifier(x)`` maps images ``(..., pixels)`` in [0, 1] to logits ``(..., 10)``."""

    def __init__(self, num_pixels, hidden=(256,), *, rngs: nnx.Rngs):
        self.num_pixels = int(num_pixels)
        self.net = MLP((self.num_pixels, *hidden, NUM_CLASSES), rngs=rngs)

    def __call__(self, x):
        _args.last_axis("x", x, self.num_pixels, "Pass flat images, one per row: x.reshape(len(x), -1).")
        return self.net(x)


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines a trained classifier (and so its cache entry)."""

    dataset: str = "mnist"
    hidden: tuple = (256,)
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        _args.instance("hidden", self.hidden, (tuple, list), "Pass a tuple of hidden-layer widths, e.g. hidden=(256,).")
        object.__setattr__(self, "hidden", tuple(_args.count("each hidden width", h) for h in self.hidden))
        for name in ("epochs", "batch_size"):
            object.__setattr__(self, name, _args.count(name, getattr(self, name)))
        object.__setattr__(self, "seed", _args.count("seed", self.seed, minimum=0))
        _args.in_range("learning_rate", _args.number("learning_rate", self.learning_rate), 0, math.inf,
                       "Pass a step size > 0, e.g. learning_rate=1e-3.", closed=False)


class ClassifierResult(NamedTuple):
    """A trained classifier, its accuracy on the data set's test images, and where it came from
    (``source``: ``"cache"``, ``"shipped"`` or ``"trained"``, as for :class:`vae_lite.training.TrainResult`)."""

    model: Classifier
    config: ClassifierConfig
    test_accuracy: float
    source: str


class Share(NamedTuple):
    """The share of images the classifier recognises confidently, from :func:`confident_share`.

    Attributes:
        share: fraction of images with max_k p(k | x) >= threshold.
        stderr: its binomial standard error, sqrt(share (1 - share) / n).
        num_images: n.
        labels: ``(n,)`` the predicted digit of each image.
        confidence: ``(n,)`` max_k p(k | x) of each image.
    """

    share: float
    stderr: float
    num_images: int
    labels: np.ndarray
    confidence: np.ndarray


@functools.lru_cache(maxsize=4)
def _epoch_for(graphdef, batch_size, learning_rate, max_level):
    optimizer = optax.adam(learning_rate)

    def step(carry, idx):
        params, opt_state, x, y = carry
        xb = data_lib.intensities_of(x[idx], max_level)  # only the minibatch becomes float32

        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(xb)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, x, y), loss

    @jax.jit
    def epoch(params, opt_state, x, y, key):
        num_batches = x.shape[0] // batch_size
        order = jax.random.permutation(key, x.shape[0])[: num_batches * batch_size].reshape(num_batches, batch_size)
        (params, opt_state, _, _), losses = jax.lax.scan(step, (params, opt_state, x, y), order)
        return params, opt_state, jnp.mean(losses)

    return optimizer, epoch


def fit_classifier(model, config, x, y, *, progress=True):
    """Train ``model`` in place on images ``x`` ``(N, pixels)`` with labels ``y`` ``(N,)``.

    ``x``: a data set's :class:`~vae_lite.data.Images` or intensities in [0, 1]. Returns the
    history: per epoch, the mean cross-entropy over its minibatches (``loss``) and its ``seconds``.
    """
    x, max_level = data_lib.levels_of(x)
    y = _args.class_labels("y", y, x.shape[0], NUM_CLASSES)
    _args.at_least("the number of images", x.shape[0], config.batch_size,
                   f"one minibatch holds batch_size={config.batch_size} images; pass more images or a smaller batch_size.")
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer, epoch = _epoch_for(graphdef, config.batch_size, config.learning_rate, max_level)
    opt_state = optimizer.init(params)
    x, y, key = jnp.asarray(x), jnp.asarray(y, jnp.int32), jax.random.key(config.seed + 1)
    from tqdm.auto import tqdm

    history = {"loss": [], "seconds": []}
    for _ in tqdm(range(config.epochs), desc="training classifier", disable=not progress):
        start = time.perf_counter()
        key, epoch_key = jax.random.split(key)
        params, opt_state, loss = epoch(params, opt_state, x, y, epoch_key)
        history["loss"].append(float(loss))
        history["seconds"].append(time.perf_counter() - start)
    nnx.update(model, params)
    return history


@nnx.jit
def _probs(model, x):
    return jax.nn.softmax(model(x), axis=-1)


def predict_probs(model, x):
    """Class probabilities p(k | x) ``(n, 10)`` for images ``x`` ``(n, pixels)`` in [0, 1]. Lesson 2."""
    x = np.asarray(x, dtype=np.float32)
    _args.image_batch("x", x)
    _args.in_range("x", x, 0, 1, "Pass intensities (e.g. sigmoid of decoder logits, or grey levels / 255).")
    _args.last_axis("x", x, model.num_pixels, "Pass flat images, one per row.")
    blocks = [np.asarray(_probs(model, jnp.asarray(x[i : i + PREDICT_BLOCK]))) for i in range(0, len(x), PREDICT_BLOCK)]
    return np.concatenate(blocks) if blocks else np.zeros((0, NUM_CLASSES), np.float32)


def confident_share(model, x, threshold=CONFIDENT):
    r"""Share of images ``x`` ``(n, pixels)`` that the classifier recognises confidently, with a standard error.

    .. math:: \hat s = \frac1n \sum_i \mathbb 1\big[\max_k p(k \mid x_i) \ge \tau\big], \qquad
        \mathrm{se} = \sqrt{\hat s (1 - \hat s) / n}

    Returns a :class:`Share`. Introduced in lesson 2.
    """
    _args.in_range("threshold", _args.number("threshold", threshold), 0, 1,
                   "It is a probability strictly between 0 and 1, e.g. threshold=0.9.", closed=False)
    probs = predict_probs(model, x)
    _args.at_least("the number of images in x", len(probs), 1, "x holds no images; pass at least one.")
    confidence = probs.max(axis=1)
    share = float(np.mean(confidence >= threshold))
    return Share(share, float(np.sqrt(share * (1 - share) / len(probs))), len(probs), probs.argmax(axis=1), confidence)


def accuracy(model, x, y):
    """Fraction of images ``x`` whose most probable class is the label ``y``. Lesson 2."""
    return float(np.mean(predict_probs(model, np.asarray(x)).argmax(axis=1) == np.asarray(y)))


def classifier_recipe(config, data):
    """The :class:`~vae_lite.checkpoints.Recipe` of a classifier for ``config`` trained on ``data``."""
    return Recipe(
        what="classifier",
        entry=entry_name(f"classifier-{config.dataset}-e{config.epochs}", config, data),
        config=config,
        call="classifier.train_classifier",
        build=lambda: Classifier(data.num_pixels, config.hidden, rngs=nnx.Rngs(config.seed)),
        fit=lambda model, progress: fit_classifier(model, config, data.x_train, data.y_train, progress=progress),
    )


def classifier_cache_path(config, data):
    """The model cache's file for ``config`` trained on ``data`` with this library version."""
    return cache_file(classifier_recipe(config, data))


def train_classifier(config=None, data=None, *, retrain=False, progress=True, **overrides):
    """Load a trained digit classifier for ``data``, or train it (the order of :func:`vae_lite.checkpoints.obtain`).

    Args:
        config: a :class:`ClassifierConfig` (default: 784-256-10, 5 epochs on MNIST).
        data: a :class:`vae_lite.data.Dataset` (default ``load(config.dataset, fallback=True)``).
        retrain: train even if the model cache or the shipped models have this configuration.
        progress: say where a loaded classifier came from; show a progress bar while training.
        **overrides: fields of :class:`ClassifierConfig` to replace, e.g. ``epochs=10``.

    Returns:
        a :class:`ClassifierResult` with the accuracy on the data set's test images. Lesson 2.
    """
    config = dataclasses.replace(config or ClassifierConfig(), **overrides)
    if data is None:
        data = load(config.dataset, fallback=True)
    config = dataclasses.replace(config, dataset=data.name)
    model, _, source = obtain(classifier_recipe(config, data), retrain=retrain, progress=progress)
    return ClassifierResult(model, config, accuracy(model, np.asarray(data.x_test), data.y_test), source)


# --- k-nearest-neighbour accuracy on codes (lessons 6 and 8) ----------------------------------------------------

KNN_BLOCK_BYTES = 8 * 2**20  # the float64 distance block of test rows x reference codes stays under this


class KnnAccuracy(NamedTuple):
    """How often the majority label of a code's k nearest reference codes is its own label, from :func:`knn_accuracy`.

    Attributes:
        accuracy: fraction of query codes whose predicted label is their label.
        stderr: its binomial standard error, sqrt(accuracy (1 - accuracy) / n). For the difference between two
            code spaces on the same images use the paired one, ``np.std(a.correct - b.correct) / sqrt(n)``.
        correct: ``(n,)`` bool, per query code: predicted label == label.
        predicted: ``(n,)`` the predicted labels.
        per_class: ``(num_classes,)`` accuracy among the query codes of each label (NaN for a label with no query code).
    """

    accuracy: float
    stderr: float
    correct: np.ndarray
    predicted: np.ndarray
    per_class: np.ndarray


def _codes(name, codes, width=None):
    """``codes`` as a float64 ``(n, d)`` array of finite numbers with at least one row."""
    if not hasattr(codes, "dtype"):
        codes = np.asarray(codes)
    _args.floating(name, codes)
    values = np.asarray(codes, dtype=np.float64)
    fix = "Pass (num_codes, latent_dim) with at least one code, one code per row, e.g. model.code(x)."
    _args.ndim(name, values, 2, fix)
    _args.at_least(f"{name}'s number of codes", len(values), 1, fix)
    if width is not None:
        _args.equal(f"{name}'s number of columns", values.shape[1], width,
                    f"It must have {width} columns like train_codes: encode both sets with the same model.")
    _args.finite(name, values, "Codes must be finite numbers; check the model that produced them.")
    return values


def _vote(reference, reference_labels, queries, k, num_classes, leave_out):
    """Majority label of the ``k`` nearest reference rows, per query row (ties to the smaller label).

    ``leave_out``: ``queries`` are the reference rows themselves and each is excluded from its own neighbours.
    """
    squared = np.sum(reference**2, axis=1)
    block = max(1, KNN_BLOCK_BYTES // (8 * len(reference)))
    predicted = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), block):  # (block, n_ref) distances at a time, not (n, n_ref)
        rows = queries[start : start + block]
        distance2 = np.sum(rows**2, axis=1)[:, None] - 2 * rows @ reference.T + squared[None, :]
        if leave_out:
            distance2[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf
        nearest = np.argpartition(distance2, k - 1, axis=1)[:, :k]  # the k smallest, in any order
        votes = np.zeros((len(rows), num_classes), np.int64)
        np.add.at(votes, (np.arange(len(rows))[:, None], reference_labels[nearest]), 1)
        predicted[start : start + len(rows)] = votes.argmax(axis=1)  # argmax: a tie goes to the smaller label
    return predicted


def knn_accuracy(train_codes, train_labels, test_codes=None, test_labels=None, *, k=5, standardize=True):
    r"""Accuracy of the k-nearest-neighbour vote on codes: are codes of the same digit close together?

    Each test code is labelled by the majority label of its ``k`` nearest training codes (Euclidean
    distance; a tied vote goes to the smaller label), and compared with its own label:

    .. math:: \hat a = \frac1n \sum_i \mathbb 1\big[\operatorname{mode}\{y_j : j \in N_k(z_i)\} = y_i\big],
        \qquad \mathrm{se} = \sqrt{\hat a (1 - \hat a) / n}

    Without ``test_codes`` and ``test_labels`` it is the leave-one-out accuracy on the training codes
    (each code's neighbours are the other codes). Distances are computed in float64, a block of query
    rows at a time (at most ``KNN_BLOCK_BYTES`` of distances in memory).

    Args:
        train_codes: ``(n_train, d)`` the reference codes, e.g. ``model.code(x_train)``.
        train_labels: ``(n_train,)`` their integer labels.
        test_codes: ``(n, d)`` the codes to classify, or ``None`` for leave-one-out.
        test_labels: ``(n,)`` their labels (given exactly when ``test_codes`` is).
        k: the number of neighbours that vote, 1 <= k <= the number of reference codes.
        standardize: first subtract the training codes' mean and divide by their standard deviation, per
            dimension, so a code space's scale counts neither for nor against it (a constant dimension is
            only centred).

    Returns:
        a :class:`KnnAccuracy`. Introduced in lesson 6; lesson 8 uses it on 2-d codes.
    """
    reference = _codes("train_codes", train_codes)
    reference_labels = _args.class_labels("train_labels", train_labels, len(reference))
    _args.together("test_codes", test_codes, "test_labels", test_labels,
                   "Neither means leave-one-out on the training codes.")
    leave_out = test_codes is None
    if leave_out:
        queries, labels = reference, reference_labels
    else:
        queries = _codes("test_codes", test_codes, width=reference.shape[1])
        labels = _args.class_labels("test_labels", test_labels, len(queries))
    k = _args.count("k", k)
    available = len(reference) - leave_out
    _args.at_most("k", k, available, f"it needs at least {k} reference codes, got {available}"
                  f"{' (leave-one-out: all codes but the one classified)' if leave_out else ''}; "
                  f"pass k <= {available} or more training codes.")
    standardize = _args.flag("standardize", standardize)
    if standardize:
        mean, sd = reference.mean(axis=0), reference.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        reference, queries = (reference - mean) / sd, (queries - mean) / sd
    num_classes = int(max(reference_labels.max(), labels.max())) + 1
    predicted = _vote(reference, reference_labels, queries, k, num_classes, leave_out)
    correct = predicted == labels
    accuracy = float(correct.mean())
    per_class = np.full(num_classes, np.nan)
    for label in np.unique(labels):
        per_class[label] = correct[labels == label].mean()
    return KnnAccuracy(accuracy, float(np.sqrt(accuracy * (1 - accuracy) / len(correct))), correct, predicted, per_class)
