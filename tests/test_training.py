"""Trainer and model cache on the small digits set (seconds, not minutes)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_lite import checkpoints, data, training

SMALL = training.TrainConfig(dataset="digits", hidden=(32,), latent_dim=2, epochs=3, batch_size=64)


pytestmark = pytest.mark.usefixtures("private_cache")  # every test trains into its own empty cache


def _params(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


def test_vae_terms_match_a_direct_computation():
    model = training.build_model(SMALL, 64)
    x = data.binarize_fixed(data.load("digits").x_test[:5])
    key = jax.random.key(0)
    recon, kl = training.vae_terms(key, model, x)
    mu, log_var = model.encoder(x)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
    p = jax.nn.sigmoid(model.decoder(z))
    manual_recon = jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p), axis=-1)
    manual_kl = -0.5 * jnp.sum(1 + log_var - mu**2 - jnp.exp(log_var), axis=-1)
    np.testing.assert_allclose(recon, manual_recon, rtol=1e-4)
    np.testing.assert_allclose(kl, manual_kl, rtol=1e-4)
    assert recon.shape == kl.shape == (5,)


def test_training_improves_elbo_and_is_deterministic(digits):
    a = training.train(SMALL, digits, progress=False)
    b = training.train(SMALL, digits, progress=False, retrain=True)
    h = a.history
    assert set(h) == {"elbo", "recon", "kl", "seconds", "train_elbo", "test_elbo"} and len(h["elbo"]) == 3
    assert len(h["train_elbo"]) == len(h["test_elbo"]) == 3 and h["test_elbo"][-1] > h["test_elbo"][0]
    assert h["elbo"][-1] > h["elbo"][0]
    np.testing.assert_allclose(h["elbo"], np.array(h["recon"]) - np.array(h["kl"]), rtol=1e-6)
    for p, q in zip(_params(a.model), _params(b.model), strict=True):
        np.testing.assert_array_equal(p, q)
    # The trained model's test ELBO beats the untrained one's.
    x = data.binarize_fixed(digits.x_test)
    fresh = training.evaluate(jax.random.key(0), training.build_model(SMALL, 64), x).elbo
    assert training.evaluate(jax.random.key(0), a.model, x).elbo > fresh + 5


def test_recorded_test_elbo_is_the_final_models_elbo_on_test_images(digits):
    """The last ``test_elbo`` agrees, within 4 standard errors, with an independent estimate:
    the returned model on the same first MONITOR_IMAGES test images, binarised and sampled
    with other keys (so only the Monte Carlo noise differs)."""
    result = training.train(SMALL, digits, progress=False)
    images = digits.x_test[: training.MONITOR_IMAGES]
    xb = jax.random.bernoulli(jax.random.key(123), jnp.asarray(images)).astype(jnp.float32)
    recon, kl = training.vae_terms(jax.random.key(456), result.model, xb)
    per_image = np.asarray(recon - kl, dtype=float)
    se = per_image.std(ddof=1) / np.sqrt(len(per_image))
    assert abs(result.history["test_elbo"][-1] - per_image.mean()) < 4 * np.sqrt(2) * se
    # the training images' curve is measured the same way: the model fits them better than unseen ones
    assert result.history["train_elbo"][-1] > result.history["test_elbo"][-1] - 4 * np.sqrt(2) * se


def test_cache_hit_returns_same_parameters_without_training(digits, monkeypatch):
    first = training.train(SMALL, digits, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train")

    with monkeypatch.context() as patch:
        patch.setattr(training, "fit", no_training)
        again = training.train(SMALL, digits, progress=False)
    assert again.source == "cache" and first.source == "trained"
    assert again.history["elbo"] == first.history["elbo"]
    for p, q in zip(_params(first.model), _params(again.model), strict=True):
        np.testing.assert_array_equal(p, q)
    changed = training.train(dataclasses.replace(SMALL, beta=0.5), digits, progress=False)
    assert changed.source == "trained"
    assert training.train(SMALL, digits, progress=False, retrain=True).source == "trained"


def test_autoencoder_trains(digits):
    result = training.train(SMALL, digits, progress=False, model="ae")
    assert result.history["kl"] == [0.0] * 3
    assert result.history["recon"][-1] > result.history["recon"][0]


def test_nan_loss_stops_with_epoch_and_hint(digits):
    with pytest.raises(training.TrainingDivergedError, match="epoch 1.*learning_rate"):
        training.train(SMALL, digits, progress=False, learning_rate=1e30)


def test_bad_training_data_rejected(digits):
    bad = dataclasses.replace(digits, x_train=digits.x_train[:] * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        training.train(SMALL, bad, progress=False)
    with pytest.raises(ValueError, match="model"):
        training.TrainConfig(model="gan")


@pytest.mark.parametrize("call", [
    lambda model, none: training.fit(model, SMALL, none, progress=False),
    lambda model, none: training.fit(model, SMALL, data.Images(np.zeros((0, 64), np.uint8), 16), progress=False),
    lambda model, none: training.fit(model, SMALL, data.load("digits").x_train, held_out=none, progress=False),
    lambda model, none: training.evaluate(jax.random.key(0), model, none),
    lambda model, none: training.held_out_elbo(model, none),
], ids=["fit", "fit-images", "fit-held-out", "evaluate", "held_out_elbo"])
def test_zero_images_are_refused_with_the_shape(call):
    model = training.build_model(SMALL, 64)
    with pytest.raises(ValueError, match=r"must be \(num_images, pixels\) with at least one image, got shape \(0, 64\)"):
        call(model, np.zeros((0, 64), np.float32))


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "m.npz"
    checkpoints.save_model(path, training.build_model(SMALL, 64))
    other = training.build_model(dataclasses.replace(SMALL, hidden=(16,)), 64)
    with pytest.raises(checkpoints.CheckpointMismatchError, match="different architecture"):
        checkpoints.load_model(path, other)
    path.write_bytes(b"garbage")
    with pytest.raises(checkpoints.CheckpointMismatchError, match="not a readable"):
        checkpoints.load_model(path, other)


_WRITER = """
import sys
from vae_lite import checkpoints, training
cfg = training.TrainConfig(dataset="digits", hidden=(512, 512), latent_dim=2)
model = training.build_model(cfg, 784)
checkpoints.save_model(sys.argv[1], model, {"n": 0})
print("saved", flush=True)
n = 1
while True:
    checkpoints.save_model(sys.argv[1], model, {"n": n})
    n += 1
"""


def test_killed_save_leaves_a_complete_entry(tmp_path):
    """A writer killed in the middle of saving (3 MB per save) leaves the last complete file."""
    path = tmp_path / "model.npz"
    cfg = training.TrainConfig(dataset="digits", hidden=(512, 512), latent_dim=2)
    for delay in (0.0, 0.05, 0.3):
        path.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"saved"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        # One save finished before the kill, so a complete, loadable model must be there.
        metadata = checkpoints.load_model(path, training.build_model(cfg, 784))
        assert set(metadata) == {"n", "params_sha256"} and metadata["n"] >= 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
    # A killed writer may leave its own temporary file, but never under the model's name.
    assert all(name.endswith(".tmp") for name in leftovers)


def test_unreadable_cache_entry_is_retrained(digits):
    first = training.train(SMALL, digits, progress=False)
    path = training.cache_path(first.config, digits)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(checkpoints.ModelCacheWarning, match="not a readable vae-lite checkpoint"):
        again = training.train(SMALL, digits, progress=False)
    assert again.source == "trained"


def test_training_on_uint8_levels_equals_training_on_their_intensities(digits):
    from_levels = training.fit(training.build_model(SMALL, 64), SMALL, digits.x_train, progress=False)
    model = training.build_model(SMALL, 64)
    from_floats = training.fit(model, SMALL, np.asarray(digits.x_train), progress=False)
    np.testing.assert_allclose(from_levels["elbo"], from_floats["elbo"], rtol=1e-6)


def _entry(digits):
    """Train SMALL once into the (private) cache; return its cache file."""
    result = training.train(SMALL, digits, progress=False)
    return training.cache_path(result.config, digits)


def _rewrite_entry(path, change):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _without_seconds(metadata):
    """The metadata with everything but the history's ``seconds`` (which a loaded model's line reports)."""
    metadata = json.loads(str(metadata))
    del metadata["history"]["seconds"]
    return np.array(json.dumps(metadata))


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda a: a.__setitem__("metadata", np.array("[1, 2]")), "malformed metadata"),
        (lambda a: a.__setitem__("metadata", np.array('{"history": 3}')), "no valid training history"),
        (lambda a: a.__setitem__("metadata", _without_seconds(a["metadata"])), "no valid training history"),
        (lambda a: a.__setitem__("metadata", np.array("{not json")), "not a readable"),
        (lambda a: a.__setitem__(next(k for k in a if k.startswith("param:")),
                                 np.full_like(a[next(k for k in a if k.startswith("param:"))], np.nan)), "NaN"),
        (lambda a: a.update({k: v.astype(np.float64) for k, v in a.items() if k.startswith("param:")}), "dtypes"),
    ],
    ids=["metadata-not-object", "history-malformed", "history-without-seconds", "metadata-not-json", "nan-params",
         "float64-params"],
)
def test_malformed_cache_entry_is_retrained_with_a_warning(digits, change, reason):
    path = _entry(digits)
    _rewrite_entry(path, change)
    with pytest.warns(checkpoints.ModelCacheWarning, match=reason):
        again = training.train(SMALL, digits, progress=False)
    assert again.source == "trained" and np.isfinite(again.history["elbo"]).all()
    assert training.train(SMALL, digits, progress=False).source == "cache"  # rewritten, readable again


@pytest.mark.parametrize("blocker", ["read-only folder", "file where the folder should be"])
def test_unwritable_cache_still_returns_the_trained_model(digits, monkeypatch, tmp_path, blocker):
    if blocker == "read-only folder" and os.geteuid() != 0:
        root = tmp_path / "shared-cache"
        (root / "models").mkdir(parents=True)
        (root / "models").chmod(0o555)
    elif blocker == "read-only folder":  # root may write anywhere on a normal file system, not in sysfs
        root = Path("/sys/vae-lite-cache")
    else:
        root = tmp_path / "cache-file"
        (root).mkdir()
        (root / "models").write_text("not a folder")
    monkeypatch.setenv("VAE_LITE_CACHE", str(root))
    with pytest.warns(checkpoints.ModelCacheWarning, match=f"Could not write the model cache in {root / 'models'}"):
        result = training.train(SMALL, digits, progress=False)
    assert result.source == "trained" and len(result.history["elbo"]) == SMALL.epochs
    x = data.binarize_fixed(digits.x_test)
    fresh = training.evaluate(jax.random.key(0), training.build_model(SMALL, 64), x).elbo
    assert training.evaluate(jax.random.key(0), result.model, x).elbo > fresh + 5  # trained, not fresh


def test_full_disk_still_returns_the_trained_model(digits, monkeypatch):
    def no_space(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", no_space)
    with pytest.warns(checkpoints.ModelCacheWarning, match="No space left on device"):
        result = training.train(SMALL, digits, progress=False)
    assert result.source == "trained" and len(result.history["elbo"]) == SMALL.epochs


def test_nothing_is_written_into_the_package(digits, monkeypatch, tmp_path):
    package = Path(training.__file__).parent
    before = sorted((str(p), p.stat().st_mtime_ns) for p in package.rglob("*") if "__pycache__" not in p.parts)
    monkeypatch.delenv("VAE_LITE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    data.load("mnist")
    training.train(SMALL, digits, progress=False)
    after = sorted((str(p), p.stat().st_mtime_ns) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert before == after
    assert list((tmp_path / ".cache" / "vae-lite" / "models").glob("*.npz"))  # the user's cache instead


def test_seconds_per_point_takes_the_best_of_the_timed_runs_after_a_warm_up(monkeypatch):
    from vae_lite import training as T

    calls, clock = [], iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0])  # runs of 5, 2 and 3 seconds
    monkeypatch.setattr(T.time, "perf_counter", lambda: next(clock))
    seconds = T.seconds_per_point(lambda: calls.append(1) or jnp.zeros(()), num_points=4, repeats=3)
    assert len(calls) == 4  # one warm-up run (compilation), then three timed
    assert seconds == 2.0 / 4
    with pytest.raises(ValueError, match="num_points"):
        T.seconds_per_point(lambda: jnp.zeros(()), num_points=0)
