"""Data sets: MNIST (bundled), the 8x8 digits (bundled), Fashion-MNIST (core; every lesson).

Lookup order for the IDX files of MNIST / Fashion-MNIST:

1. the ``data_dir`` argument,
2. the folder in the environment variable ``VAE_LITE_DATA``,
3. the copy that ships with vae-lite (MNIST only: ``vae_lite/_data/mnist/``),
4. the per-user cache (``$VAE_LITE_CACHE/data`` or ``~/.cache/vae-lite/data``),
5. a download from the known mirrors into the cache (checksum verified, atomic write).

A download tries the mirrors in order and moves on from one that fails in any way (refused,
an HTTP error, a connection closed early, silence for ``DOWNLOAD_TIMEOUT_S``, more than
``MAX_DOWNLOAD_BYTES``, the wrong checksum); each failure is named in the final error. Each
file gets ``DOWNLOAD_DEADLINE_S`` seconds in all, shared among the mirrors not yet tried, so
a mirror that trickles a byte at a time cannot hold up the next one. A downloaded file that
cannot be written into the cache (read-only, full) is used from memory, with one
:class:`DataCacheWarning`.

In a folder, the files may sit directly (``folder/train-images-idx3-ubyte.gz``) or in
a sub-folder named after the data set (``folder/mnist/...``); every file is checked
against its published MD5, so an MNIST file is never mistaken for a Fashion-MNIST one.

Images are held in memory as their uint8 grey levels (MNIST: 47 MB for the training
set, where float32 would take 188 MB) inside :class:`Images`, which hands out float32
intensities in [0, 1] only for the rows asked for. The environment variable
``VAE_LITE_DATASET=digits`` makes every ``load("mnist")`` return the bundled 8x8 digits,
so the whole series runs in seconds.
"""

import functools
import gzip
import hashlib
import http.client
import importlib.resources
import os
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vae_lite import _args
from vae_lite._runtime import CACHE_ENV, atomic_write_bytes, cache_dir  # noqa: F401 - public here too

DATA_ENV = "VAE_LITE_DATA"
DATASET_ENV = "VAE_LITE_DATASET"
DOWNLOAD_TIMEOUT_S = 10.0  # the longest wait for a mirror to connect or send the next bytes
DOWNLOAD_DEADLINE_S = 300.0  # one file, all mirrors together: a 26 MB file at 90 kB/s
MAX_DOWNLOAD_BYTES = 32 * 2**20  # the largest file, Fashion-MNIST's training images, is 26.4 MB
DOWNLOAD_CHUNK = 1 << 16  # bytes asked for per read
BINARIZE_BLOCK = 1024  # rows binarised together by binarize_fixed (small blocks: small intermediates)

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
LESSON_DATASETS = ("mnist", "digits")  # the values VAE_LITE_DATASET accepts: the lessons are checked on both
BUNDLED = ("mnist",)  # data sets whose IDX files ship inside the package


class DataUnavailableError(FileNotFoundError):
    """The data set's files are neither on disk nor downloadable (e.g. offline)."""


class ChecksumError(ValueError):
    """A data file on disk does not match its published checksum."""


class DataCacheWarning(UserWarning):
    """Downloaded files could not be written into the cache; they are used from memory this time."""


class DatasetSubstitutedWarning(UserWarning):
    """:func:`load` returns the bundled 8x8 digits instead of the data set asked for."""


class Images:
    """Images stored as uint8 grey levels; indexing returns float32 intensities in [0, 1].

    ``images[:100]`` (or any numpy index) converts just those rows, so a lesson holds
    MNIST's 47 MB of uint8 and makes float32 copies only of the blocks it uses;
    ``np.asarray(images)`` converts all of them.

    Attributes:
        levels: ``(num_images, pixels)`` uint8, read-only.
        max_level: the grey level that means intensity 1 (255 for MNIST, 16 for the digits).
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, levels, max_level):
        levels = np.asarray(levels)
        _args.has_dtype("Images' levels", levels, np.uint8, "Images holds uint8 grey levels; pass float images as arrays.")
        _args.ndim("Images' levels", levels, 2, "Pass (num_images, pixels) levels.")
        levels.setflags(write=False)
        self.levels, self.max_level = levels, int(max_level)

    @property
    def shape(self):
        return self.levels.shape

    @property
    def size(self):
        return self.levels.size

    def __len__(self):
        return len(self.levels)

    def __getitem__(self, index):
        return np.divide(self.levels[index], np.float32(self.max_level), dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        x = self[:]
        return x if dtype is None else x.astype(dtype, copy=False)

    def __repr__(self):
        return f"Images({len(self)} images of {self.shape[1]} pixels, uint8 levels 0..{self.max_level})"


@dataclass(frozen=True)
class Dataset:
    """Images with integer labels and the published train/test split.

    Attributes:
        name: ``"digits"``, ``"mnist"`` or ``"fashion_mnist"``.
        x_train: ``(n_train, pixels)`` :class:`Images`; ``x_train[i:j]`` is float32 in [0, 1].
        y_train: ``(n_train,)`` int32 labels.
        x_test: ``(n_test, pixels)`` :class:`Images`.
        y_test: ``(n_test,)`` int32 labels.
        image_shape: ``(height, width)``.
    """

    name: str
    x_train: Images
    y_train: np.ndarray
    x_test: Images
    y_test: np.ndarray
    image_shape: tuple

    @property
    def num_pixels(self):
        return int(np.prod(self.image_shape))

    def choose(self, *, mnist, digits):
        """The value a lesson means for this data set: ``mnist`` for the 28x28 sets, ``digits`` for the 8x8 digits.

        A lesson's sizes and thresholds are set for MNIST; the bundled digits (297 test
        images of 64 pixels) need smaller ones, e.g. ``ds.choose(mnist=1000, digits=100)``.
        """
        return digits if self.name == "digits" else mnist

    def claim(self, holds, statement):
        """Check a sentence of the lesson's text against the lesson's own numbers.

        The text quotes MNIST, so on MNIST a claim that does not hold is an error
        (``AssertionError`` with ``statement``). On another data set the numbers differ: a claim
        that does not hold there is reported in one printed line and the lesson goes on.
        Returns ``holds`` as a bool.
        """
        holds = bool(holds)
        if not holds:
            if self.name == "mnist":
                raise AssertionError(f"the lesson's text says: {statement}; its numbers here do not show it")
            print(f"(on {self.name}, unlike MNIST, the text's claim does not hold: {statement})")
        return holds


def bundled_dir():
    """The folder inside the installed package that holds the bundled MNIST files."""
    return Path(str(importlib.resources.files("vae_lite") / "_data"))


def md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_message(name, searched, failures=()):
    tried = "".join(f"\n  {url}: {reason}" for url, reason in failures)
    return (
        f"Could not find or download the {name} files.\n"
        f"Searched: {', '.join(str(s) for s in searched) or '(no folders)'}; "
        f"the download from the mirrors failed (offline?).{tried}\n"
        "To fix it, do one of:\n"
        f"  * put the four IDX files ({', '.join(IDX_SOURCES[name][0])}) in a folder and "
        f"pass it as data_dir=... or set {DATA_ENV}=/that/folder;\n"
        "  * connect to the internet once: the files are then cached;\n"
        f"  * or use the bundled 8x8 digits: vae_lite.data.load('{name}', fallback=True) "
        "or vae_lite.data.load('digits')."
    )


def _checksum_fix(path):
    if Path(path).is_relative_to(bundled_dir()):
        return (
            "This copy ships with vae-lite, so the installation is damaged: reinstall vae-lite "
            f"(pip install --force-reinstall vae-lite), or set {DATA_ENV} to a folder with intact files."
        )
    return "Delete it and download it again, or point to a correct copy (data_dir=... or " f"{DATA_ENV})."


def _find_in(folder, name, filename, expected_md5):
    for path in (Path(folder) / name / filename, Path(folder) / filename):
        if path.is_file():
            actual = md5(path)
            if actual != expected_md5:
                raise ChecksumError(
                    f"{path} does not match the published {name} checksum: expected MD5 {expected_md5}, "
                    f"got {actual}. The file is corrupt, truncated or from another data set. "
                    + _checksum_fix(path)
                )
            return path
    return None


class _MirrorFailed(Exception):
    """One mirror did not deliver the file (the reason is the message)."""


def _fetch(url, deadline):
    """The body served at ``url``, read until ``deadline`` (``time.monotonic()``) at the latest.

    Raises :class:`_MirrorFailed`, or the ``OSError`` / ``HTTPException`` of the connection.
    """
    wait = max(0.01, min(DOWNLOAD_TIMEOUT_S, deadline - time.monotonic()))
    with urllib.request.urlopen(url, timeout=wait) as response:  # each later read also waits at most `wait`
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.strip().isdigit() else None
        if announced is not None and announced > MAX_DOWNLOAD_BYTES:
            raise _MirrorFailed(f"announces {announced} bytes, more than any data file ({MAX_DOWNLOAD_BYTES}); not read")
        payload = bytearray()
        while chunk := response.read1(DOWNLOAD_CHUNK):  # read1: returns what has arrived, however little
            payload += chunk
            if len(payload) > MAX_DOWNLOAD_BYTES:
                raise _MirrorFailed(f"sent more than {MAX_DOWNLOAD_BYTES} bytes, more than any data file; stopped")
            if time.monotonic() > deadline:
                raise _MirrorFailed(f"too slow: {len(payload)} bytes in its share of the "
                                    f"{DOWNLOAD_DEADLINE_S:g} s deadline; stopped")
    if announced is not None and len(payload) != announced:
        raise _MirrorFailed(f"closed the connection after {len(payload)} of {announced} bytes")
    return bytes(payload)


def _download(name, filename, expected_md5):
    """Download ``filename`` from the first mirror that serves the right bytes.

    The mirrors share :data:`DOWNLOAD_DEADLINE_S`: each gets the time left divided by the
    number of mirrors left (the last one all of it). Returns ``(payload or None, failures)``
    with one ``(url, reason)`` per mirror that failed.
    """
    failures = []
    mirrors = IDX_SOURCES[name][1]
    end = time.monotonic() + DOWNLOAD_DEADLINE_S
    for i, mirror in enumerate(mirrors):
        url = mirror + filename
        now = time.monotonic()
        if now >= end:
            failures.append((url, f"not tried: the {DOWNLOAD_DEADLINE_S:g} s deadline had passed"))
            continue
        try:
            payload = _fetch(url, now + (end - now) / (len(mirrors) - i))
        except _MirrorFailed as err:
            failures.append((url, str(err)))
            continue
        except (OSError, http.client.HTTPException) as err:  # refused, HTTP error, silent, closed early
            failures.append((url, getattr(err, "reason", None) or f"{type(err).__name__}: {err}"))
            continue
        actual = hashlib.md5(payload).hexdigest()
        if actual == expected_md5:
            return payload, failures
        failures.append((url, f"checksum mismatch (MD5 {actual}, expected {expected_md5}); not saved"))
    return None, failures


def search_folders(name, data_dir=None):
    """The folders searched for ``name``'s IDX files, in order (see the module docstring)."""
    bundled = [bundled_dir()] if name in BUNDLED else []
    return [Path(f) for f in (data_dir, os.environ.get(DATA_ENV), *bundled, cache_dir() / "data") if f]


def locate_idx_files(name, data_dir=None, *, download=True):
    """The four verified IDX files of ``name``, searching in the documented order.

    Returns ``{filename: path}``; a file that was downloaded but could not be written into the
    cache is its verified bytes instead of a path (with one :class:`DataCacheWarning` for all).
    """
    checksums = IDX_SOURCES[name][0]
    folders = search_folders(name, data_dir)
    found, unsaved = {}, []
    for filename, expected in checksums.items():
        for folder in folders:
            path = _find_in(folder, name, filename, expected)
            if path:
                found[filename] = path
                break
        else:
            payload, failures = _download(name, filename, expected) if download else (None, ())
            if payload is None:
                raise DataUnavailableError(_offline_message(name, folders, failures))
            target = cache_dir() / "data" / name / filename
            try:
                atomic_write_bytes(target, payload)
                found[filename] = target
            except OSError as err:  # read-only or full cache, a file where its folder should be
                found[filename] = payload
                unsaved.append(f"{target} ({err.strerror or err})")
    if unsaved:
        warnings.warn(
            f"The downloaded {name} files could not be written into the cache, so they are used from memory "
            f"this time and downloaded again next time: {'; '.join(unsaved)}. Set {CACHE_ENV} to a writable "
            f"folder, or {DATA_ENV} to a folder holding the files, to keep them.",
            DataCacheWarning,
            stacklevel=4,
        )
    return found


def read_idx(source):
    """Read a gzipped IDX file (the MNIST format) into a numpy array.

    ``source`` is the file's path, or its bytes (a download that could not be cached).
    """
    shown = "the downloaded file" if isinstance(source, bytes) else source
    fix = "Download it again." if isinstance(source, bytes) else _checksum_fix(source)
    try:
        if isinstance(source, bytes):
            raw = gzip.decompress(source)
        else:
            with gzip.open(source, "rb") as f:
                raw = f.read()
    except (OSError, EOFError) as err:
        raise ChecksumError(f"{shown} is not a readable gzip file ({err}). {fix}") from err
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if raw[2] != 0x08 or data.size != int(np.prod(shape)):
        raise ChecksumError(f"{shown} is not a valid unsigned-byte IDX file of shape {shape}. {fix}")
    return data.reshape(shape)


@functools.lru_cache(maxsize=2)
def _read_verified(files):
    """Decode verified files once per process; the arrays are read-only, so sharing is safe.

    ``files``: ``(filename, path or bytes, mtime)`` per file, so a changed file is read again.
    """
    sources = {f: source for f, source, _mtime in files}

    def images(f):
        x = read_idx(sources[f])
        return Images(x.reshape(len(x), -1), 255)

    def labels(f):
        y = read_idx(sources[f]).astype(np.int32)
        y.setflags(write=False)
        return y

    return (
        images("train-images-idx3-ubyte.gz"),
        labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"),
        labels("t10k-labels-idx1-ubyte.gz"),
    )


def _load_idx(name, data_dir, download):
    found = locate_idx_files(name, data_dir, download=download)
    key = tuple(sorted(
        (f, source, 0) if isinstance(source, bytes) else (f, str(source), source.stat().st_mtime_ns)
        for f, source in found.items()
    ))
    return Dataset(name, *_read_verified(key), (28, 28))


def load_digits(num_test=297):
    """scikit-learn's bundled 8x8 digits (1,797 images, grey levels 0..16), scaled to [0, 1].

    They have no published split: the last ``num_test`` images are the test set.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    levels = bunch.data.astype(np.uint8)
    y = bunch.target.astype(np.int32)
    return Dataset(
        "digits",
        Images(levels[:-num_test], 16),
        y[:-num_test],
        Images(levels[-num_test:], 16),
        y[-num_test:],
        (8, 8),
    )


def dataset_override():
    """The data set named by ``VAE_LITE_DATASET``, or None when it is unset or empty."""
    value = os.environ.get(DATASET_ENV, "").strip()
    if not value:
        return None
    _args.one_of(DATASET_ENV, value, LESSON_DATASETS, "Or leave it unset for MNIST.")
    return value


def load(name="mnist", data_dir=None, *, download=True, fallback=False):
    """Load a data set by name.

    Args:
        name: one of ``"digits"``, ``"mnist"``, ``"fashion_mnist"``. With the environment
            variable ``VAE_LITE_DATASET=digits`` set, ``"mnist"`` gives the 8x8 digits.
        data_dir: optional folder holding the IDX files (searched first).
        download: try the mirrors when the files are not on disk.
        fallback: when the files are unavailable, return the bundled digits instead of
            raising ``DataUnavailableError``, with a :class:`DatasetSubstitutedWarning`.

    Returns:
        a :class:`Dataset`. Whenever it holds the digits instead of the data set asked for
        (``VAE_LITE_DATASET=digits`` or ``fallback``), a :class:`DatasetSubstitutedWarning`
        whose message starts with ``NOTICE:`` says so (in a notebook: under the cell).
        Introduced in lesson 1.
    """
    _args.one_of("name", name, DATASETS, "These are the data sets vae-lite can load.")
    override = dataset_override()
    if override == "digits" and name == "mnist":
        warnings.warn(
            f"NOTICE: {DATASET_ENV}=digits, so this lesson uses the bundled 8x8 digits instead of "
            "MNIST. The numbers below will differ from the text, which quotes MNIST's.",
            DatasetSubstitutedWarning,
            stacklevel=2,
        )
        name = "digits"
    if name == "digits":
        return load_digits()
    try:
        return _load_idx(name, data_dir, download)
    except DataUnavailableError as err:
        if not fallback:
            raise
        warnings.warn(
            f"NOTICE: {name} is not available here, so this lesson uses the bundled 8x8 "
            f"digits instead. The numbers below will differ from the text.\n{err}",
            DatasetSubstitutedWarning,
            stacklevel=2,
        )
        return load_digits()


def _intensities(x):
    """``x`` checked as intensities in [0, 1] (a list or tuple of numbers becomes an array)."""
    x = _args.float_array("x", x) if isinstance(x, (list, tuple)) else x
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if not np.issubdtype(dtype, np.floating):
        _args.floating("x", x, "binarize needs intensities in [0, 1]: pass dataset.x_train[...] (already scaled) "
                       "or divide by the maximum level (e.g. x / 255).")
    values = _args.concrete(x)
    if values is not None and values.size:
        _args.in_range("x", values[~np.isnan(values)], 0, 1, "binarize needs intensities; grey levels 0-255 must be "
                       "divided by 255 first (x / 255).")
    _args.finite("x", values if values is not None else x, "Intensities must be numbers in [0, 1].")
    return x


def levels_of(x, name="Training images"):
    """``(levels, max_level)``: training images as the trainers hold them, the one level conversion.

    :class:`Images` give their uint8 levels and ``max_level`` (a quarter of float32's memory);
    other arrays must be ``(num_images, pixels)`` intensities in [0, 1] and are returned as float32
    with ``max_level = 1``. Used by ``training.fit`` and ``classifier.fit_classifier``; inside their
    compiled epochs only the current minibatch goes through :func:`intensities_of`.
    """
    if isinstance(x, Images):
        _args.nonempty_image_batch(name, x.levels)
        return x.levels, x.max_level
    x = np.asarray(x, dtype=np.float32)
    _args.nonempty_image_batch(name, x)
    _args.in_range(name, x, 0, 1, "Intensities must be finite and in [0, 1]; scale grey levels with x / 255.")
    return x, 1


def intensities_of(levels, max_level):
    """float32 intensities ``levels / max_level`` in [0, 1] (works on traced arrays, inside ``jax.jit``)."""
    return jnp.asarray(levels).astype(jnp.float32) / max_level


def binarize(key, x):
    """Dynamic binarisation: each pixel becomes 1 with probability equal to its intensity.

    Args:
        key: a ``jax.random`` key (use a fresh one every epoch).
        x: ``(..., pixels)`` intensities in [0, 1] (an array, or nested lists of numbers).

    Returns:
        float32 array of 0s and 1s, shaped like ``x``. Introduced in lesson 1.
    """
    _args.prng_key("key", key)
    x = _intensities(x)
    return jax.random.bernoulli(key, x).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("block", "max_level"))
def _binarize_blocks(key, x, block, max_level):
    """Binarise ``x`` (grey levels up to ``max_level``) block by block into one output buffer."""
    num_images = x.shape[0]

    def body(i, out):
        start = jnp.minimum(i * block, num_images - block)  # the last block may overlap the one before
        xb = intensities_of(jax.lax.dynamic_slice_in_dim(x, start, block), max_level)
        bits = jax.random.bernoulli(jax.random.fold_in(key, i), xb).astype(jnp.float32)
        return jax.lax.dynamic_update_slice_in_dim(out, bits, start, 0)

    return jax.lax.fori_loop(0, -(-num_images // block), body, jnp.zeros(x.shape, jnp.float32))


def binarize_fixed(x, seed=0):
    """Binarise once with a fixed seed, for evaluation that is comparable across runs.

    Works through ``x`` in blocks of ``BINARIZE_BLOCK`` rows inside one compiled loop, so
    binarising all of MNIST needs memory for the result and one block, not for several
    float32 copies of the whole set. :class:`Images` are binarised from their uint8 levels.

    Args:
        x: ``(num_images, pixels)`` intensities in [0, 1] (an array or :class:`Images`).
        seed: the binarisation's seed.

    Returns:
        ``(num_images, pixels)`` float32 jax array of 0s and 1s. Introduced in lesson 1.
    """
    if isinstance(x, Images):
        levels, max_level = x.levels, x.max_level
    else:
        levels, max_level = jnp.asarray(_intensities(x), jnp.float32), 1
    _args.nonempty_image_batch("x", levels)
    block = min(BINARIZE_BLOCK, levels.shape[0])
    return _binarize_blocks(jax.random.key(seed), levels, block=block, max_level=max_level)
