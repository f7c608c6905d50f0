"""Trainer and model cache on the small digits set (seconds, not minutes).

One model is trained once for the module (``trained``) and shared by the tests that only read it,
its history or its cache entry; a test that checks training itself, or what ``train`` does with a
cache it cannot use, trains its own.
"""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_lite import _reference as R
from vae_lite import checkpoints, data, training

SMALL = training.TrainConfig(dataset="digits", hidden=(32,), latent_dim=2, epochs=3, batch_size=64)


pytestmark = pytest.mark.usefixtures("private_cache")  # every test trains into its own empty cache


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """SMALL trained once on the digits: ``(TrainResult, its cache entry)``, the entry in a cache of its own
    (a test that needs it in its private cache copies it there). Read it; do not change it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_LITE_CACHE", str(tmp_path_factory.mktemp("trained-once")))
        result = training.train(SMALL, digits, progress=False)
        return result, training.cache_path(result.config, digits)


def _copy_entry(trained, digits):
    """Put the shared model's cache entry into this test's (private) cache; return its path there."""
    path = training.cache_path(SMALL, digits)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trained[1], path)
    return path


def _params(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


def _reference_params(model):
    """The VAE's parameters named as ``_reference``'s float64 network names them (the encoder's last
    layer split into its mu half and its log_var half)."""
    (e1, e2), (d1, d2), half = model.encoder.net.layers, model.decoder.net.layers, model.latent_dim
    return {
        "encoder.hidden.kernel": e1.kernel[...], "encoder.hidden.bias": e1.bias[...],
        "encoder.mu.kernel": e2.kernel[...][:, :half], "encoder.mu.bias": e2.bias[...][:half],
        "encoder.log_var.kernel": e2.kernel[...][:, half:], "encoder.log_var.bias": e2.bias[...][half:],
        "decoder.hidden.kernel": d1.kernel[...], "decoder.hidden.bias": d1.bias[...],
        "decoder.logits.kernel": d2.kernel[...], "decoder.logits.bias": d2.bias[...],
    }  # fmt: skip


def test_vae_terms_against_a_float64_forward_pass():
    """recon = log p(x|z) and kl = KL(q(z|x) || p(z)) against the float64 NumPy network and formulas of
    ``_reference``, at z = mu + e^(log_var / 2) eps with reparameterize's draw eps = normal(key, mu.shape)."""
    model = training.build_model(SMALL, 64)
    x = data.binarize_fixed(data.load("digits").x_test[:5])
    key = jax.random.key(0)
    recon, kl = training.vae_terms(key, model, x)
    params = _reference_params(model)
    mu, log_var = R.encoder_forward(params, x)
    z = mu + np.exp(0.5 * log_var) * R.f64(jax.random.normal(key, mu.shape))
    logits = R.decoder_forward(params, z)
    np.testing.assert_allclose(recon, R.bernoulli_log_pmf(R.f64(x), 1 / (1 + np.exp(-logits))).sum(1), rtol=1e-4)
    np.testing.assert_allclose(kl, R.kl_std(mu, log_var), rtol=1e-4)
    assert recon.shape == kl.shape == (5,)


def test_training_improves_elbo_and_is_deterministic(digits, trained):
    a, _ = trained
    b = training.train(SMALL, digits, progress=False, retrain=True)
    h = a.history
    assert set(h) == {"elbo", "recon", "kl", "seconds", "train_elbo", "test_elbo"} and len(h["elbo"]) == 3
    assert len(h["train_elbo"]) == len(h["test_elbo"]) == 3 and h["test_elbo"][-1] > h["test_elbo"][0]
    assert h["elbo"][-1] > h["elbo"][0]
    for p, q in zip(_params(a.model), _params(b.model), strict=True):
        np.testing.assert_array_equal(p, q)
    # The trained model's test ELBO beats the untrained one's.
    x = data.binarize_fixed(digits.x_test)
    fresh = training.evaluate(jax.random.key(0), training.build_model(SMALL, 64), x).elbo
    assert training.evaluate(jax.random.key(0), a.model, x).elbo > fresh + 5


def test_recorded_test_elbo_is_the_final_models_elbo_on_test_images(digits, trained):
    """The last ``test_elbo`` agrees, within 4 standard errors, with an independent estimate:
    the returned model on the same first MONITOR_IMAGES test images, binarised and sampled
    with other keys (so only the Monte Carlo noise differs)."""
    result, _ = trained
    images = digits.x_test[: training.MONITOR_IMAGES]
    xb = jax.random.bernoulli(jax.random.key(123), jnp.asarray(images)).astype(jnp.float32)
    recon, kl = training.vae_terms(jax.random.key(456), result.model, xb)
    per_image = np.asarray(recon - kl, dtype=float)
    se = per_image.std(ddof=1) / np.sqrt(len(per_image))
    assert abs(result.history["test_elbo"][-1] - per_image.mean()) < 4 * np.sqrt(2) * se
    # the training images' curve is measured the same way: the model fits them better than unseen ones
    assert result.history["train_elbo"][-1] > result.history["test_elbo"][-1] - 4 * np.sqrt(2) * se


def test_cache_hit_returns_same_parameters_without_training(digits, trained, monkeypatch):
    first, _ = trained
    _copy_entry(trained, digits)  # the entry train() wrote, now in this test's cache

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
    # the recorded ELBO is recon - KL, not the objective recon - 0.5 KL that the model was trained on
    h = changed.history
    np.testing.assert_allclose(h["elbo"], np.array(h["recon"]) - np.array(h["kl"]), rtol=1e-6)
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


def test_unreadable_cache_entry_is_retrained(digits, trained):
    path = _copy_entry(trained, digits)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(checkpoints.ModelCacheWarning, match="not a readable vae-lite checkpoint"):
        again = training.train(SMALL, digits, progress=False)
    assert again.source == "trained"


def test_training_on_uint8_levels_equals_training_on_their_intensities(digits):
    from_levels = training.fit(training.build_model(SMALL, 64), SMALL, digits.x_train, progress=False)
    model = training.build_model(SMALL, 64)
    from_floats = training.fit(model, SMALL, np.asarray(digits.x_train), progress=False)
    np.testing.assert_allclose(from_levels["elbo"], from_floats["elbo"], rtol=1e-6)


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
def test_malformed_cache_entry_is_retrained_with_a_warning(digits, trained, change, reason):
    path = _copy_entry(trained, digits)
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
