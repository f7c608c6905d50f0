"""Data loading: lookup order, checksums, offline behaviour, fallback, binarisation."""

import gzip
import io
import shutil
import time

import jax
import numpy as np
import pytest

from vae_lite import data

FILES = list(data.IDX_SOURCES["mnist"][0])


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No environment folder, an empty cache, and mirrors that refuse at once."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", (data.IDX_SOURCES["mnist"][0], ("http://127.0.0.1:9/",)))
    return tmp_path


def test_digits_are_float32_in_unit_interval():
    d = data.load("digits")
    assert d.x_train.dtype == np.float32 and d.x_train.shape[1] == 64
    assert d.image_shape == (8, 8) and d.num_pixels == 64
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.y_train)) == set(range(10))


def test_mnist_from_explicit_folder(mnist_dir, isolated):
    d = data.load("mnist", data_dir=mnist_dir)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.x_train.dtype == np.float32 and d.x_train.max() == 1.0 and d.x_train.min() == 0.0
    # The published first labels of the MNIST training and test sets.
    assert list(d.y_train[:5]) == [5, 0, 4, 1, 9] and list(d.y_test[:5]) == [7, 2, 1, 0, 4]
    # Raw bytes agree with an independent decode of the IDX header.
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    assert int.from_bytes(raw[4:8], "big") == 10000
    np.testing.assert_allclose(np.frombuffer(raw[16:16 + 784], np.uint8) / 255.0, d.x_test[0], rtol=1e-6)


def test_environment_variable_and_subfolder_layout(mnist_dir, isolated, monkeypatch):
    folder = isolated / "datasets" / "mnist"
    folder.mkdir(parents=True)
    for f in FILES:
        (folder / f).symlink_to(mnist_dir / f)
    monkeypatch.setenv(data.DATA_ENV, str(isolated / "datasets"))
    assert data.load("mnist").x_test.shape == (10000, 784)


def test_corrupt_file_names_file_and_fix(mnist_dir, isolated):
    folder = isolated / "bad"
    shutil.copytree(mnist_dir, folder)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(data.ChecksumError, match="t10k-labels-idx1-ubyte.gz.*delete it"):
        data.load("mnist", data_dir=folder)


def test_offline_gives_clear_message_without_hanging(isolated):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="VAE_LITE_DATA") as err:
        data.load("mnist")
    assert time.perf_counter() - start < 5 * data.DOWNLOAD_TIMEOUT_S
    assert "fallback=True" in str(err.value)


def test_fallback_prints_notice_and_returns_digits(isolated, capsys):
    d = data.load("mnist", fallback=True)
    assert d.name == "digits"
    assert "NOTICE" in capsys.readouterr().out


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="digits, mnist, fashion_mnist"):
        data.load("cifar10")


def test_download_is_verified_and_atomic(mnist_dir, isolated, monkeypatch):
    served = []

    def fake_urlopen(url, timeout):
        assert timeout == data.DOWNLOAD_TIMEOUT_S
        name = url.rsplit("/", 1)[1]
        served.append(name)
        payload = (mnist_dir / name).read_bytes()
        return io.BytesIO(payload if len(served) > 1 else b"not the file")

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", (data.IDX_SOURCES["mnist"][0], ("http://a/", "http://b/")))
    d = data.load("mnist")
    assert d.x_train.shape == (60000, 784)
    # The first mirror served garbage: it was rejected and the second one used.
    assert served[:2] == [FILES[0], FILES[0]]
    cached = sorted(p.name for p in (isolated / "cache" / "data" / "mnist").iterdir())
    assert cached == sorted(FILES)  # no temporary files left behind


def test_binarize_dynamic_and_fixed():
    x = np.full((2000, 50), 0.3, np.float32)
    b = data.binarize(jax.random.key(0), x)
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert abs(float(b.mean()) - 0.3) < 0.01  # 100k Bernoulli(0.3) draws: sd 0.0015
    np.testing.assert_array_equal(data.binarize_fixed(x), data.binarize_fixed(x))
    assert not np.array_equal(data.binarize_fixed(x, seed=0), data.binarize_fixed(x, seed=1))
