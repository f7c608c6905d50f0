"""Data loading: the bundled MNIST, lookup order, checksums, the digits switch, binarisation.

Downloads from misbehaving mirrors are tested in ``tests/test_download.py``.
"""

import gzip
import hashlib
import shutil
import time

import jax
import numpy as np
import pytest

from vae_lite import data

FILES = list(data.IDX_SOURCES["mnist"][0])
# The published MD5s of the four MNIST files (as listed by the mirrors, e.g. PyTorch's
# torchvision.datasets.MNIST), written out here independently of vae_lite.data.
PUBLISHED_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Nothing configured: no data folder, no switch, an empty cache, mirrors that refuse at once."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.delenv(data.DATASET_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", (data.IDX_SOURCES["mnist"][0], ("http://127.0.0.1:9/",)))
    return tmp_path


@pytest.fixture
def no_bundle(monkeypatch):
    """As if MNIST did not ship with the package (to exercise the cache and the download)."""
    monkeypatch.setattr(data, "BUNDLED", ())


def test_bundled_files_are_the_published_mnist(mnist_dir):
    assert mnist_dir.is_relative_to(data.bundled_dir())
    for name, expected in PUBLISHED_MNIST_MD5.items():
        assert hashlib.md5((mnist_dir / name).read_bytes()).hexdigest() == expected


def test_mnist_loads_with_nothing_configured(isolated, mnist_dir):
    d = data.load("mnist")  # no folder, no environment variable, no network
    assert d.name == "mnist" and d.image_shape == (28, 28)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert all(p.parent == mnist_dir for p in data.locate_idx_files("mnist").values())
    # The published first labels of the MNIST training and test sets.
    assert list(d.y_train[:5]) == [5, 0, 4, 1, 9] and list(d.y_test[:5]) == [7, 2, 1, 0, 4]
    # Pixels agree with an independent decode of the IDX file (16-byte header, then uint8).
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    assert int.from_bytes(raw[4:8], "big") == 10000
    np.testing.assert_array_equal(d.x_test[0], np.frombuffer(raw[16 : 16 + 784], np.uint8) / np.float32(255))
    assert not list(isolated.glob("cache/**/*.gz")), "nothing is downloaded or copied"


def test_images_hold_uint8_and_hand_out_float32_rows(isolated):
    d = data.load("mnist")
    assert d.x_train.levels.dtype == np.uint8 and d.x_train.levels.nbytes == 60000 * 784
    rows = d.x_test[10:20]
    assert rows.dtype == np.float32 and rows.shape == (10, 784)
    assert rows.min() == 0.0 and rows.max() == 1.0
    np.testing.assert_array_equal(d.x_test[[3, 1]], d.x_test[3:4].tolist() + d.x_test[1:2].tolist())
    full = np.asarray(d.x_test)
    assert full.dtype == np.float32 and full.shape == (10000, 784) and len(d.x_test) == 10000
    with pytest.raises(ValueError):  # the stored levels are read-only: shared safely
        d.x_train.levels[0, 0] = 1


def test_digits_are_float32_in_unit_interval():
    d = data.load("digits")
    x = np.asarray(d.x_train)
    assert x.dtype == np.float32 and x.shape[1] == 64
    assert d.image_shape == (8, 8) and d.num_pixels == 64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.y_train)) == set(range(10))
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(x, (load_digits().data[:-297] / 16.0).astype(np.float32))


def _copy_of_mnist(mnist_dir, folder):
    folder.mkdir(parents=True)
    for f in FILES:
        shutil.copyfile(mnist_dir / f, folder / f)
    return folder


def test_explicit_folder_then_environment_then_bundled(mnist_dir, isolated, monkeypatch):
    mine = _copy_of_mnist(mnist_dir, isolated / "mine")
    env = _copy_of_mnist(mnist_dir, isolated / "datasets" / "mnist")  # sub-folder layout
    monkeypatch.setenv(data.DATA_ENV, str(isolated / "datasets"))
    assert {p.parent for p in data.locate_idx_files("mnist", mine).values()} == {mine}
    assert {p.parent for p in data.locate_idx_files("mnist").values()} == {env}
    assert data.load("mnist").x_test.shape == (10000, 784)


def test_corrupt_file_names_file_and_fix(mnist_dir, isolated):
    folder = _copy_of_mnist(mnist_dir, isolated / "bad")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(data.ChecksumError, match="t10k-labels-idx1-ubyte.gz.*expected MD5.*Delete it"):
        data.load("mnist", data_dir=folder)


def test_damaged_bundled_file_says_reinstall(mnist_dir, isolated, monkeypatch):
    package = isolated / "site-packages" / "vae_lite" / "_data"
    _copy_of_mnist(mnist_dir, package / "mnist")
    altered = package / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = altered.read_bytes()
    altered.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # one bit flipped
    monkeypatch.setattr(data, "bundled_dir", lambda: package)
    with pytest.raises(data.ChecksumError, match=r"train-labels-idx1-ubyte.gz.*reinstall vae-lite.*VAE_LITE_DATA"):
        data.load("mnist")


def test_offline_gives_clear_message_without_hanging(isolated, no_bundle):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="VAE_LITE_DATA") as err:
        data.load("mnist")
    assert time.perf_counter() - start < 5 * data.DOWNLOAD_TIMEOUT_S
    assert "fallback=True" in str(err.value) and "127.0.0.1:9" in str(err.value)


def test_fallback_warns_and_returns_digits(isolated, no_bundle):
    with pytest.warns(data.DatasetSubstitutedWarning, match="NOTICE: mnist is not available") as caught:
        d = data.load("mnist", fallback=True)
    assert d.name == "digits" and d.image_shape == (8, 8)
    assert "VAE_LITE_DATA" in str(caught[0].message)  # the unavailable data's message, with its fixes


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="digits, mnist, fashion_mnist"):
        data.load("cifar10")


def test_dataset_switch_gives_digits_with_a_notice(isolated, monkeypatch):
    monkeypatch.setenv(data.DATASET_ENV, "digits")
    # tests/test_notebooks_digits.py looks for this text among a lesson's outputs
    with pytest.warns(data.DatasetSubstitutedWarning, match="^NOTICE: VAE_LITE_DATASET=digits"):
        d = data.load("mnist", fallback=True)
    assert d.name == "digits" and d.image_shape == (8, 8)
    monkeypatch.setenv(data.DATASET_ENV, "mnist")
    assert data.load("mnist").name == "mnist"
    monkeypatch.setenv(data.DATASET_ENV, "")  # empty: as if unset
    assert data.load("mnist").name == "mnist"


def test_unknown_dataset_switch_lists_valid_values(isolated, monkeypatch):
    monkeypatch.setenv(data.DATASET_ENV, "cifar")
    with pytest.raises(ValueError, match=r"VAE_LITE_DATASET='cifar'.*valid values are mnist, digits"):
        data.load("mnist")


def test_cache_folder_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(data.CACHE_ENV, "~/vae-cache")
    assert data.cache_dir() == tmp_path / "vae-cache"
    monkeypatch.delenv(data.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.cache_dir() == tmp_path / ".cache" / "vae-lite"


# --- binarisation -----------------------------------------------------------------------


def test_binarize_dynamic_and_fixed():
    x = np.full((2000, 50), 0.3, np.float32)
    b = data.binarize(jax.random.key(0), x)
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert abs(float(b.mean()) - 0.3) < 0.01  # 100k Bernoulli(0.3) draws: sd 0.0015
    fixed = data.binarize_fixed(x)
    assert fixed.dtype == np.float32 and set(np.unique(fixed)) <= {0.0, 1.0}
    assert abs(float(fixed.mean()) - 0.3) < 0.01
    np.testing.assert_array_equal(fixed, data.binarize_fixed(x))
    assert not np.array_equal(data.binarize_fixed(x, seed=0), data.binarize_fixed(x, seed=1))


def test_binarize_fixed_works_in_blocks_with_per_pixel_probabilities():
    # 3,000 rows span three blocks (the last one overlapping); each column has its own p.
    p = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    x = np.tile(p, (3000, 1))
    b = np.asarray(data.binarize_fixed(x, seed=3))
    assert set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_array_equal(b[:, 0], 0.0)
    np.testing.assert_array_equal(b[:, -1], 1.0)
    # column means within 5 standard errors of p (3,000 draws each)
    se = np.sqrt(p * (1 - p) / 3000)
    assert np.all(np.abs(b.mean(axis=0) - p) <= 5 * se + 1e-9)
    # rows of different blocks are not copies of each other
    assert not np.array_equal(b[:1024], b[1024:2048])


def test_binarize_fixed_of_images_matches_their_intensities():
    d = data.load("digits")
    from_levels = np.asarray(data.binarize_fixed(d.x_test, seed=2))
    from_floats = np.asarray(data.binarize_fixed(d.x_test[:], seed=2))
    np.testing.assert_array_equal(from_levels, from_floats)


def test_binarize_takes_nested_lists():
    # p = 0 and p = 1 give 0 and 1 for certain; p = 0.3 in 2,000 draws is within 5 standard errors
    np.testing.assert_array_equal(data.binarize(jax.random.key(0), [[0.0, 1.0], [1.0, 0.0]]), [[0, 1], [1, 0]])
    bits = data.binarize(jax.random.key(1), [[0.3] * 20] * 100)
    assert bits.shape == (100, 20) and bits.dtype == np.float32
    assert abs(float(bits.mean()) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 2000)
    np.testing.assert_array_equal(data.binarize_fixed([[0.0, 1.0]]), [[0, 1]])


@pytest.mark.parametrize("x, message", [
    ([[0.1, 0.2], [0.3]], "x must be an array of numbers"),  # ragged
    ([["a", "b"]], "x must be an array of numbers"),
    ([[200, 100]], r"\[0, 1\]"),  # grey levels as a list (already refused before lists were taken)
])
def test_binarize_explains_a_list_it_cannot_take(x, message):
    with pytest.raises(ValueError, match=message):
        data.binarize(jax.random.key(0), x)


def test_binarize_rejects_grey_levels():
    with pytest.raises(ValueError, match="x / 255"):
        data.binarize(jax.random.key(0), np.full((2, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="x / 255"):
        data.binarize_fixed(np.full((2, 3), 200, np.uint8))


def _named(name):
    digits = data.load_digits()
    return data.Dataset(name, digits.x_train, digits.y_train, digits.x_test, digits.y_test, digits.image_shape)


def test_choose_gives_the_lessons_mnist_value_on_28x28_sets_and_the_digits_value_on_digits():
    assert _named("mnist").choose(mnist=1000, digits=100) == 1000
    assert _named("fashion_mnist").choose(mnist=1000, digits=100) == 1000
    assert _named("digits").choose(mnist=1000, digits=100) == 100


def test_claim_is_an_error_on_mnist_and_a_printed_line_elsewhere(capsys):
    assert _named("mnist").claim(np.bool_(True), "the gap is positive") is True
    with pytest.raises(AssertionError, match="the gap is positive"):
        _named("mnist").claim(False, "the gap is positive")
    assert _named("digits").claim(False, "the gap is positive") is False
    out = capsys.readouterr().out
    assert "digits" in out and "the gap is positive" in out
    assert _named("digits").claim(True, "held") is True and capsys.readouterr().out == ""
