r"""The inference gaps, live: one image's exact posterior, the encoder's q and the refined q (lesson 7).

For a VAE with a 2-d latent the exact posterior p(z | x) can be computed on a grid
(:mod:`vae_lite.posterior`), so the two gaps of lesson 7 can be *seen* for one image:

.. math::
    \log p(x) - \mathrm{ELBO}(q_\phi)
      = \underbrace{\log p(x) - \mathrm{ELBO}(q^*)}_{\text{approximation gap}}
      + \underbrace{\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q_\phi)}_{\text{amortization gap}}

with q_φ the encoder's diagonal Gaussian and q* the best diagonal Gaussian for this image.
:func:`refine_on_grid` starts at q_φ and takes Adam steps on KL(q ‖ p(z|x)), computed by
quadrature on the image's grid (deterministic, no sampling), keeping q after every step up to
:data:`NUM_STEPS`; the last is q*. :func:`gap_widget` shows them: pick an image, move K.
"""

from typing import NamedTuple

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_lite import _args
from vae_lite.posterior import make_grid
from vae_lite.widgets import Frames, View

NUM_STEPS = 500
"""Refinement steps taken; q after every step 0 (the encoder's q) ... NUM_STEPS (taken as q*) is kept."""


class ImageGrids(NamedTuple):
    """Per image i: a regular 2-d grid and log p(x_i, z) on it."""

    axes: jax.Array  # (N, 2, G): each image's two grid axes
    points: jax.Array  # (N, G*G, 2): the grid points, make_grid order
    cell_volume: jax.Array  # (N,): area of one grid cell
    log_joint: jax.Array  # (N, G*G): log p(x_i, z_g)


class Gaps(NamedTuple):
    """Everything the picture shows, for N images and K = 0 ... :data:`NUM_STEPS` refinement steps."""

    grids: ImageGrids
    log_evidence: np.ndarray  # (N,): log p(x) = log sum_g p(x, z_g) * cell, by quadrature
    mu: np.ndarray  # (N, NUM_STEPS + 1, 2): q's mean after K steps (K = 0: the encoder's)
    log_var: np.ndarray  # (N, NUM_STEPS + 1, 2): q's log-variance after K steps
    elbo: np.ndarray  # (N, NUM_STEPS + 1): ELBO(q) = log p(x) - KL(q || p(z|x)), both on the grid

    @property
    def approximation_gap(self):
        """log p(x) - ELBO(q*), ``(N,)``: what no diagonal Gaussian can close."""
        return self.log_evidence - self.elbo[:, -1]

    @property
    def amortization_gap(self):
        """ELBO(q*) - ELBO(q_phi), ``(N,)``: what the encoder loses by sharing one network across images."""
        return self.elbo[:, -1] - self.elbo[:, 0]


def decoder_grids(decoder, x, mu, log_var, *, num=61, width=10.0):
    """log p(x_i, z) = log p(z) + log p(x_i | z) on a ``num x num`` grid per image, for a 2-d latent.

    Each grid is centred on the encoder's mean and spans ``width`` encoder standard deviations
    each way (at least 0.5), as lesson 4's grids do, so it covers that q and, for the images
    of the lessons, the posterior (check: the posterior's mass at the grid's edge is tiny).

    Args:
        decoder: ``z (n, 2) -> logits (n, pixels)`` (an NNX decoder).
        x: ``(N, pixels)`` binary images; ``mu``, ``log_var``: ``(N, 2)``, the encoder's q for each.
    """
    num = _args.count("num", num, minimum=3)
    _args.image_batch("x", x)
    for name, a in (("mu", mu), ("log_var", log_var)):
        _args.shape(name, a, (x.shape[0], 2), f"One q per image of x {jnp.shape(x)} for a 2-d latent: the encoder's (N, 2).")
    half = jnp.maximum(width * jnp.exp(0.5 * log_var), 0.5)  # (N, 2)
    steps = jnp.linspace(-1.0, 1.0, num)
    axes = mu[:, :, None] + half[:, :, None] * steps  # (N, 2, G)
    points = jax.vmap(lambda a: make_grid([a[0], a[1]]))(axes)  # (N, G*G, 2)
    cell_volume = jnp.prod(axes[:, :, 1] - axes[:, :, 0], axis=1)

    def one_image(args):
        image, z = args
        logits = decoder(z)
        log_lik = jnp.sum(image * logits - jax.nn.softplus(logits), axis=-1)
        return log_lik - 0.5 * jnp.sum(z**2, axis=-1) - jnp.log(2 * jnp.pi)

    log_joint = jax.lax.map(one_image, (jnp.asarray(x, jnp.float32), points))  # one image's grid at a time
    return ImageGrids(axes, points, cell_volume, log_joint)


def _kl_on_grid(q, points, log_post, log_cell):
    """KL(q || p) of the two distributions discretised on the grid (q normalised there too): >= 0."""
    mu, log_var = q
    log_q = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + log_var + (points - mu) ** 2 / jnp.exp(log_var), axis=-1)
    log_q = log_q - jax.nn.logsumexp(log_q + log_cell)  # normalised: sum_g q_g * cell = 1
    return jnp.sum(jnp.exp(log_q + log_cell) * (log_q - log_post))


@jax.jit
def _refine(points, log_joint, cell_volume, mu, log_var, learning_rate):
    log_cell = jnp.log(cell_volume)
    log_evidence = jax.nn.logsumexp(log_joint + log_cell)
    log_post = log_joint - log_evidence
    optimizer = optax.adam(learning_rate)
    kl = jax.value_and_grad(_kl_on_grid)

    def step(carry, _):
        q, state = carry
        value, grads = kl(q, points, log_post, log_cell)
        updates, state = optimizer.update(grads, state, q)
        return (optax.apply_updates(q, updates), state), (q, value)

    q0 = (mu, log_var)
    (q_last, _), (path, kls) = jax.lax.scan(step, (q0, optimizer.init(q0)), None, length=NUM_STEPS)
    kl_last = _kl_on_grid(q_last, points, log_post, log_cell)
    mus = jnp.concatenate([path[0], q_last[0][None]])  # q after 0, 1, ..., NUM_STEPS steps
    log_vars = jnp.concatenate([path[1], q_last[1][None]])
    return log_evidence, mus, log_vars, log_evidence - jnp.concatenate([kls, kl_last[None]])


def refine_on_grid(grids, mu, log_var, learning_rate=0.05):
    """Adam on KL(q || p(z|x)) by quadrature, from each image's ``(mu, log_var)`` (the encoder's q).

    Returns a :class:`Gaps`: q and its ELBO after K = 0 ... :data:`NUM_STEPS` steps, per image, and log p(x).
    """
    out = jax.vmap(_refine, in_axes=(0, 0, 0, 0, 0, None))(
        grids.points, grids.log_joint, grids.cell_volume, jnp.asarray(mu), jnp.asarray(log_var), learning_rate)
    log_evidence, mus, log_vars, elbos = (np.asarray(a, np.float64) for a in out)
    return Gaps(grids, log_evidence, mus, log_vars, elbos)


def _ellipse(mu, log_var):
    """The 2-standard-deviation ellipse of a diagonal Gaussian in 2-d, as (z1, z2) arrays."""
    t = np.linspace(0, 2 * np.pi, 90)
    return mu[0] + 2 * np.exp(0.5 * log_var[0]) * np.cos(t), mu[1] + 2 * np.exp(0.5 * log_var[1]) * np.sin(t)


def draw_image(ax, gaps, i, steps=None):
    """Draw image ``i`` of ``gaps`` on a matplotlib ``ax``: p(z | x) on the grid (grey), the encoder's q
    (orange, dashed) and q* (blue, dotted); with ``steps`` (0 ... :data:`NUM_STEPS`) also q after that many
    steps (blue). Returns the line of q after K steps (empty when ``steps`` is None), for a caller to move."""
    ax.clear()
    axes = np.asarray(gaps.grids.axes[i])
    num = axes.shape[1]
    density = np.exp(np.asarray(gaps.grids.log_joint[i], np.float64) - gaps.log_evidence[i]).reshape(num, num)
    ax.contourf(axes[0], axes[1], density.T, levels=12, cmap="Greys")
    ax.plot(*_ellipse(gaps.mu[i, 0], gaps.log_var[i, 0]), "C1--", lw=1.5, label="encoder's q (K = 0)")
    ax.plot(*_ellipse(gaps.mu[i, -1], gaps.log_var[i, -1]), "C0:", lw=1, label=f"q* (K = {NUM_STEPS})")
    k = steps
    (line,) = ax.plot(*([], []) if k is None else _ellipse(gaps.mu[i, k], gaps.log_var[i, k]), "C0", lw=2,
                      animated=steps is None, label="q after K steps")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(loc="upper right", fontsize=7)
    return line


class GapWidget(View):
    """One image's exact posterior (grey), the encoder's q (orange, dashed) and q after K steps (blue).

    Built by :func:`gap_widget`; ``.index`` and ``.steps`` are the controls' values, and ``.readout``
    holds the numbers shown (log p(x), ELBO of q_phi and of q_K, the two gaps, the share closed).
    """

    def __init__(self, gaps, labels=None, index=0, steps=0):
        self.gaps = gaps
        num_images = len(gaps.log_evidence)
        labels = list(labels) if labels is not None else [f"image {i}" for i in range(num_images)]
        _args.equal("the number of labels", len(labels), num_images, "Pass one label per image.")
        index = _args.index("index", index, num_images)
        steps = _args.index("steps", steps, NUM_STEPS + 1, what="refinement steps kept (K = 0 is the encoder's q)")
        options = [(f"{label}: amortization gap {a:.2f}, approximation gap {b:.2f}", i) for i, (label, a, b)
                   in enumerate(zip(labels, gaps.amortization_gap, gaps.approximation_gap, strict=True))]
        self.image_menu = widgets.Dropdown(options=options, value=int(index), description="image",
                                           layout=widgets.Layout(width="520px"))
        self.step_slider = widgets.IntSlider(value=int(steps), min=0, max=NUM_STEPS, description="K steps",
                                             continuous_update=True)
        self.text, self.gap_text = widgets.HTML(), widgets.HTML()
        self._figure()
        self.image_menu.observe(self._redraw_image, names="value")
        self.step_slider.observe(lambda change: self.refresh(), names="value")
        self._init_view([self.image_menu, self.step_slider, self.text, self.gap_text], beside=False)

    @property
    def index(self):
        return self.image_menu.value

    @property
    def steps(self):
        return self.step_slider.value

    def _figure(self):
        self.fig = Figure(figsize=(4.6, 4.0), dpi=80)
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()
        self.background = None

    def _redraw_image(self, change=None):
        self.background = None
        self.refresh()

    def _draw_background(self):
        self.q_line = draw_image(self.ax, self.gaps, self.index)
        self.ax.set_title("p(z | x) on the grid (grey); ellipses: 2 standard deviations", fontsize=9)
        self.fig.tight_layout()
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)

    def picture(self):
        g, i, k = self.gaps, self.index, self.steps
        if self.background is None:
            self._draw_background()
        self.canvas.restore_region(self.background)
        self.q_line.set_data(*_ellipse(g.mu[i, k], g.log_var[i, k]))
        self.ax.draw_artist(self.q_line)
        amortization, approximation = g.amortization_gap[i], g.approximation_gap[i]
        closed = (g.elbo[i, k] - g.elbo[i, 0]) / amortization if amortization > 1e-9 else 1.0
        self.readout = {"log_evidence": g.log_evidence[i], "elbo_encoder": g.elbo[i, 0], "elbo_k": g.elbo[i, k],
                        "amortization_gap": amortization, "approximation_gap": approximation, "closed": closed}
        self.text.value = (f"log p(x) = {g.log_evidence[i]:.2f}, ELBO(encoder's q) = {g.elbo[i, 0]:.2f}, "
                           f"ELBO(q after {self.steps} steps) = {g.elbo[i, k]:.2f} (nats, on the grid)")
        self.gap_text.value = (f"amortization gap {amortization:.2f}, {100 * closed:.0f} % of it closed after "
                               f"{self.steps} steps; approximation gap {approximation:.2f} (left for any diagonal "
                               "Gaussian)")
        return np.asarray(self.canvas.buffer_rgba())[..., :3]


def gap_widget(gaps, labels=None, *, index=0, steps=0):
    """A dropdown over the images of ``gaps`` (a :class:`Gaps`) and a slider over the refinement steps K.

    Shows the exact posterior, the encoder's q, q after K steps and q*, with log p(x), the ELBOs
    and the two gaps of the chosen image. Introduced in lesson 7.
    """
    return GapWidget(gaps, labels, index, steps)


FRAME_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, NUM_STEPS)
"""The refinement steps K that :func:`gap_frames` precomputes."""


def _frame(gaps, i, k, label):
    """The picture of image ``i`` after ``k`` steps with its readouts under it, small, as an RGB array."""
    fig = Figure(figsize=(3.8, 4.0), dpi=72)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.16, 0.3, 0.8, 0.62))
    draw_image(ax, gaps, i, steps=k)
    ax.legend(loc="upper right", fontsize=6)
    ax.set_title(f"{label}, K = {k}", fontsize=8)
    ax.tick_params(labelsize=7)
    amortization = gaps.amortization_gap[i]
    closed = (gaps.elbo[i, k] - gaps.elbo[i, 0]) / amortization if amortization > 1e-9 else 1.0
    fig.text(0.03, 0.03, f"log p(x) = {gaps.log_evidence[i]:.2f}, ELBO(q after {k} steps) = {gaps.elbo[i, k]:.2f}\n"
             f"amortization gap {amortization:.2f} nats, {100 * closed:.0f} % closed\n"
             f"approximation gap {gaps.approximation_gap[i]:.2f} nats", fontsize=8, va="bottom")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def gap_frames(gaps, labels=None, *, images=None, steps=FRAME_STEPS, index=0):
    """The gap picture with every frame precomputed, so its sliders move without a kernel. Lesson 7.

    One slider picks an image (``images``: indices into ``gaps``, at most 12; by default the first
    12), the other K among ``steps``; each frame is :func:`draw_image`'s picture with its readouts
    (log p(x), the ELBO after K steps, both gaps and the share of the amortization gap closed) drawn
    under it, so a frame is one stored picture; ``index``: the position in ``images`` shown first.
    A :class:`vae_lite.widgets.Frames`.
    """
    num_images = len(gaps.log_evidence)
    labels = list(labels) if labels is not None else [f"image {i}" for i in range(num_images)]
    _args.equal("the number of labels", len(labels), num_images, "Pass one label per image.")
    images = list(range(min(num_images, 12))) if images is None else [_args.index("images", i, num_images)
                                                                       for i in images]
    _args.at_most("the number of images", len(images), 12, "each image stores one picture per K; pick at most 12.")
    steps = [_args.index("steps", k, NUM_STEPS + 1, what="refinement steps kept") for k in steps]
    frames = [[_frame(gaps, i, k, labels[i]) for k in steps] for i in images]  # readouts drawn into each frame
    return Frames(frames, [("image", [labels[i] for i in images]), ("K steps", [str(k) for k in steps])],
                  index=(_args.index("index", index, len(images)), 0), scale=1)
