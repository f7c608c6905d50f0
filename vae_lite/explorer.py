"""Live latent-space widgets: sliders that decode instantly (lesson 8).

The maths of lesson 8 (linear and spherical interpolation, the Normal-quantile grid, ranking
latent dimensions by KL) and its four widgets: latent sliders, encode-and-perturb,
interpolation and the 2-D manifold. The decoder is split from its NNX module once and
compiled (``jax.jit``) for a fixed input shape, then warmed up before the widget is shown, so
a slider change costs one small matrix product plus a PNG encoding (a few milliseconds).
Each builder returns an object with ``.widget`` (to display) and its state (``.z``, the
current code, and ``.image``, the current decoded image in [0, 1]), so tests and notebooks
can drive it from Python by setting slider values. The picture plumbing they share
(:class:`vae_lite.widgets.View`) lives in :mod:`vae_lite.widgets`, with lesson 4's ELBO widget.
"""

import functools
import math

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_lite import _args
from vae_lite.distributions import kl_normal_std
from vae_lite.widgets import Frames, View, side_by_side, slider

# ---------------------------------------------------------------- pure helpers


def _path_arguments(z0, z1, t):
    """``(z0, z1, t)`` checked: two codes ``(d,)`` and a number or ``(T,)`` positions."""
    z0, z1, t = _args.float_array("z0", z0), _args.float_array("z1", z1), jnp.asarray(t)
    _args.ndim("z0", z0, 1, "Pass one code (d,); for several paths use jax.vmap.")
    _args.same_shape("z0", z0, "z1", z1, "Both ends are codes of the same model.")
    if jnp.ndim(t) > 1:
        _args.ndim("t", t, 1, "Pass one position t in [0, 1] or a 1-D array of them, e.g. jnp.linspace(0, 1, 8).")
    return z0, z1, t


def interpolate(z0, z1, t):
    """Linear interpolation ``(1 - t) z0 + t z1``.

    Args:
        z0, z1: ``(d,)`` codes.
        t: one position in [0, 1] (``t = 0`` gives ``z0``), or ``(T,)`` positions.

    Returns:
        ``(d,)`` for one number ``t``, ``(T, d)`` for ``(T,)`` positions (as NumPy broadcasting
        reads the formula). Introduced in lesson 8 (exercise ex08_interpolate).
    """
    return _interpolate(*_path_arguments(z0, z1, t))


def slerp(z0, z1, t):
    r"""Spherical interpolation: along the great circle, radius interpolated linearly.

    .. math:: z(t) = \frac{\sin((1-t)\theta)}{\sin\theta} z_0 + \frac{\sin(t\theta)}{\sin\theta} z_1,
        \quad \cos\theta = \frac{z_0 \cdot z_1}{|z_0| |z_1|}

    Typical codes of a d-dimensional unit Gaussian lie near the sphere of radius sqrt(d);
    the straight line between two of them passes closer to the origin, the great circle
    does not. Shapes as in :func:`interpolate` (one number t gives one code); falls back to
    it for (anti)parallel codes. Introduced in lesson 8.
    """
    return _slerp(*_path_arguments(z0, z1, t))


# The pure helpers are jitted: one compilation per shape instead of one per primitive op.
@jax.jit
def _interpolate(z0, z1, t):
    t = t[..., None]  # () -> (1,): one code; (T,) -> (T, 1): T codes
    return (1 - t) * z0 + t * z1


@jax.jit
def _slerp(z0, z1, t):
    n0, n1 = jnp.linalg.norm(z0), jnp.linalg.norm(z1)
    cos = jnp.clip(z0 @ z1 / jnp.maximum(n0 * n1, 1e-12), -1.0, 1.0)
    theta = jnp.arccos(cos)
    safe = jnp.where(jnp.sin(theta) > 1e-6, jnp.sin(theta), 1.0)
    u0, u1 = z0 / jnp.maximum(n0, 1e-12), z1 / jnp.maximum(n1, 1e-12)
    s = t[..., None]
    direction = (jnp.sin((1 - s) * theta) * u0 + jnp.sin(s * theta) * u1) / safe
    radius = (1 - s) * n0 + s * n1
    return jnp.where(jnp.sin(theta) > 1e-6, radius * direction, _interpolate(z0, z1, t))


@functools.partial(jax.jit, static_argnums=0)
def inverse_cdf_grid(num_points):
    r"""Normal quantiles :math:`\Phi^{-1}((i + 1/2) / n)`, i = 0..n-1, shape ``(num_points,)``.

    Equal steps in probability, not in z: each grid cell holds the same prior mass.
    Introduced in lesson 8 (exercise ex08_inverse_cdf).
    """
    num_points = _args.count("num_points", num_points)
    return jax.scipy.stats.norm.ppf((jnp.arange(num_points) + 0.5) / num_points)


def compile_decode(decoder):
    """Split an NNX decoder once and ``jax.jit`` a pure ``z (n, d) -> pixel probabilities (n, D)``.

    The parameters are an argument of the compiled function (not baked in as constants).
    Each distinct batch size compiles once; call it once to warm up before showing a widget.
    """
    graphdef, state = nnx.split(decoder)

    @jax.jit
    def decode(state, z):
        return jax.nn.sigmoid(nnx.merge(graphdef, state)(z))

    return lambda z: np.asarray(decode(state, jnp.asarray(z, jnp.float32)))


@nnx.jit  # compiled once per architecture and batch shape, whatever the model's weights
def _codes(model, x):
    return model.code(x)


def encode_means(model, x):
    """Posterior means ``(n, d)`` of a VAE (or the codes of a plain autoencoder) for images ``x (n, D)``."""
    return np.asarray(_codes(model, jnp.asarray(x, jnp.float32)))


def dimension_order(model, x):
    """Latent dimensions sorted by average KL(q(z_j|x) || N(0, 1)) over images ``x``, largest first.

    Returns ``(order (d,), kl_per_dim (d,))``; dimensions with ~0 nats are unused by the model.
    """
    mu, log_var = model.encoder(jnp.asarray(x, jnp.float32))
    kl = np.asarray(jnp.mean(kl_normal_std(mu[..., None], log_var[..., None]), axis=0))  # (d,) per dimension
    return np.argsort(-kl, kind="stable"), kl


# ---------------------------------------------------------------- latent sliders


class LatentSliders(View):
    """Sliders over chosen latent dimensions; the others stay fixed at ``base``.

    Attributes:
        sliders: one ``FloatSlider`` per dimension in ``dims`` (values clamped to ±limit).
        z: the current code ``(d,)``; image: the decoded image ``(h, w)`` in [0, 1].
    """

    def __init__(self, decode, base, dims, image_shape, *, limit=3.0, kl=None, extra=()):
        self.decode, self.image_shape, self.dims = decode, tuple(image_shape), [int(i) for i in dims]
        self.base = _args.code("base", base, len(base))
        limit = _args.number("limit", limit, positive=True)
        self.sliders = []
        for i in self.dims:
            label = f"z[{i}]" if kl is None else f"z[{i}] ({kl[i]:.1f} nats)"
            s = slider(label, self.base[i], limit)
            s.observe(self._guard, names="value")
            self.sliders.append(s)
        self.extra = list(extra)
        self._init_view([*self.extra, widgets.VBox(self.sliders)])

    @property
    def z(self):
        z = self.base.copy()
        z[self.dims] = [s.value for s in self.sliders]
        return z

    def set_code(self, z):
        """Set the fixed code and every slider to ``z (d,)`` (slider values clamped), one redraw."""
        self.base = _args.code("z", z, len(self.base))
        self._hold = True
        try:
            for i, slider in zip(self.dims, self.sliders, strict=True):
                slider.value = float(np.clip(self.base[i], slider.min, slider.max))
        finally:
            self._hold = False
        self.refresh()

    def picture(self):
        self.image = self.decode(self.z[None])[0].reshape(self.image_shape)
        return self.image


def latent_sliders(model, x, image_shape, *, num_sliders=8, limit=3.0):
    """Sliders for the ``num_sliders`` latent dimensions with the largest average KL on images ``x``.

    The other dimensions stay at 0 (the prior mean). Introduced in lesson 8.

    Args:
        model: a trained :class:`vae_lite.networks.VAE`.
        x: ``(n, D)`` images used to rank dimensions (a few hundred test images suffice).
        image_shape: ``(h, w)``.
        num_sliders: how many dimensions get a slider.
        limit: each slider spans ``[-limit, limit]`` (a number > 0; the prior's mass is within ±3).
    """
    order, kl = dimension_order(model, x)
    decode = compile_decode(model.decoder)
    _args.image_shape(image_shape, model.num_pixels)
    num_sliders = _args.count("num_sliders", num_sliders)
    return LatentSliders(decode, np.zeros(model.latent_dim), order[:num_sliders], image_shape, limit=limit, kl=kl)


class EncodePerturb(LatentSliders):
    """Pick a test image; the sliders start at its posterior mean; original next to decoded."""

    def __init__(self, decode, means, x, image_shape, dims, *, labels=None, index=0, limit=4.0, kl=None):
        self.means, self.x = means, np.asarray(x)
        self.picker = widgets.BoundedIntText(value=index, min=0, max=len(x) - 1, description="test image",
                                             continuous_update=False)
        extra = [self.picker]
        if labels is not None:
            firsts = {int(d): int(np.flatnonzero(labels == d)[0]) for d in np.unique(labels)}
            self.digit = widgets.Dropdown(options=[(f"first {d}", i) for d, i in firsts.items()],
                                          value=None, description="or digit")
            self.digit.observe(self._pick_digit, names="value")
            extra.append(self.digit)
        super().__init__(decode, means[index], dims, image_shape, limit=limit, kl=kl, extra=extra)
        self.picker.observe(lambda c: self.set_code(self.means[c["new"]]), names="value")

    def _pick_digit(self, change):
        if change["new"] is not None:
            self.picker.value = change["new"]

    @property
    def original(self):
        return self.x[self.picker.value].reshape(self.image_shape)

    def picture(self):
        super().picture()
        return side_by_side([self.original, self.image])


def encode_and_perturb(model, x, image_shape, *, labels=None, index=0, num_sliders=8, limit=4.0):
    """Encode test image ``x[index]``, start the sliders at its posterior mean, show both images.

    Args as for :func:`latent_sliders`, plus ``labels (n,)`` for a digit dropdown. Lesson 8.
    """
    order, kl = dimension_order(model, x[:1000])
    decode = compile_decode(model.decoder)
    _args.image_shape(image_shape, model.num_pixels)
    _args.index("index", index, len(x))
    num_sliders = _args.count("num_sliders", num_sliders)
    return EncodePerturb(decode, encode_means(model, x), x, image_shape, order[:num_sliders],
                         labels=labels, index=index, limit=limit, kl=kl)


# ---------------------------------------------------------------- interpolation


class Interpolation(View):
    """Slider t in [0, 1] between the codes of two images: image A, decoded z(t), image B."""

    paths = {"linear": interpolate, "spherical": slerp}

    def __init__(self, decode, z_a, z_b, x_a, x_b, image_shape):
        self.decode, self.image_shape = decode, tuple(image_shape)
        self.z_a, self.z_b = _args.code("z_a", z_a, len(z_a)), _args.code("z_b", z_b, len(z_a))
        self.x_a, self.x_b = np.asarray(x_a).reshape(image_shape), np.asarray(x_b).reshape(image_shape)
        self.t = widgets.FloatSlider(0.5, min=0, max=1, step=0.01, description="t", continuous_update=True)
        self.path = widgets.ToggleButtons(options=list(self.paths), description="path")
        self.t.observe(self._guard, names="value")
        self.path.observe(lambda _: self.refresh(), names="value")
        self._init_view([self.t, self.path], beside=False)

    @property
    def z(self):
        return np.asarray(self.paths[self.path.value](self.z_a, self.z_b, jnp.array([self.t.value])))[0]

    def picture(self):
        self.image = self.decode(self.z[None])[0].reshape(self.image_shape)
        return side_by_side([self.x_a, self.image, self.x_b])


def interpolation(model, x, image_shape, *, index_a=0, index_b=1):
    """Interpolate between the posterior means of ``x[index_a]`` and ``x[index_b]``. Lesson 8."""
    _args.image_shape(image_shape, model.num_pixels)
    index_a, index_b = _args.index("index_a", index_a, len(x)), _args.index("index_b", index_b, len(x))
    means = encode_means(model, x[np.array([index_a, index_b])])
    decode = compile_decode(model.decoder)
    return Interpolation(decode, means[0], means[1], x[index_a], x[index_b], image_shape)


# ---------------------------------------------------------------- 2-D manifold


class Manifold(View):
    """A 2-d model's decoded grid at Normal quantiles, the slider point marked, its decode beside it."""

    target = 400

    def __init__(self, decode, image_shape, *, num_points=15, limit=3.0):
        self.decode, self.image_shape, self.num_points = decode, tuple(image_shape), num_points
        limit = _args.number("limit", limit, positive=True)
        h, w = self.image_shape
        q = np.asarray(inverse_cdf_grid(num_points))
        z1, z2 = np.meshgrid(q, q[::-1])  # rows: z2 from high (top) to low; columns: z1
        tiles = decode(np.stack([z1.ravel(), z2.ravel()], -1)).reshape(num_points, num_points, h, w)
        self.grid_image = tiles.transpose(0, 2, 1, 3).reshape(num_points * h, num_points * w)
        self.sliders = [slider(f"z[{i}]", 0.0, limit) for i in range(2)]
        for s in self.sliders:
            s.observe(self._guard, names="value")
        self._init_view([widgets.HBox(self.sliders)], beside=False)

    @property
    def z(self):
        return np.array([s.value for s in self.sliders], np.float32)

    def marker_position(self):
        """Pixel ``(column, row)`` of ``z`` on the grid image: cell i's centre is Phi^{-1}((i + 1/2)/n)."""
        cdf = [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in self.z]  # Phi, without a JAX dispatch
        h, w = self.image_shape
        return cdf[0] * self.num_points * w, (1 - cdf[1]) * self.num_points * h

    def picture(self):
        self.image = self.decode(self.z[None])[0].reshape(self.image_shape)
        w, (gh, gw) = self.image_shape[1], self.grid_image.shape
        big = np.kron(self.image, np.ones((self.num_points // 3, self.num_points // 3)))[:gh]
        canvas = np.zeros((gh, gw + w + big.shape[1]), np.float32)
        canvas[:, :gw] = self.grid_image
        canvas[: big.shape[0], -big.shape[1] :] = big
        return canvas

    def marker(self):
        """A red cross on the grid at the current code."""
        gh, gw = self.grid_image.shape
        mask = np.zeros((gh, gw + self.image_shape[1] + (self.num_points // 3) * self.image_shape[1]), bool)
        col, row = self.marker_position()
        col, row = int(np.clip(col, 1, gw - 2)), int(np.clip(row, 1, gh - 2))
        r = max(self.image_shape[1] // 3, 3)
        mask[max(row - r, 0) : row + r, col - 1 : col + 1] = True
        mask[row - 1 : row + 1, max(col - r, 0) : col + r] = True
        return mask


def manifold(model, image_shape, *, num_points=15, limit=3.0):
    """The decoded 2-D latent manifold of a ``latent_dim=2`` model, with a movable marked point. Lesson 8."""
    _args.equal("the model's latent_dim", model.latent_dim, 2, "manifold draws a 2-d latent space: pass a "
                "model trained with latent_dim=2.")
    _args.image_shape(image_shape, model.num_pixels)
    num_points = _args.count("num_points", num_points, minimum=3)
    _args.at_most("num_points", num_points, 40, f"it decodes {num_points}**2 images; use at most 40 (15 is plenty).")
    return Manifold(compile_decode(model.decoder), image_shape, num_points=num_points, limit=limit)


# ---------------------------------------------------------------- the same walks, precomputed (no kernel)


def _locator(shape, position, num_points):
    """A small map of the grid, ``shape`` pixels, with the grid cell ``position = (column, row)`` filled in."""
    h, w = shape
    canvas = np.zeros(shape, np.float32)
    canvas[0, :] = canvas[-1, :] = canvas[:, 0] = canvas[:, -1] = 0.35  # the frame of the square [-3, 3]^2
    cell_h, cell_w = (h - 2) / num_points, (w - 2) / num_points
    col, row = position
    top, left = 1 + int(row * cell_h), 1 + int(col * cell_w)
    canvas[top : top + max(2, round(cell_h)), left : left + max(2, round(cell_w))] = 1.0
    return canvas


def manifold_frames(model, image_shape, *, num_points=15):
    """The 2-d manifold walk with every frame precomputed, so its sliders move without a kernel. Lesson 8.

    Two sliders pick a code on the ``num_points x num_points`` grid of Normal quantiles
    (:func:`inverse_cdf_grid`: equal prior mass per cell); the frame shows the decode at that code,
    and beside it a map of the grid with the chosen cell filled in. A :class:`vae_lite.widgets.Frames`.
    """
    _args.equal("the model's latent_dim", model.latent_dim, 2, "manifold_frames walks a 2-d latent space: pass a "
                "model trained with latent_dim=2.")
    image_shape = _args.image_shape(image_shape, model.num_pixels)
    num_points = _args.count("num_points", num_points, minimum=3)
    _args.at_most("num_points", num_points, 31, "it stores num_points**2 pictures; use at most 31 (15 is plenty).")
    q = np.asarray(inverse_cdf_grid(num_points))
    codes = np.stack(np.meshgrid(q, q, indexing="ij"), -1).reshape(-1, 2)  # [i0, i1] -> (q[i0], q[i1])
    decoded = np.asarray(compile_decode(model.decoder)(codes)).reshape(num_points, num_points, *image_shape)
    frames = [[side_by_side([decoded[i0, i1], _locator(image_shape, (i0, num_points - 1 - i1), num_points)])
               for i1 in range(num_points)] for i0 in range(num_points)]
    labels = [f"{v:+.2f}" for v in q]  # the sliders' readouts are the code
    middle = num_points // 2
    return Frames(frames, [("z[0]", labels), ("z[1]", labels)], index=(middle, middle), scale=5)


def interpolation_frames(model, x, image_shape, *, index_a=0, index_b=1, num_steps=21):
    """The interpolation between two images' codes with every frame precomputed (no kernel needed). Lesson 8.

    A slider for the path (linear, spherical) and one for t in ``num_steps`` even steps from 0 to 1;
    each frame shows image A, the decode of z(t) and image B, like :func:`interpolation`.
    """
    image_shape = _args.image_shape(image_shape, model.num_pixels)
    index_a, index_b = _args.index("index_a", index_a, len(x)), _args.index("index_b", index_b, len(x))
    num_steps = _args.count("num_steps", num_steps, minimum=2)
    _args.at_most("num_steps", num_steps, 101, "it stores two pictures per step; use at most 101.")
    means = encode_means(model, x[np.array([index_a, index_b])])
    t = jnp.linspace(0.0, 1.0, num_steps)
    decode = compile_decode(model.decoder)
    x_a, x_b = (np.asarray(x[i]).reshape(image_shape) for i in (index_a, index_b))
    frames = [[side_by_side([x_a, image.reshape(image_shape), x_b])
               for image in np.asarray(decode(path(means[0], means[1], t)))] for path in Interpolation.paths.values()]
    return Frames(frames, [("path", list(Interpolation.paths)), ("t", [f"{float(s):.2f}" for s in t])],
                  index=(0, num_steps // 2), scale=5)


def dimension_frames(model, x, image_shape, *, index=0, num_dims=8, num_values=13, limit=3.0):
    """One latent dimension at a time, every frame precomputed (no kernel needed). Lesson 8.

    Starts from the posterior mean of ``x[index]``; a slider picks one of the ``num_dims``
    dimensions with the largest average KL on ``x`` (:func:`dimension_order`), another the value
    that dimension takes (``num_values`` even steps over ``[-limit, limit]``), all others staying
    at the image's code. Each frame shows the image, the decode of its code and the decode of the
    changed code. The kernel-free counterpart of :func:`encode_and_perturb`, one slider moved at a time.
    """
    image_shape = _args.image_shape(image_shape, model.num_pixels)
    index = _args.index("index", index, len(x))
    num_dims = _args.count("num_dims", num_dims)
    _args.at_most("num_dims", num_dims, model.latent_dim, f"the model has {model.latent_dim} latent dimensions.")
    num_values = _args.count("num_values", num_values, minimum=2)
    _args.at_most("num_dims * num_values", num_dims * num_values, 400, "each is a stored picture; use fewer values.")
    limit = _args.number("limit", limit, positive=True)
    order, kl = dimension_order(model, x)
    base = encode_means(model, x[np.array([index])])[0]
    values = np.linspace(-limit, limit, num_values)
    codes = np.repeat(base[None, None], num_dims, 0).repeat(num_values, 1)  # (dims, values, d)
    for k, j in enumerate(order[:num_dims]):
        codes[k, :, j] = values
    decode = compile_decode(model.decoder)
    decoded = decode(codes.reshape(-1, model.latent_dim)).reshape(num_dims, num_values, *image_shape)
    original = np.asarray(x[index]).reshape(image_shape)
    at_code = decode(base[None])[0].reshape(image_shape)
    frames = [[side_by_side([original, at_code, decoded[k, v]]) for v in range(num_values)] for k in range(num_dims)]
    dims = [f"z[{j}] ({kl[j]:.2f} nats)" for j in order[:num_dims]]
    return Frames(frames, [("dimension", dims), ("value", [f"{v:+.2f}" for v in values])],
                  index=(0, int(np.argmin(np.abs(values - base[order[0]])))), scale=5)
