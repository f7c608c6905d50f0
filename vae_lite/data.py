"""Data sets: bundled 8x8 digits, MNIST and Fashion-MNIST (core; every lesson).

Lookup order for the IDX files of MNIST / Fashion-MNIST:

1. the ``data_dir`` argument,
2. the folder in the environment variable ``VAE_LITE_DATA``,
3. the per-user cache (``$VAE_LITE_CACHE/data`` or ``~/.cache/vae-lite/data``),
4. a download from the known mirrors into the cache (checksum verified, atomic write).

In a folder, the files may sit directly (``folder/train-images-idx3-ubyte.gz``) or in
a sub-folder named after the data set (``folder/mnist/...``); every file is checked
against its published MD5, so an MNIST file is never mistaken for a Fashion-MNIST one.
"""

import functools
import gzip
import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

DATA_ENV = "VAE_LITE_DATA"
CACHE_ENV = "VAE_LITE_CACHE"
DOWNLOAD_TIMEOUT_S = 10.0

_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
IDX_SOURCES = {
    "mnist": (
        _MNIST_MD5,
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion_mnist": (
        _FASHION_MD5,
        ("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}
DATASETS = ("digits", *IDX_SOURCES)


class DataUnavailableError(FileNotFoundError):
    """The data set's files are neither on disk nor downloadable (e.g. offline)."""


class ChecksumError(ValueError):
    """A data file on disk does not match its published checksum."""


@dataclass(frozen=True)
class Dataset:
    """Images as float32 rows in [0, 1] with integer labels.

    Attributes:
        name: ``"digits"``, ``"mnist"`` or ``"fashion_mnist"``.
        x_train: ``(n_train, pixels)`` float32 in [0, 1].
        y_train: ``(n_train,)`` int32 labels.
        x_test: ``(n_test, pixels)`` float32 in [0, 1].
        y_test: ``(n_test,)`` int32 labels.
        image_shape: ``(height, width)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple

    @property
    def num_pixels(self):
        return int(np.prod(self.image_shape))


def cache_dir():
    """The per-user cache folder (``$VAE_LITE_CACHE`` or ``~/.cache/vae-lite``)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vae-lite"
    )
    return Path(root)


def md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _offline_message(name, searched):
    return (
        f"Could not find or download the {name} files.\n"
        f"Searched: {', '.join(str(s) for s in searched) or '(no folders)'}; "
        "the download from the mirrors failed (offline?).\n"
        "To fix it, do one of:\n"
        f"  * put the four IDX files ({', '.join(IDX_SOURCES[name][0])}) in a folder and "
        f"pass it as data_dir=... or set {DATA_ENV}=/that/folder;\n"
        "  * connect to the internet once: the files are then cached;\n"
        f"  * or use the bundled 8x8 digits: vae_lite.data.load('{name}', fallback=True) "
        "or vae_lite.data.load('digits')."
    )


def _find_in(folder, name, filename, expected_md5):
    for path in (Path(folder) / name / filename, Path(folder) / filename):
        if path.is_file():
            if md5(path) != expected_md5:
                raise ChecksumError(
                    f"{path} does not match the published {name} checksum (MD5 {expected_md5}). "
                    "The file is corrupt, truncated or from another data set: delete it "
                    "and download it again (or point to a correct copy)."
                )
            return path
    return None


def _download(name, filename, expected_md5, target):
    for mirror in IDX_SOURCES[name][1]:
        try:
            with urllib.request.urlopen(mirror + filename, timeout=DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except OSError:
            continue
        if hashlib.md5(payload).hexdigest() == expected_md5:
            atomic_write_bytes(target, payload)
            return target
    return None


def locate_idx_files(name, data_dir=None, *, download=True):
    """Paths of the four verified IDX files of ``name``, searching in the documented order."""
    checksums = IDX_SOURCES[name][0]
    folders = [f for f in (data_dir, os.environ.get(DATA_ENV), cache_dir() / "data") if f]
    paths = {}
    for filename, expected in checksums.items():
        for folder in folders:
            found = _find_in(folder, name, filename, expected)
            if found:
                paths[filename] = found
                break
        else:
            target = cache_dir() / "data" / name / filename
            found = _download(name, filename, expected, target) if download else None
            if found is None:
                raise DataUnavailableError(_offline_message(name, folders))
            paths[filename] = found
    return paths


def read_idx(path):
    """Read a gzipped IDX file (the MNIST format) into a numpy array."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ChecksumError(f"{path} is not a readable gzip file ({err}); delete it and download it again.") from err
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if raw[2] != 0x08 or data.size != int(np.prod(shape)):
        raise ChecksumError(f"{path} is not a valid unsigned-byte IDX file of shape {shape}.")
    return data.reshape(shape)


@functools.lru_cache(maxsize=2)
def _read_verified(files):
    """Decode verified files once per process; the arrays are read-only, so sharing is safe."""
    paths = {f: p for f, p, _mtime in files}

    def images(f):
        x = read_idx(paths[f])
        return _readonly(x.reshape(len(x), -1) / np.float32(255.0))  # uint8 / float32 -> float32

    def labels(f):
        return _readonly(read_idx(paths[f]).astype(np.int32))

    return (
        images("train-images-idx3-ubyte.gz"),
        labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"),
        labels("t10k-labels-idx1-ubyte.gz"),
    )


def _readonly(a):
    a.setflags(write=False)
    return a


def _load_idx(name, data_dir, download):
    paths = locate_idx_files(name, data_dir, download=download)
    key = tuple(sorted((f, str(p), p.stat().st_mtime_ns) for f, p in paths.items()))
    return Dataset(name, *_read_verified(key), (28, 28))


def load_digits(num_test=297):
    """scikit-learn's bundled 8x8 digits (1,797 images), scaled to [0, 1].

    They have no published split: the last ``num_test`` images are the test set.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    return Dataset("digits", x[:-num_test], y[:-num_test], x[-num_test:], y[-num_test:], (8, 8))


def load(name="mnist", data_dir=None, *, download=True, fallback=False):
    """Load a data set by name.

    Args:
        name: one of ``"digits"``, ``"mnist"``, ``"fashion_mnist"``.
        data_dir: optional folder holding the IDX files (searched first).
        download: try the mirrors when the files are not on disk.
        fallback: when the files are unavailable, print a visible notice and
            return the bundled digits instead of raising ``DataUnavailableError``.

    Returns:
        a :class:`Dataset`. Introduced in lesson 1.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; valid names are {', '.join(DATASETS)}.")
    if name == "digits":
        return load_digits()
    try:
        return _load_idx(name, data_dir, download)
    except DataUnavailableError as err:
        if not fallback:
            raise
        print(
            f"NOTICE: {name} is not available here, so this lesson uses the bundled 8x8 "
            f"digits instead. The numbers below will differ from the text.\n{err}",
            file=sys.stdout,
        )
        return load_digits()


def binarize(key, x):
    """Dynamic binarisation: each pixel becomes 1 with probability equal to its intensity.

    Args:
        key: a ``jax.random`` key (use a fresh one every epoch).
        x: ``(..., pixels)`` intensities in [0, 1].

    Returns:
        float32 array of 0s and 1s, shaped like ``x``. Introduced in lesson 1.
    """
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def binarize_fixed(x, seed=0):
    """Binarise once with a fixed seed, for evaluation that is comparable across runs."""
    return binarize(jax.random.key(seed), jnp.asarray(x))
