"""Shared test set-up: real MNIST from ../shared when present, JAX on the CPU."""

import os
from pathlib import Path

import pytest

_SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
if "VAE_LITE_DATA" not in os.environ and _SHARED_MNIST.is_dir():
    os.environ["VAE_LITE_DATA"] = str(_SHARED_MNIST)
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def mnist_dir():
    """The folder with the four canonical MNIST files, or skip."""
    folder = os.environ.get("VAE_LITE_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("MNIST files not available (set VAE_LITE_DATA)")
    return Path(folder)
