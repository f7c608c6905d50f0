"""The trained models that ship with vae-lite, and the command that rebuilds them (core; lessons 2-8).

Every MNIST model a lesson loads is trained once, here, from the lessons' own
configurations (:data:`LESSON_MODELS`), and shipped as package data in
``vae_lite/_models/``: one ``.npz`` per model (float32 parameters and JSON metadata:
configuration, training history, versions, the parameters' checksum; no pickle), named
exactly like its entry in the user's model cache, and ``zoo.json``, an index with each
file's size and SHA-256. :func:`vae_lite.checkpoints.obtain` looks there after the user's
cache, so a lesson opens in seconds and shows the numbers its prose quotes.

Rebuild (retrain every model and rewrite the folder)::

    make models        # = python -m vae_lite.zoo --out vae_lite/_models

A model trains from its configuration's seed alone, so the rebuild reproduces the files:
``tests/test_zoo.py`` retrains the cheapest one and compares.
"""

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from vae_lite import __version__
from vae_lite._runtime import atomic_write_bytes
from vae_lite.checkpoints import save_model, shipped_dir, training_metadata
from vae_lite.classifier import ClassifierConfig, classifier_recipe
from vae_lite.data import load
from vae_lite.training import TrainConfig, train_recipe

INDEX = "zoo.json"

# The configurations the lessons call, with the lessons that load them.
LESSON_MODELS = (
    (TrainConfig(latent_dim=2), "3, 4, 8"),
    (TrainConfig(model="ae", latent_dim=2), "8"),
    (TrainConfig(latent_dim=10), "2"),
    (TrainConfig(model="ae", latent_dim=10), "2"),
    (TrainConfig(), "2, 6, 7, 8"),
    (TrainConfig(model="ae"), "2, 6, 8"),
    *((TrainConfig(beta=beta, epochs=5), "6 (the beta sweep)") for beta in (0.0, 0.1, 1.0, 4.0)),
    (ClassifierConfig(), "2, 6 (the judge of generated digits)"),
)


def recipes(data=None):
    """The :class:`~vae_lite.checkpoints.Recipe` of every shipped model, on ``data`` (default: MNIST)."""
    data = load("mnist") if data is None else data
    return [
        (classifier_recipe if isinstance(config, ClassifierConfig) else train_recipe)(
            dataclasses.replace(config, dataset=data.name), data)
        for config, _ in LESSON_MODELS
    ]


def file_sha256(path):
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_index(folder=None):
    """The shipped models' index ``{file name: {...}}`` from ``zoo.json`` in ``folder`` (default: the package's)."""
    folder = shipped_dir() if folder is None else Path(folder)
    return json.loads((folder / INDEX).read_text())["models"]


def rebuild(folder, *, progress=True):
    """Retrain every model of :data:`LESSON_MODELS` on MNIST into ``folder``; rewrite its index.

    Files of earlier configurations or versions are removed. Returns the index.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for recipe, (_, lessons) in zip(recipes(), LESSON_MODELS, strict=True):
        start = time.perf_counter()
        model = recipe.build()
        metadata = training_metadata(recipe.config, recipe.fit(model, progress))
        path = folder / recipe.entry
        save_model(path, model, metadata)
        index[recipe.entry] = {
            "what": recipe.what,
            "lessons": lessons,
            "config": json.loads(json.dumps(metadata["config"])),  # as JSON has it (lists, not tuples)
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "training_seconds": round(sum(metadata["history"]["seconds"]), 1),
        }
        if progress:
            print(f"{recipe.entry}: {index[recipe.entry]['bytes'] / 1e6:.2f} MB, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    for stale in set(p.name for p in folder.glob("*.npz")) - set(index):
        (folder / stale).unlink()
    total = sum(entry["bytes"] for entry in index.values())
    document = {"version": __version__, "total_bytes": total, "models": index}
    atomic_write_bytes(folder / INDEX, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode())
    return index


def main(argv=None):
    parser = argparse.ArgumentParser(description="Retrain every shipped model from the lessons' configurations.")
    parser.add_argument("--out", required=True, help="the folder to write (the checkout's vae_lite/_models)")
    args = parser.parse_args(argv)
    index = rebuild(args.out)
    print(f"{len(index)} models, {sum(e['bytes'] for e in index.values()) / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
