"""Shared test set-up: JAX on the CPU, MNIST from the copy that ships with vae-lite.

Nothing here reads outside the checkout: the tests run on a fresh clone with nothing
configured, as a newcomer's would.
"""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def mnist_dir():
    """The folder with the four canonical MNIST files: the bundled copy."""
    from vae_lite import data

    return data.bundled_dir() / "mnist"


@pytest.fixture
def private_cache(monkeypatch, tmp_path):
    """An empty model cache of the test's own (models trained here never reach the user's cache)."""
    monkeypatch.setenv("VAE_LITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def digits():
    """The bundled 8x8 digits data set."""
    from vae_lite import data

    return data.load("digits")
