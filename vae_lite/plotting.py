"""Figures shared by the lessons: image grids and loss curves (core)."""

import matplotlib.pyplot as plt
import numpy as np

from vae_lite import _args


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
        history: a dict with lists ``"elbo"``, ``"recon"``, ``"kl"`` (nats per image), the
            running means during each epoch; where it also has ``"train_elbo"`` and
            ``"test_elbo"`` (:func:`vae_lite.training.fit` with ``held_out``), the ELBO panel
            shows them too: the end-of-epoch ELBO on training and on held-out images.
        axes: three matplotlib axes (new ones otherwise).

    Returns:
        the axes. Introduced in lesson 6.
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3))
    epochs = np.arange(1, len(history["elbo"]) + 1)
    labels = {"elbo": "ELBO (nats, higher is better)", "recon": "E[log p(x|z)] (nats)", "kl": "KL(q(z|x) || p(z)) (nats)"}
    monitored = "train_elbo" in history and "test_elbo" in history
    for ax, name in zip(axes, ("elbo", "recon", "kl"), strict=True):
        ax.plot(epochs, history[name], marker="o", ms=3, label="running mean during the epoch (training)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels[name])
        ax.grid(alpha=0.3)
    if monitored:
        axes[0].plot(epochs, history["train_elbo"], color="C2", label="end of epoch, training images")
        axes[0].plot(epochs, history["test_elbo"], color="C3", label="end of epoch, test images")
        axes[0].legend(fontsize=7, loc="lower right")
    if title:
        axes[0].figure.suptitle(title)
    return axes


def plate_diagram(nodes, edges, plates, *, ax=None, title=None):
    """Draw a graphical model in plate notation: circles for variables, arrows, boxed plates.

    Args:
        nodes: ``{name: (x, y, label, observed)}``: a circle at (x, y) with a LaTeX label, shaded
            when ``observed``; a ``label`` starting with ``"."`` is drawn as a small dot (a fixed
            parameter) with the rest of the label beside it.
        edges: ``[(parent, child), ...]`` arrows between node names; a third element
            ``{"dashed": True, "bend": 0.4}`` draws the arrow dashed and red (an approximate
            posterior's dependence, as in lesson 7) and/or curved (``bend``: matplotlib's
            ``arc3`` radius, negative to bend the other way).
        plates: ``[(x0, y0, x1, y1, label), ...]`` rectangles; the label goes in the lower-right
            corner (e.g. ``r"$i = 1..N$"``).
        ax: a matplotlib axis (a new one otherwise).
        title: the axis title.

    Returns:
        the axis. Introduced in lesson 1.
    """
    from matplotlib.patches import Circle, FancyArrowPatch, Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 3))
    radius = 0.32
    for x0, y0, x1, y1, label in plates:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, ec="0.3"))
        ax.text(x1 - 0.08, y0 + 0.08, label, ha="right", va="bottom", fontsize=9)
    for x, y, label, observed in nodes.values():
        if label.startswith("."):
            ax.plot([x], [y], "ko", ms=5)
            ax.text(x + 0.15, y + 0.1, label[1:], ha="left", va="bottom", fontsize=12)
        else:
            ax.add_patch(Circle((x, y), radius, fc="0.8" if observed else "white", ec="k", lw=1.2))
            ax.text(x, y, label, ha="center", va="center", fontsize=12)
    for edge in edges:
        parent, child, style = (*edge, {}) if len(edge) == 2 else edge
        fix = "an edge is (parent, child) or (parent, child, {'dashed': bool, 'bend': float})"
        _args.names_in("the edge's nodes", (parent, child), nodes, fix)
        _args.names_in("the edge's style keys", list(style), ("dashed", "bend"), fix)
        (xa, ya, la, _), (xb, yb, _, _) = nodes[parent], nodes[child]
        dx, dy = xb - xa, yb - ya
        length = float(np.hypot(dx, dy))
        start = 0.06 if la.startswith(".") else radius
        ax.add_patch(
            FancyArrowPatch(
                (xa + dx * start / length, ya + dy * start / length),
                (xb - dx * radius / length, yb - dy * radius / length),
                arrowstyle="-|>", mutation_scale=12, lw=1.2,
                color="tab:red" if style.get("dashed") else "k",
                linestyle="--" if style.get("dashed") else "-",
                connectionstyle=f"arc3,rad={float(style.get('bend', 0.0))}",
            )
        )
    xs = [v[0] for v in nodes.values()] + [p[0] for p in plates] + [p[2] for p in plates]
    ys = [v[1] for v in nodes.values()] + [p[1] for p in plates] + [p[3] for p in plates]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
