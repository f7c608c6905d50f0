"""The digit classifier that judges generated images (lesson 2), on the bundled digits."""

import jax
import numpy as np
import pytest
from flax import nnx

from vae_lite import checkpoints, classifier

pytestmark = pytest.mark.usefixtures("private_cache")  # every test trains into its own empty cache


def _params(model):
    return [np.asarray(p) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


def test_classifier_recognises_held_out_digits(digits):
    result = classifier.train_classifier(data=digits, epochs=100, progress=False)
    # 100 epochs of a 64-256-10 MLP on 1500 images (1100 steps): about 0.95 on the 297 held-out digits
    assert result.test_accuracy > 0.9
    assert result.test_accuracy == classifier.accuracy(result.model, digits.x_test[:], digits.y_test)
    share = classifier.confident_share(result.model, digits.x_test[:])
    assert share.num_images == len(digits.y_test) and share.share > 0.6
    # the standard error is the binomial one, sqrt(s (1 - s) / n), and the share counts confidence >= 0.9
    assert share.stderr == pytest.approx(np.sqrt(share.share * (1 - share.share) / share.num_images))
    assert share.share == np.mean(share.confidence >= 0.9)
    probs = classifier.predict_probs(result.model, digits.x_test[:])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(share.labels, probs.argmax(axis=1))


def test_uniform_noise_is_not_recognised_like_digits(digits):
    model = classifier.train_classifier(data=digits, epochs=100, progress=False).model
    noise = np.random.default_rng(0).uniform(size=(300, digits.num_pixels)).astype(np.float32)
    assert classifier.confident_share(model, noise).share < classifier.confident_share(model, digits.x_test[:]).share


def test_cache_round_trip_returns_the_same_parameters(digits, monkeypatch):
    first = classifier.train_classifier(data=digits, epochs=2, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train")

    with monkeypatch.context() as patch:
        patch.setattr(classifier, "fit_classifier", no_training)
        again = classifier.train_classifier(data=digits, epochs=2, progress=False)
    assert again.source == "cache" and first.source == "trained"
    assert again.test_accuracy == first.test_accuracy
    for p, q in zip(_params(first.model), _params(again.model), strict=True):
        np.testing.assert_array_equal(p, q)
    path = classifier.classifier_cache_path(first.config, digits)
    assert path.suffix == ".npz" and path.is_file()
    with np.load(path, allow_pickle=False) as saved:  # no pickle in the file
        assert any(name.startswith("param:") for name in saved.files)
    assert classifier.train_classifier(data=digits, epochs=3, progress=False).source == "trained"  # another config


def test_unreadable_cache_entry_is_retrained_with_a_warning(digits):
    first = classifier.train_classifier(data=digits, epochs=2, progress=False)
    classifier.classifier_cache_path(first.config, digits).write_bytes(b"not a checkpoint")
    with pytest.warns(checkpoints.ModelCacheWarning, match="unreadable"):
        again = classifier.train_classifier(data=digits, epochs=2, progress=False)
    assert again.source == "trained"


def test_bad_inputs_are_rejected_with_a_fix(digits):
    model = classifier.Classifier(digits.num_pixels, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 64\)"):
        classifier.predict_probs(model, np.zeros((3, 784), np.float32))
    with pytest.raises(ValueError, match="num_images, pixels"):
        classifier.predict_probs(model, np.zeros(64, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict_probs(model, np.full((2, 64), 255.0, np.float32))
    with pytest.raises(ValueError, match="threshold"):
        classifier.confident_share(model, np.zeros((2, 64), np.float32), threshold=1.5)
    with pytest.raises(ValueError, match="no images"):
        classifier.confident_share(model, np.zeros((0, 64), np.float32))
    with pytest.raises(ValueError, match="integer labels"):
        classifier.fit_classifier(model, classifier.ClassifierConfig(), digits.x_train, digits.y_train + 0.5)
    with pytest.raises(ValueError, match="hidden"):
        classifier.ClassifierConfig(hidden=256)
    with pytest.raises(ValueError, match="learning_rate"):
        classifier.ClassifierConfig(learning_rate=0)
