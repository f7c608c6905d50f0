"""Models on disk: what the train-or-load flow does with a cache entry it cannot use.

Each entry here is written by hand in the format ``save_model`` writes (or as the file a
careless ``np.save`` leaves), so the test does not depend on the code that reads it.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_lite import checkpoints, data, training

TINY = training.TrainConfig(dataset="digits", hidden=(8,), latent_dim=2, epochs=1, batch_size=64)
HISTORY = {"elbo": [-40.0], "recon": [-38.0], "kl": [2.0], "seconds": [0.5]}

pytestmark = pytest.mark.usefixtures("private_cache")  # every test writes into its own empty cache


def _entry_of_a_fresh_model(digits):
    """A valid cache entry for TINY (an untrained model with a plausible history); returns its path."""
    path = training.cache_path(TINY, digits)
    checkpoints.save_model(path, training.build_model(TINY, digits.num_pixels),
                           checkpoints.training_metadata(TINY, HISTORY))
    return path


def _set_first_kernel(path, value):
    """Rewrite the entry with its first kernel set to ``value`` and a checksum that matches, as
    ``save_model`` of a broken model would have written it."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    kernel = next(k for k in arrays if k.startswith("param:") and "kernel" in k)
    arrays[kernel] = np.full_like(arrays[kernel], value)
    params = {k[len("param:"):]: v for k, v in arrays.items() if k.startswith("param:")}
    metadata = json.loads(str(arrays["metadata"]))
    metadata["params_sha256"] = checkpoints.params_checksum(params)
    arrays["metadata"] = np.array(json.dumps(metadata))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_hand_written_entry_is_loaded(digits):
    """The entries the other tests spoil are valid to begin with: unspoilt, train() loads one."""
    _entry_of_a_fresh_model(digits)
    result = training.train(TINY, digits, progress=False)
    assert result.source == "cache" and result.history == HISTORY


def test_one_npy_array_under_an_entrys_name_is_skipped_and_replaced(digits):
    path = training.cache_path(TINY, digits)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:  # np.save to a path would add ".npy"; to an open file it does not
        np.save(fh, np.arange(10.0))
    with pytest.warns(checkpoints.ModelCacheWarning, match=r"holds one array of shape \(10,\), not the .npz"):
        result = training.train(TINY, digits, progress=False)
    assert result.source == "trained" and np.isfinite(result.history["elbo"]).all()
    assert training.train(TINY, digits, progress=False).source == "cache"  # replaced: not broken for good


def test_parameters_of_1e30_make_a_model_that_cannot_be_evaluated(digits):
    """Why such an entry is refused: its ELBO is NaN, not a number a lesson could show."""
    model = training.build_model(TINY, digits.num_pixels)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e30), params))
    x = data.binarize_fixed(digits.x_test[:50])
    assert not np.isfinite(training.evaluate(jax.random.key(0), model, x).elbo)


@pytest.mark.parametrize("value", [1e30, -1e7, np.inf, np.nan])
def test_an_entry_with_unusable_parameters_is_skipped_with_a_warning(digits, value):
    _set_first_kernel(_entry_of_a_fresh_model(digits), value)
    with pytest.warns(checkpoints.ModelCacheWarning, match=r"NaN, infinite or huge \(\|value\| > 1e\+06\) parameters"):
        result = training.train(TINY, digits, progress=False)
    assert result.source == "trained" and np.isfinite(result.history["elbo"]).all()
    x = data.binarize_fixed(digits.x_test)
    assert np.isfinite(training.evaluate(jax.random.key(0), result.model, x).elbo)


@pytest.mark.parametrize("value", [1e30, np.inf, np.nan])
def test_save_model_refuses_unusable_parameters(tmp_path, value):
    model = training.build_model(TINY, 64)
    params = nnx.state(model, nnx.Param)
    leaves, tree = jax.tree_util.tree_flatten(params)
    leaves[0] = jnp.full_like(leaves[0], value)
    nnx.update(model, jax.tree_util.tree_unflatten(tree, leaves))
    path = tmp_path / "broken.npz"
    with pytest.raises(ValueError, match="Refusing to save a model with NaN, infinite or huge"):
        checkpoints.save_model(path, model)
    assert not path.exists()


def test_the_limit_is_far_above_any_shipped_parameter():
    """The shipped models' largest |parameter| (2.3) is 400,000 times below the limit."""
    largest = 0.0
    for path in checkpoints.shipped_dir().glob("*.npz"):
        with np.load(path, allow_pickle=False) as f:
            largest = max([largest] + [float(np.max(np.abs(f[k]))) for k in f.files if k.startswith("param:")])
    assert 0.1 < largest < checkpoints.PARAMETER_LIMIT / 1e5
