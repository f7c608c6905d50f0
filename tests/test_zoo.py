"""The shipped models: complete, intact, found in the right order, and reproducible.

The lookup tests ship a small digits model of their own (a temporary "package" folder),
so they run in seconds; the files that really ship are checked against their index and
the lessons' configurations, and the cheapest one is retrained and compared (slow).
"""

import dataclasses
import hashlib
import json

import jax
import numpy as np
import pytest
from flax import nnx

from vae_lite import __version__, checkpoints, classifier, data, training, zoo

SMALL = training.TrainConfig(dataset="digits", hidden=(32,), latent_dim=2, epochs=3, batch_size=64)
ZOO_LIMIT_BYTES = 40e6

pytestmark = pytest.mark.usefixtures("private_cache")


def _params(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


@pytest.fixture
def shipped(monkeypatch, tmp_path, digits):
    """A temporary shipped-models folder holding SMALL trained on the digits; returns its file."""
    folder = tmp_path / "package-models"
    folder.mkdir()
    monkeypatch.setattr(checkpoints, "shipped_dir", lambda: folder)
    recipe = training.train_recipe(SMALL, digits)
    model = recipe.build()
    checkpoints.save_model(folder / recipe.entry, model, checkpoints.training_metadata(SMALL, recipe.fit(model, False)))
    return folder / recipe.entry


def _no_training(*args, **kwargs):
    raise AssertionError("a shipped model must be loaded, not trained")


# --- the lookup order ---------------------------------------------------------------------------

def test_a_shipped_model_is_loaded_without_training_and_said_so(shipped, digits, monkeypatch, capsys):
    expected = training.build_model(SMALL, 64)
    checkpoints.load_model(shipped, expected)
    with monkeypatch.context() as patch:
        patch.setattr(training, "fit", _no_training)
        patch.setenv(checkpoints.TRAINING_ENV, "forbid")
        result = training.train(SMALL, digits)
    assert result.source == "shipped" and len(result.history["test_elbo"]) == SMALL.epochs
    for p, q in zip(_params(result.model), _params(expected), strict=True):
        np.testing.assert_array_equal(p, q)
    line = capsys.readouterr().out.strip()
    assert line.startswith("Loaded vae-digits-z2-e3, the model that ships with vae-lite (3 epochs")
    assert "training.train(..., retrain=True) trains it here" in line and "\n" not in line


def test_the_users_cache_comes_before_the_shipped_model(shipped, digits, monkeypatch):
    retrained = training.train(SMALL, digits, retrain=True, progress=False)  # into the user's cache
    assert retrained.source == "trained"
    with monkeypatch.context() as patch:
        patch.setattr(training, "fit", _no_training)
        again = training.train(SMALL, digits, progress=False)
    assert again.source == "cache"
    # another configuration is neither cached nor shipped: it trains
    assert training.train(SMALL, digits, progress=False, seed=1).source == "trained"


@pytest.mark.parametrize("damage", ["altered", "truncated", "other version", "other config"])
def test_a_damaged_shipped_model_is_named_then_trained_as_if_absent(shipped, digits, damage):
    raw = shipped.read_bytes()
    if damage == "altered":  # one parameter changed: the file still reads, its checksum does not match
        with np.load(shipped, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        name = next(k for k in arrays if k.startswith("param:"))
        arrays[name] = arrays[name] + np.float32(1e-3)
        with open(shipped, "wb") as fh:
            np.savez(fh, **arrays)
        reason = "do not match the checksum"
    elif damage == "truncated":
        shipped.write_bytes(raw[: len(raw) // 2])
        reason = "not a readable"
    else:
        with np.load(shipped, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        metadata = json.loads(str(arrays["metadata"]))
        if damage == "other version":
            metadata["version"] = "0.0.1"
        else:
            metadata["config"]["beta"] = 0.5
        arrays["metadata"] = np.array(json.dumps(metadata))
        with open(shipped, "wb") as fh:
            np.savez(fh, **arrays)
        reason = "another configuration or vae-lite version"
    with pytest.warns(checkpoints.ModelCacheWarning, match=f"the shipped model.*{shipped.name}.*{reason}"):
        result = training.train(SMALL, digits, progress=False)
    assert result.source == "trained"


def test_nothing_is_written_among_the_shipped_models(shipped, digits):
    folder = shipped.parent
    folder.chmod(0o555)  # a read-only install location
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
        assert training.train(SMALL, digits, progress=False, retrain=True).source == "trained"
        assert training.train(SMALL, digits, progress=False, epochs=2).source == "trained"
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    finally:
        folder.chmod(0o755)


# --- VAE_LITE_TRAINING ---------------------------------------------------------------------------

def test_forbid_raises_instead_of_training_and_names_the_model(digits, monkeypatch):
    monkeypatch.setenv(checkpoints.TRAINING_ENV, "forbid")
    with pytest.raises(checkpoints.TrainingForbiddenError, match=r"VAE_LITE_TRAINING=forbid.*vae-digits-z2-e3-.*Unset"):
        training.train(SMALL, digits, progress=False)
    with pytest.raises(checkpoints.TrainingForbiddenError, match="classifier-digits-e2"):
        classifier.train_classifier(data=digits, epochs=2, progress=False)
    monkeypatch.delenv(checkpoints.TRAINING_ENV)
    training.train(SMALL, digits, progress=False)
    monkeypatch.setenv(checkpoints.TRAINING_ENV, "forbid")
    assert training.train(SMALL, digits, progress=False).source == "cache"  # loading is allowed
    with pytest.raises(checkpoints.TrainingForbiddenError, match="retrain=True"):
        training.train(SMALL, digits, progress=False, retrain=True)


@pytest.mark.parametrize("value", ["no", "Forbid", "1"])
def test_an_unknown_training_mode_lists_the_valid_values(digits, monkeypatch, value):
    monkeypatch.setenv(checkpoints.TRAINING_ENV, value)
    with pytest.raises(ValueError, match=rf"VAE_LITE_TRAINING='{value}' is not a valid value.*'allow'.*'forbid'"):
        training.train(SMALL, digits, progress=False)


def test_the_classifier_loads_from_the_shipped_models_too(digits, monkeypatch, tmp_path):
    folder = tmp_path / "package-models"
    folder.mkdir()
    monkeypatch.setattr(checkpoints, "shipped_dir", lambda: folder)
    config = classifier.ClassifierConfig(dataset="digits", epochs=3)
    recipe = classifier.classifier_recipe(config, digits)
    model = recipe.build()
    checkpoints.save_model(folder / recipe.entry, model, checkpoints.training_metadata(config, recipe.fit(model, False)))
    monkeypatch.setenv(checkpoints.TRAINING_ENV, "forbid")
    result = classifier.train_classifier(config, digits, progress=False)
    assert result.source == "shipped" and result.test_accuracy == classifier.accuracy(model, digits.x_test[:],
                                                                                       digits.y_test)


# --- the files that ship ------------------------------------------------------------------------

def test_every_lesson_configuration_ships():
    """A new library version or configuration without ``make models`` fails here, not in a slow lesson."""
    files = {p.name for p in checkpoints.shipped_dir().glob("*.npz")}
    wanted = {recipe.entry for recipe in zoo.recipes()}
    assert wanted == files, (
        f"missing: {sorted(wanted - files)}, not used: {sorted(files - wanted)}; run `make models` and commit "
        "vae_lite/_models"
    )


def test_shipped_files_match_their_index_and_load_intact():
    index = zoo.read_index()
    folder = checkpoints.shipped_dir()
    assert set(index) == {p.name for p in folder.glob("*.npz")}
    total = 0
    for recipe in zoo.recipes():
        entry = index[recipe.entry]
        path = folder / recipe.entry
        assert path.stat().st_size == entry["bytes"] and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path.name
        metadata = checkpoints.load_model(path, recipe.build())  # checks the parameters' checksum
        assert metadata["version"] == __version__ and "params_sha256" in metadata
        assert metadata["config"] == json.loads(json.dumps(dataclasses.asdict(recipe.config))) == entry["config"]
        assert set(metadata["versions"]) == {"jax", "jaxlib", "flax", "optax", "numpy"}
        history = metadata["history"]
        epochs = recipe.config.epochs
        assert len(history["seconds"]) == epochs
        if recipe.what == "model":
            assert len(history["test_elbo"]) == len(history["train_elbo"]) == epochs
        with np.load(path, allow_pickle=False) as f:
            assert all(f[k].dtype == np.float32 for k in f.files if k.startswith("param:"))
        total += entry["bytes"]
    assert total <= ZOO_LIMIT_BYTES, f"the shipped models take {total / 1e6:.1f} MB, over {ZOO_LIMIT_BYTES / 1e6} MB"


@pytest.mark.slow
@pytest.mark.parametrize("what", ["classifier", "model"])
def test_the_cheapest_shipped_model_is_reproduced_by_retraining(what):
    """Retrain the cheapest shipped MNIST model of each kind from its configuration (the classifier,
    3 s; a 5-epoch VAE of the beta sweep, 8 s: fewest parameter updates x parameters) and compare it
    with the shipped file.

    Tolerance: every parameter within 1e-4 of the largest parameter's magnitude, and the recorded
    curves (test ELBO, or cross-entropy) within 0.05 nats. On a machine like the one that ran
    ``make models`` (same CPU family, the pinned JAX) XLA's CPU programs are deterministic and the
    retrained parameters are bit-for-bit the shipped ones; a CPU with other vector units may get
    other kernels, whose float32 rounding differs in the last bits and grows a little over the
    epochs of Adam. The test's output says which it was.
    """
    mnist = data.load("mnist")
    candidates = [r for r in zoo.recipes(mnist) if r.what == what]
    recipe = min(candidates, key=lambda r: r.config.epochs * sum(p.size for p in _params(r.build())))
    shipped = recipe.build()
    shipped_metadata = checkpoints.load_model(checkpoints.shipped_dir() / recipe.entry, shipped)
    retrained = recipe.build()
    history = recipe.fit(retrained, False)
    identical = all(np.array_equal(p, q) for p, q in zip(_params(retrained), _params(shipped), strict=True))
    print(f"{recipe.entry}: retrained {'bit-for-bit identical' if identical else 'within tolerance'}")
    scale = max(float(np.abs(p).max()) for p in _params(shipped))
    for p, q in zip(_params(retrained), _params(shipped), strict=True):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-4 * scale)
    curve = "test_elbo" if what == "model" else "loss"
    np.testing.assert_allclose(history[curve], shipped_metadata["history"][curve], rtol=0, atol=0.05)


@pytest.mark.slow
def test_make_models_writes_the_folder_and_its_index(monkeypatch, tmp_path, digits):
    """``rebuild`` on a reduced zoo (two small digits models): files named like cache entries, the
    index's sizes and checksums, stale files removed, and the result loads as the shipped models."""
    configs = ((SMALL, "t"), (classifier.ClassifierConfig(dataset="digits", epochs=2), "t"))
    monkeypatch.setattr(zoo, "LESSON_MODELS", configs)
    monkeypatch.setattr(zoo, "load", lambda name: digits)
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "vae-mnist-z20-e10-0000000000000000.npz").write_bytes(b"old")
    index = zoo.rebuild(folder, progress=False)
    names = {r.entry for r in zoo.recipes(digits)}
    assert set(index) == names == {p.name for p in folder.glob("*.npz")}
    assert zoo.read_index(folder) == index
    for name in names:
        assert index[name]["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    monkeypatch.setattr(checkpoints, "shipped_dir", lambda: folder)
    monkeypatch.setenv(checkpoints.TRAINING_ENV, "forbid")
    assert training.train(SMALL, digits, progress=False).source == "shipped"
