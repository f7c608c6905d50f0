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
