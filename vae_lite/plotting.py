"""Figures shared by the lessons: image grids and loss curves (core)."""

import matplotlib.pyplot as plt
import numpy as np


def image_grid(images, image_shape, *, ncols=10, ax=None, title=None, titles=None):
    """Show flat images ``(n, pixels)`` as a grid of ``image_shape`` tiles.

    Args:
        images: ``(n, pixels)`` or ``(n, height, width)`` values in [0, 1].
        image_shape: ``(height, width)`` of one image.
        ncols: tiles per row.
        ax: a matplotlib axis to draw in (a new figure otherwise).
        title: the axis title.
        titles: optional labels, one per tile, written under it.

    Returns:
        the axis. Introduced in lesson 1.
    """
    images = np.asarray(images).reshape(-1, *image_shape)
    n, (h, w) = len(images), image_shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    canvas = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1.0 * ncols, 12), min(1.0 * nrows, 12) + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if titles is not None:
        for i, label in enumerate(titles):
            r, c = divmod(i, ncols)
            ax.text(c * (w + 1) + w / 2, r * (h + 1) + h, str(label), ha="center", va="top", fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def plot_history(history, *, axes=None, title=None):
    """Plot ELBO, reconstruction and KL per epoch from a training history.

    Args:
        history: a dict with lists ``"elbo"``, ``"recon"``, ``"kl"`` (nats per image).
        axes: three matplotlib axes (new ones otherwise).

    Returns:
        the axes. Introduced in lesson 5.
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3))
    epochs = np.arange(1, len(history["elbo"]) + 1)
    labels = {"elbo": "ELBO (nats, higher is better)", "recon": "E[log p(x|z)] (nats)", "kl": "KL(q(z|x) || p(z)) (nats)"}
    for ax, name in zip(axes, ("elbo", "recon", "kl"), strict=True):
        ax.plot(epochs, history[name], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels[name])
        ax.grid(alpha=0.3)
    if title:
        axes[0].figure.suptitle(title)
    return axes
