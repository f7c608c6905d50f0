"""nbval runs each lesson (``notebooks/*.ipynb``) with ``VAE_LITE_TRAINING=forbid``: the lessons must load their models.

Every model a lesson loads ships with vae-lite (``vae_lite/_models``), so on MNIST no lesson
trains; a lesson that would train (a configuration without its shipped model, e.g. after a
version change without ``make models``) fails at that cell with ``TrainingForbiddenError``.
nbval starts a lesson's kernel in the set-up of its first cell, and the kernel inherits this
environment; the teardown restores the test process's own.
"""

import os

import pytest

TRAINING_ENV = "VAE_LITE_TRAINING"  # vae_lite.checkpoints.TRAINING_ENV (not imported: keep JAX out of here)
_saved = pytest.StashKey()  # the test process's own value, restored after each lesson cell
TRAINS_LIVE = ()  # notebook names (without .ipynb) of lessons that train on purpose, in front of the student


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.path.suffix == ".ipynb" and item.path.stem not in TRAINS_LIVE:
        item.stash[_saved] = os.environ.get(TRAINING_ENV)
        os.environ[TRAINING_ENV] = "forbid"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    if _saved in item.stash:
        previous = item.stash[_saved]
        if previous is None:
            os.environ.pop(TRAINING_ENV, None)
        else:
            os.environ[TRAINING_ENV] = previous

