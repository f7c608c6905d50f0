"""Trained models on disk: checkpoints, the model cache, the shipped models, and the one
train-or-load flow (core; every lesson that loads a model).

A model on disk is a ``.npz`` file (float32 parameters and JSON metadata, no pickle, written
atomically) named by :func:`entry_name`, a hash of its configuration, training images and
library version. :func:`obtain` follows a :class:`Recipe` (what :func:`vae_lite.training.train`
and :func:`vae_lite.classifier.train_classifier` build): the user's model cache first, then
the models that ship with vae-lite (``vae_lite/_models``, rebuilt by ``make models``, see
:mod:`vae_lite.zoo`), and only then training, which ``VAE_LITE_TRAINING=forbid`` turns into
an error.
"""

import dataclasses
import hashlib
import importlib.resources
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vae_lite import __version__, _args
from vae_lite._runtime import CACHE_ENV, atomic_write_bytes, cache_dir

TRAINING_ENV = "VAE_LITE_TRAINING"
TRAINING_MODES = {
    "allow": "train what is neither in the model cache nor shipped (the default)",
    "forbid": "raise TrainingForbiddenError instead of training (a run that must only load models)",
}


PARAMETER_LIMIT = 1e6  # |parameter| a trained model never reaches (the shipped models' largest is 2.3)


class CheckpointMismatchError(ValueError):
    """A saved checkpoint does not fit the model it is loaded into, or cannot be read."""


class ModelCacheWarning(UserWarning):
    """A cached or shipped model could not be read, or the cache not written; training still returns its model."""


class TrainingForbiddenError(RuntimeError):
    """A model would have been trained while ``VAE_LITE_TRAINING=forbid``."""


def _flat_params(model):
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _unusable(params):
    """Names of the arrays in ``{name: array}`` holding NaN, infinity or values beyond :data:`PARAMETER_LIMIT`.

    Adam moves a parameter by about the learning rate per step, so a trained network's weights
    stay of order 1; 1e30 is a diverged run or a damaged file, and its forward pass overflows
    float32 (an ELBO of NaN).
    """
    return [name for name, value in params.items()
            if not np.all(np.isfinite(value)) or np.max(np.abs(value), initial=0.0) > PARAMETER_LIMIT]


def params_checksum(params):
    """SHA-256 of named parameter arrays ``{name: array}``: names, shapes, dtypes and bytes, in name order.

    :func:`save_model` stores it in the metadata as ``params_sha256``; :func:`load_model`
    refuses a file whose parameters no longer match it (altered or damaged).
    """
    digest = hashlib.sha256()
    for name in sorted(params):
        value = np.ascontiguousarray(params[name])
        digest.update(json.dumps([name, value.shape, str(value.dtype)]).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_model(path, model, metadata=None):
    """Save a model's parameters (and JSON metadata) to ``path`` as ``.npz``, atomically.

    The metadata gains ``params_sha256``, the :func:`params_checksum` of the saved parameters.
    Raises ``ValueError`` (and writes nothing) when a parameter is NaN, infinite or beyond
    :data:`PARAMETER_LIMIT` in magnitude: such a model cannot be evaluated, so it is not kept.
    """
    params = _flat_params(model)
    bad = _unusable(params)
    _args.none_of(f"Refusing to save a model with NaN, infinite or huge (|value| > {PARAMETER_LIMIT:g}) parameters",
                  bad, "Its outputs are not finite numbers: the training diverged; train it again with a smaller "
                  "learning rate.")
    arrays = {f"param:{k}": v for k, v in params.items()}
    arrays["metadata"] = np.array(json.dumps({**(metadata or {}), "params_sha256": params_checksum(params)}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path, model):
    """Load parameters saved by :func:`save_model` into ``model``; returns the metadata.

    ``model`` may be abstract (``nnx.eval_shape(build)``: shapes without values), which skips
    initialising weights that are about to be replaced.

    Raises ``CheckpointMismatchError`` when the file cannot be read, when its metadata is
    not a JSON object, when its parameters' names, shapes or dtypes differ from the
    model's, when they are NaN, infinite or beyond :data:`PARAMETER_LIMIT`, or when they do
    not match the checksum stored with them.
    """
    try:
        with open(path, "rb") as fh:
            archive = np.load(fh, allow_pickle=False)
            if isinstance(archive, np.lib.npyio.NpzFile):
                with archive:
                    saved = {k[len("param:") :]: archive[k] for k in archive.files if k.startswith("param:")}
                    metadata = json.loads(str(archive["metadata"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointMismatchError(f"{path} is not a readable vae-lite checkpoint ({err}).") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):  # e.g. np.save of one array under the entry's name
        raise CheckpointMismatchError(
            f"{path} is not a readable vae-lite checkpoint: it holds one array of shape "
            f"{np.shape(archive)}, not the .npz archive save_model writes."
        )
    if not isinstance(metadata, dict):
        raise CheckpointMismatchError(f"{path} has malformed metadata: a JSON object was expected.")
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    expected = {jax.tree_util.keystr(path): (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in leaves}
    found = {k: (tuple(v.shape), str(v.dtype)) for k, v in saved.items()}
    if found != expected:
        diff = sorted(set(found.items()) ^ set(expected.items()))[:4]
        raise CheckpointMismatchError(
            f"{path} does not match the model: parameter names/shapes/dtypes differ, e.g. {diff}. "
            "It was saved from a different architecture; retrain or build the matching model."
        )
    bad = _unusable(saved)
    if bad:
        raise CheckpointMismatchError(
            f"{path} holds NaN, infinite or huge (|value| > {PARAMETER_LIMIT:g}) parameters ({', '.join(bad[:3])}): "
            "a model that cannot be evaluated."
        )
    if "params_sha256" in metadata and metadata["params_sha256"] != params_checksum(saved):
        raise CheckpointMismatchError(
            f"{path}: its parameters do not match the checksum saved with them (the file was altered or damaged)."
        )
    graphdef, params = nnx.split(model, nnx.Param)
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    leaves = [jnp.asarray(saved[jax.tree_util.keystr(p)]) for p, _ in paths]
    nnx.update(model, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves))
    return metadata


def entry_name(stem, config, data):
    """``<stem>-<hash>.npz``, the file name of a trained model in the model cache and in the shipped models.

    The hash covers the configuration dataclass ``config``, the training images of ``data``
    and this library version, so a file is used only for exactly the configuration, data and
    version it was trained with (shared with :mod:`vae_lite.classifier`).
    """
    fingerprint = hashlib.sha256(np.ascontiguousarray(data.x_train[::7]).tobytes()).hexdigest()[:16]
    ident = json.dumps([dataclasses.asdict(config), data.x_train.shape, fingerprint, __version__])
    return f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.npz"


def cache_file(recipe):
    """The user's model cache's file for a :class:`Recipe`: ``<cache folder>/models/<entry>``."""
    return cache_dir() / "models" / recipe.entry


def shipped_dir():
    """The folder inside the installed package that holds the trained models shipped with vae-lite."""
    return Path(str(importlib.resources.files("vae_lite") / "_models"))


def save_to_cache(path, model, metadata, what="model"):
    """:func:`save_model` into the model cache; where it cannot be written, warn and go on.

    A read-only shared folder, a full disk or a file where the folder should be costs only
    the caching: the caller still returns what it trained.
    """
    try:
        save_model(path, model, metadata)
    except OSError as err:
        warnings.warn(
            f"Could not write the model cache in {path.parent} ({err.strerror or err}); the trained {what} is "
            f"returned but not cached, so the next run trains it again. Set {CACHE_ENV} to a writable "
            f"folder to keep trained {what}s.",
            ModelCacheWarning,
            stacklevel=4,
        )


def training_mode():
    """``"allow"`` or ``"forbid"``: the value of ``$VAE_LITE_TRAINING`` (unset or empty: ``"allow"``).

    Raises ``ValueError`` listing the valid values for anything else.
    """
    mode = os.environ.get(TRAINING_ENV) or "allow"
    meanings = "; ".join(f"{name!r}: {meaning}" for name, meaning in TRAINING_MODES.items())
    _args.one_of(TRAINING_ENV, mode, list(TRAINING_MODES), f"({meanings}.) Unset it to allow training.")
    return mode


class Recipe(NamedTuple):
    """How to obtain one trained model; :func:`obtain` follows it.

    Attributes:
        what: ``"model"`` or ``"classifier"``, for messages.
        entry: the file name (:func:`entry_name`), the same in the model cache and the shipped models.
        config: the configuration dataclass.
        call: the function a user calls for it, e.g. ``"training.train"`` (messages say how to retrain).
        build: ``() -> nnx.Module``, a freshly initialised model.
        fit: ``(model, progress) -> history``: trains the model in place; the history maps names
            to per-epoch lists of numbers and holds ``seconds``.
    """

    what: str
    entry: str
    config: object
    call: str
    build: Callable
    fit: Callable


def training_metadata(config, history):
    """The JSON metadata saved with a model trained for ``config``: the configuration, the history,
    the vae-lite, JAX, Flax, Optax and NumPy versions and the machine it trained on."""
    import flax

    return {
        "config": dataclasses.asdict(config),
        "history": history,
        "version": __version__,
        "versions": {"jax": jax.__version__, "jaxlib": jax.lib.__version__, "flax": flax.__version__,
                     "optax": optax.__version__, "numpy": np.__version__},
        "machine": {"cpu_cores": os.cpu_count(), "backend": jax.default_backend()},
    }


def _check_metadata(path, metadata, config):
    """``CheckpointMismatchError`` unless ``metadata`` holds a valid history and exactly ``config``."""
    history = metadata.get("history")
    if not isinstance(history, dict) or "seconds" not in history or not all(
        isinstance(v, list) and all(isinstance(e, int | float) for e in v) for v in history.values()
    ):
        raise CheckpointMismatchError(f"{path}: its metadata has no valid training history")
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    if metadata.get("config") != wanted or metadata.get("version") != __version__:
        raise CheckpointMismatchError(
            f"{path}: its metadata describes another configuration or vae-lite version "
            f"({metadata.get('config')}, version {metadata.get('version')}; wanted {wanted}, version {__version__})"
        )


def _loaded_line(recipe, source, metadata):
    """The one line :func:`obtain` prints when it loads rather than trains."""
    stem = recipe.entry.rsplit("-", 1)[0]
    again = f"{recipe.call}(..., retrain=True)"
    if source == "cache":
        return f"Loaded {stem} from your model cache; {again} trains it again."
    history, machine = metadata["history"], metadata.get("machine", {})
    seconds = sum(history.get("seconds", []))
    cores = f" with {machine['cpu_cores']} CPU cores" if machine.get("cpu_cores") else ""
    return (f"Loaded {stem}, the {recipe.what} that ships with vae-lite ({len(history['seconds'])} epochs, "
            f"{seconds:.0f} s of training{cores}); {again} trains it here.")


def obtain(recipe, *, retrain=False, progress=True):
    """The one train-or-load flow: ``(model, metadata, source)`` for a :class:`Recipe`.

    Looks in the user's model cache, then among the models shipped with vae-lite, for the
    recipe's file; a file that cannot be read, was altered, or describes another
    configuration is skipped with a ``ModelCacheWarning`` naming it. Otherwise (or with
    ``retrain``) it trains, unless ``VAE_LITE_TRAINING=forbid`` (then ``TrainingForbiddenError``),
    and saves the model into the user's cache; nothing is ever written among the shipped
    models. With ``progress`` a loaded model is announced in one line, a training shows a bar.
    """
    mode = training_mode()
    places = () if retrain else (("cache", cache_file(recipe)), ("shipped", shipped_dir() / recipe.entry))
    for source, path in places:
        if not path.is_file():
            continue
        model = nnx.eval_shape(recipe.build)  # shapes only: loading fills in every parameter
        try:
            metadata = load_model(path, model)
            _check_metadata(path, metadata, recipe.config)
        except CheckpointMismatchError as err:
            what = (f"the shipped {recipe.what}, training instead" if source == "shipped" else
                    f"an unreadable {recipe.what} cache entry, trying the shipped models, then training")
            warnings.warn(f"Ignoring {what}: {err}", ModelCacheWarning, stacklevel=3)
            continue
        if progress:
            print(_loaded_line(recipe, source, metadata))
        return model, metadata, source
    if mode == "forbid":
        raise TrainingForbiddenError(
            f"{TRAINING_ENV}=forbid, but {recipe.call} would train the {recipe.what} {recipe.entry} "
            f"({'retrain=True' if retrain else 'neither in the model cache nor shipped'}; configuration "
            f"{recipe.config}). Unset {TRAINING_ENV} to train it."
        )
    model = recipe.build()
    metadata = training_metadata(recipe.config, recipe.fit(model, progress))
    save_to_cache(cache_file(recipe), model, metadata, recipe.what)
    return model, metadata, "trained"
