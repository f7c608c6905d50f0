"""vae-lite: an interactive teaching series on variational autoencoders.

Modules load on first use (``vae_lite.elbo``, ``from vae_lite import explorer``), so
``import vae_lite`` stays fast.

Core: ``distributions``, ``networks``, ``training``, ``checkpoints``, ``data``, ``plotting``, ``widgets``, ``grading``,
``classifier``, ``zoo`` (the shipped trained models).
Lessons: ``factorization`` (1), ``sampling`` and ``fixed_codes`` (2), ``posterior`` and ``naive_mc`` (3), ``elbo`` (4),
``reparam`` (5), ``beta_sweep`` (6: the KL weight's slider; lesson 6 trains a VAE with the core modules),
``inference`` and ``gaps`` (7), ``explorer`` (8).
"""

import importlib

__version__ = "0.2.0"

CORE = ("distributions", "networks", "training", "checkpoints", "data", "plotting", "widgets", "grading", "classifier",
        "zoo")
LESSONS = ("factorization", "sampling", "fixed_codes", "posterior", "naive_mc", "elbo", "reparam", "beta_sweep", "inference", "gaps",
           "explorer")
__all__ = [*CORE, *LESSONS, "__version__"]


def __getattr__(name):
    if name in CORE or name in LESSONS:
        return importlib.import_module(f"vae_lite.{name}")
    raise AttributeError(f"module 'vae_lite' has no attribute {name!r}")


def __dir__():
    return __all__
