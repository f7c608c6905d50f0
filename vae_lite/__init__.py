"""vae-lite: an interactive teaching series on variational autoencoders."""

__version__ = "0.1.0"

from vae_lite import data, distributions, networks, plotting, training  # noqa: E402

__all__ = ["data", "distributions", "networks", "plotting", "training", "__version__"]
