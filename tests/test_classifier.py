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
    with pytest.raises(ValueError, match=r"y must be \(\d+,\) integer class labels"):
        classifier.fit_classifier(model, classifier.ClassifierConfig(), digits.x_train, digits.y_train + 0.5)
    with pytest.raises(ValueError, match="hidden"):
        classifier.ClassifierConfig(hidden=256)
    with pytest.raises(ValueError, match="learning_rate"):
        classifier.ClassifierConfig(learning_rate=0)


def _clusters(rng, n, d=3, classes=4, spread=1.5):
    """``n`` codes around ``classes`` random centres (overlapping, so the vote is often wrong) and their labels."""
    centres = rng.normal(size=(classes, d)) * 2
    labels = rng.integers(0, classes, n)
    return centres[labels] + spread * rng.normal(size=(n, d)), labels


def _brute_force_knn(train, train_labels, test, k, skip_self=False):
    """The vote written out, one query at a time: full sort of the distances, count the k nearest labels."""
    predicted = []
    for i, z in enumerate(test):
        distance = np.sqrt(((train - z) ** 2).sum(axis=1))
        if skip_self:
            distance[i] = np.inf
        nearest = np.argsort(distance, kind="stable")[:k]
        counts = np.bincount(train_labels[nearest], minlength=train_labels.max() + 1)
        predicted.append(int(np.flatnonzero(counts == counts.max())[0]))  # a tie to the smaller label
    return np.array(predicted)


@pytest.mark.parametrize("k", [1, 5, 8])
def test_knn_accuracy_matches_scikit_learn(k):
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(k)
    codes, labels = _clusters(rng, 1000)
    train, train_labels, test, test_labels = codes[:700], labels[:700], codes[700:], labels[700:]
    train = train * np.array([1.0, 10.0, 0.1])  # dimensions of very different scales
    test = test * np.array([1.0, 10.0, 0.1])
    m, s = train.mean(axis=0), train.std(axis=0)
    reference = KNeighborsClassifier(k).fit((train - m) / s, train_labels).predict((test - m) / s)
    result = classifier.knn_accuracy(train.astype(np.float32), train_labels, test.astype(np.float32), test_labels, k=k)
    # float32 inputs, float64 distances: a near-tie in distance could flip one neighbour, hence 1 in 300
    assert np.mean(result.predicted == reference) >= 1 - 1 / 300
    assert result.accuracy == pytest.approx(np.mean(reference == test_labels), abs=1 / 300 + 1e-12)
    assert 0.3 < result.accuracy < 0.95  # the test is not trivial: many votes are wrong, many right
    assert result.stderr == pytest.approx(np.sqrt(result.accuracy * (1 - result.accuracy) / 300))
    np.testing.assert_array_equal(result.correct, result.predicted == test_labels)
    for label in range(4):
        assert result.per_class[label] == pytest.approx(np.mean(result.predicted[test_labels == label] == label))
    # without standardising, scikit-learn on the raw codes
    raw = KNeighborsClassifier(k).fit(train, train_labels).predict(test)
    unscaled = classifier.knn_accuracy(train, train_labels, test, test_labels, k=k, standardize=False)
    assert np.mean(unscaled.predicted == raw) >= 1 - 1 / 300


def test_knn_accuracy_matches_a_brute_force_vote_with_ties_and_leave_one_out():
    rng = np.random.default_rng(3)
    # with k = 4 and three classes, 2-2 votes are common: they go to the smaller label in both
    codes, labels = _clusters(rng, 100, d=2, classes=3, spread=2.0)
    train, train_labels, test, test_labels = codes[:60], labels[:60], codes[60:], labels[60:]
    got = classifier.knn_accuracy(train, train_labels, test, test_labels, k=4, standardize=False)
    expected = _brute_force_knn(train, train_labels, test, 4)
    np.testing.assert_array_equal(got.predicted, expected)
    # leave-one-out on the training codes: each code's own position is not a neighbour
    m, s = train.mean(axis=0), train.std(axis=0)
    loo = classifier.knn_accuracy(train, train_labels, k=3)
    np.testing.assert_array_equal(loo.predicted, _brute_force_knn((train - m) / s, train_labels, (train - m) / s, 3,
                                                                  skip_self=True))
    with_self = _brute_force_knn((train - m) / s, train_labels, (train - m) / s, 1)
    assert np.all(with_self == train_labels) and classifier.knn_accuracy(train, train_labels, k=1).accuracy < 1


def test_knn_accuracy_works_in_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    codes, labels = _clusters(rng, 350)
    train, train_labels, test, test_labels = codes[:200], labels[:200], codes[200:], labels[200:]
    whole = classifier.knn_accuracy(train, train_labels, test, test_labels)
    whole_loo = classifier.knn_accuracy(train, train_labels)
    monkeypatch.setattr(classifier, "KNN_BLOCK_BYTES", 8 * 200 * 7)  # 7 query rows per block, the last one short
    np.testing.assert_array_equal(classifier.knn_accuracy(train, train_labels, test, test_labels).predicted,
                                  whole.predicted)
    # leave-one-out in blocks: each block leaves out its own rows' codes, not the first block's
    np.testing.assert_array_equal(classifier.knn_accuracy(train, train_labels).predicted, whole_loo.predicted)
    m, s = train.mean(axis=0), train.std(axis=0)
    np.testing.assert_array_equal(whole_loo.predicted, _brute_force_knn((train - m) / s, train_labels, (train - m) / s,
                                                                        5, skip_self=True))


def test_knn_accuracy_refuses_bad_input():
    rng = np.random.default_rng(0)
    z, y = _clusters(rng, 20)
    cases = [
        (lambda: classifier.knn_accuracy(z, y, z[:, :2], y), "must have 3 columns like train_codes"),
        (lambda: classifier.knn_accuracy(z, y[:-1], z, y), r"train_labels must be \(20,\) integer class labels"),
        (lambda: classifier.knn_accuracy(z, y + 0.5, z, y), "integer class labels"),
        (lambda: classifier.knn_accuracy(z, y, z, y > 1), "integer class labels"),
        (lambda: classifier.knn_accuracy(z, y - 5, z, y), "class indices >= 0"),
        (lambda: classifier.knn_accuracy(z[0], y[:1], z, y), r"num_codes, latent_dim"),
        (lambda: classifier.knn_accuracy(z[:0], y[:0], z, y), "at least one code"),
        (lambda: classifier.knn_accuracy(z.astype(int), y, z, y), "floating-point"),
        (lambda: classifier.knn_accuracy(np.where(z > 1, np.nan, z), y, z, y), "train_codes holds NaN"),
        (lambda: classifier.knn_accuracy(z, y, np.where(z > 1, np.inf, z), y), "test_codes holds an infinite"),
        (lambda: classifier.knn_accuracy(z, y, z), "together"),
        (lambda: classifier.knn_accuracy(z, y, z, y, k=0), "k must be an integer >= 1"),
        (lambda: classifier.knn_accuracy(z, y, z, y, k=2.0), "write k=2"),
        (lambda: classifier.knn_accuracy(z, y, z, y, k=21), "pass k <= 20"),
        (lambda: classifier.knn_accuracy(z, y, k=20), "pass k <= 19"),
        (lambda: classifier.knn_accuracy(z, y, z, y, standardize="yes"), "standardize must be True or False"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
