"""Widgets shared by the lessons: the live-picture plumbing and lesson 4's ELBO widget (core).

Every widget is an explicit ipywidgets layout around an ``ipywidgets.Image``: a subclass of
:class:`View` draws its picture as an array (``picture()``), and the view shows it as a
crisp upscaled PNG, redrawn whenever a slider moves. The widget objects keep their state
(the slider values and the numbers they show), so tests and notebooks can drive them from
Python by setting slider values. Displaying the object itself also stores a static PNG of
the current picture for readers of a saved notebook (on GitHub or nbviewer, without a
kernel): the picture with the controls' values and readouts written under it
(:meth:`View.caption`), the same text as the PNG's description and as the plain-text output.

Lesson 8's latent-space widgets (:mod:`vae_lite.explorer`) are built on the same :class:`View`.
"""

import base64
import html
import io
import math
import re
import textwrap
import warnings

import ipywidgets as widgets
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from vae_lite import _args
from vae_lite.posterior import grid_coverage, grid_posterior

# ---------------------------------------------------------------- pictures

# palette for grey images: index 0 white ... 254 black ink, 255 red (markers)
PALETTE = [g for v in np.round(np.linspace(255, 0, 255)).astype(int) for g in (v, v, v)] + [220, 30, 30]


def to_png(image, scale=6, marker=None, compress_level=1, colors=None):
    """PNG bytes of an image, upscaled ``scale`` times with nearest neighbour (crisp pixels).

    Args:
        image: ``(h, w)`` values in [0, 1] drawn as dark ink on white, or uint8 RGB ``(h, w, 3)``.
        marker: optional boolean ``(h, w)`` mask of grey-image pixels to draw in red.
        compress_level: zlib's level, 1 (fast, for a redraw on every slider move) to 9 (small, for
            pictures stored in a notebook).
        colors: for an RGB image, reduce it to this many colours first (a plot has few; the PNG
            shrinks about threefold), or None to keep every colour.
    """
    if image.ndim == 2:
        index = np.round(254 * np.clip(image, 0, 1)).astype(np.uint8)
        if marker is not None:
            index[marker] = 255
        img = Image.fromarray(index)
        img.putpalette(PALETTE)  # a palette image: 1 byte a pixel, fast to compress
    else:
        img = Image.fromarray(image)
        if colors is not None:
            img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="png", compress_level=compress_level)
    return buffer.getvalue()


def captioned_png(png, lines, *, min_width=360, font_size=13):
    """PNG bytes of picture ``png`` with ``lines`` of text written under it, on white.

    The canvas is at least ``min_width`` pixels wide (long lines wrap to it), and the text is also
    stored as the PNG's ``Description`` (a tEXt chunk), so the picture explains itself when it
    is all a reader has: the static output of a widget in a saved notebook.
    """
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    font = ImageFont.load_default(size=font_size)
    width = max(picture.width, min_width)
    average = font.getlength("mu = 0.50, log p(x) -3.038") / 27  # pixels per character of typical text
    chars = max(20, int((width - 8) / average))
    wrapped = [part for line in lines for part in _wrap(line, chars)]
    line_height = int(1.4 * font_size)
    canvas = Image.new("RGB", (width, picture.height + 6 + line_height * len(wrapped) + 4), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(wrapped):
        draw.text((4, picture.height + 6 + k * line_height), line, fill=(0, 0, 0), font=font)
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "\n".join(lines))
    buffer = io.BytesIO()
    canvas.save(buffer, format="png", pnginfo=info)
    return buffer.getvalue()


def _wrap(line, chars):
    """Lines of at most ``chars`` characters, broken after ``", "`` where possible (whole ``name = value`` items)."""
    out = []
    for item in line.split(", "):
        if out and len(out[-1]) + 2 + len(item) <= chars:
            out[-1] += ", " + item
        else:
            if out:
                out[-1] += ","
            out.extend(textwrap.wrap(item, chars, break_on_hyphens=False) or [""])
    return out


def control_text(control):
    """One line of text for what a control shows: ``description = value`` or an HTML readout as text.

    Containers give their children's lines joined by ``, ``; a control with no value yet gives ``""``.
    """
    if isinstance(control, widgets.Box):
        return ", ".join(t for t in (control_text(c) for c in control.children) if t)
    if isinstance(control, widgets.HTML):
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", control.value)).split())
    value = getattr(control, "value", None)
    if value is None:
        return ""
    if isinstance(control, (widgets.Dropdown, widgets.ToggleButtons)):
        value = control.label  # what the reader sees, not the option's value
    if isinstance(value, float):
        value = f"{value:.2f}"
    return f"{control.description} = {value}" if control.description else str(value)


def side_by_side(images, gap=1):
    """Images ``(h, w)`` (same shape) in a row, separated by ``gap`` white columns."""
    h, w = images[0].shape
    canvas = np.zeros((h, len(images) * (w + gap) - gap), np.float32)
    for i, img in enumerate(images):
        canvas[:, i * (w + gap) : i * (w + gap) + w] = img
    return canvas


# ---------------------------------------------------------------- the view


def slider(description, value, limit, step=0.01, lo=None):
    """A ``FloatSlider`` on ``[lo, limit]`` (``lo = -limit`` by default) starting at ``value`` (clamped).

    ``continuous_update``: a redraw costs a few ms, so the picture follows the drag.
    """
    lo = -limit if lo is None else lo
    return widgets.FloatSlider(
        value=float(np.clip(value, lo, limit)), min=lo, max=limit, step=step, description=description,
        continuous_update=True, readout_format=".2f", style={"description_width": "110px"},
    )


class View:
    """Shared plumbing: one ``ipywidgets.Image`` showing ``self.picture()``, redrawn by ``refresh``.

    A subclass builds its controls, observes each slider with ``self._guard``, defines
    ``picture()`` (an ``(h, w)`` grey image in [0, 1] or ``(h, w, 3)`` uint8 RGB) and calls
    ``self._init_view(controls)`` last. The picture is upscaled (nearest neighbour) to about
    ``target`` pixels high, and the image widget gets that exact size, so the browser shows
    crisp pixels instead of blurring them.
    """

    target = 224

    def _init_view(self, controls, beside=True):
        self.image_widget = widgets.Image(format="png")
        self._hold, self.scale = False, None
        self.refresh()  # the first draw also compiles (warm-up) before anything is shown
        self.image_widget.height, self.image_widget.width = (str(n * self.scale) for n in self._shape)
        self.controls = list(controls)
        controls = widgets.VBox(controls)
        if beside:
            self.widget = widgets.HBox([self.image_widget, controls])
        else:
            self.widget = widgets.VBox([controls, self.image_widget])

    def _guard(self, change):
        """Observer for every slider: reject non-finite values, then redraw."""
        if not math.isfinite(change["new"]):
            change["owner"].value = change["old"]
            return
        if not self._hold:
            self.refresh()

    def refresh(self):
        """Draw ``self.picture()`` into the image widget."""
        picture = self.picture()
        if self.scale is None:
            self._shape, self.scale = picture.shape[:2], max(1, self.target // picture.shape[0])
        self.image_widget.value = to_png(picture, self.scale, self.marker())

    def marker(self):
        """Boolean mask of pixels to draw in red over the picture (none by default)."""
        return None

    @property
    def png(self):
        """The PNG bytes now shown."""
        return self.image_widget.value

    def caption(self):
        """The controls' values and readouts as lines of text, one line per control (see :func:`control_text`)."""
        lines = [text for text in (control_text(c) for c in self.controls) if text]
        return ["Static copy of the widget (run the notebook to move the sliders):", *lines]

    @property
    def static_png(self):
        """The PNG a saved notebook shows without a kernel: the picture, with :meth:`caption` under it."""
        return captioned_png(self.png, self.caption())

    def _repr_mimebundle_(self, **kwargs):
        return _with_static_copy(self, **kwargs)


def _with_static_copy(view, **kwargs):
    """The display of a widget object: the live widget for Jupyter/Voila, and beside it the captioned PNG
    (and the caption as plain text) that a saved notebook shows without a kernel (GitHub, nbviewer)."""
    return {**view.widget._repr_mimebundle_(**kwargs), "image/png": base64.b64encode(view.static_png).decode(),
            "text/plain": "\n".join(view.caption())}


# ---------------------------------------------------------------- lesson 4: ELBO widget

MIN_GRID_POINTS = 11  # the ELBO widget's grid: q and the posterior each need several points


class GridCoverageWarning(UserWarning):
    """The ELBO widget's grid does not hold the posterior: its log p(x) by quadrature is wrong."""



class ElboWidget(View):
    r"""Sliders for a 1-D Gaussian q(z) = N(mu, e^{log_var}); log p(x), ELBO and KL by quadrature.

    On the grid, q is normalised like the posterior, so the identity
    log p(x) = ELBO(q) + KL(q || p(z|x)) holds exactly (KL of the two discretised distributions).
    Built by :func:`elbo_widget`.
    """

    def __init__(self, log_joint, grid_axis, *, mu=0.0, log_var=0.0, log_var_range=None):
        (axis,) = _args.grid_axes([grid_axis], min_points=MIN_GRID_POINTS, names=["grid_axis"])
        self.z_grid = np.asarray(axis, np.float64)
        mu, log_var = _args.number("mu", mu), _args.number("log_var", log_var)
        _args.scalar_of_latent("log_joint", log_joint, 1, "elbo_widget is for a model with a 1-D latent: pass "
                               "the log joint log p(x, z) of a latent_dim=1 model, summed to one number.")
        post = grid_posterior(log_joint, [jnp.asarray(axis, jnp.float32)])
        self.log_evidence = float(post.log_evidence)
        self.log_cell = float(np.log(post.cell_volume))
        self.log_post = np.asarray(post.log_density, np.float64)  # (G,) log p(z_g|x)
        self.log_joint_values = self.log_post + self.log_evidence
        self.grid_problem = grid_coverage(post).problem  # "" when the grid holds the posterior
        if self.grid_problem:
            warnings.warn(f"elbo_widget: {self.grid_problem}", GridCoverageWarning, stacklevel=3)
        lo, hi = float(self.z_grid[0]), float(self.z_grid[-1])
        spacing = (hi - lo) / (len(self.z_grid) - 1)
        if log_var_range is None:  # from q two cells wide to q as wide as the grid (MIN_GRID_POINTS keeps low < high)
            log_var_range = (round(2 * np.log(2 * spacing), 1), round(2 * np.log((hi - lo) / 2), 1))
        log_var_range = _args.interval("log_var_range", log_var_range)
        self.mu_slider = widgets.FloatSlider(float(np.clip(mu, lo, hi)), min=lo, max=hi, step=spacing,
                                             description="mu", continuous_update=True, readout_format=".2f")
        self.log_var_slider = slider("log_var", log_var, log_var_range[1], 0.05, lo=log_var_range[0])
        self.text = widgets.HTML()
        self._figure()
        for s in (self.mu_slider, self.log_var_slider):
            s.observe(self._guard, names="value")
        self._init_view([self.mu_slider, self.log_var_slider, self.text], beside=False)

    @property
    def mu(self):
        return self.mu_slider.value

    @property
    def log_var(self):
        return self.log_var_slider.value

    def q_log_density(self):
        """log q(z_g) on the grid, normalised by quadrature, ``(G,)``."""
        log_q = -0.5 * (np.log(2 * np.pi) + self.log_var + (self.z_grid - self.mu) ** 2 / np.exp(self.log_var))
        m = log_q.max()
        return log_q - (m + np.log(np.sum(np.exp(log_q - m)))) - self.log_cell

    def _figure(self):
        self.fig = Figure(figsize=(5, 2.4), dpi=80)
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.ax = self.fig.add_subplot()
        ax.plot(self.z_grid, np.exp(self.log_post), "k", label="p(z|x), exact on the grid")
        # q is drawn over a cached background (blitting): a full redraw only when the y-range must change.
        (self.q_line,) = ax.plot(self.z_grid, np.exp(self.log_post), "C1", lw=2, animated=True,
                                 label="q(z) = N(mu, exp(log_var))")
        ax.set_xlabel("z")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize=8)
        self.fig.tight_layout()
        self.background = None

    def picture(self):
        log_q = self.q_log_density()
        weights = np.exp(log_q + self.log_cell)  # quadrature weights of q, sum to 1
        self.elbo = float(np.sum(weights * (self.log_joint_values - log_q)))
        self.kl = self.log_evidence - self.elbo
        self.text.value = (
            f"<b>log p(x)</b> = {self.log_evidence:.3f} &nbsp; = &nbsp; <b>ELBO</b> {self.elbo:.3f}"
            f" &nbsp;+&nbsp; <b>KL(q || p(z|x))</b> {self.kl:.3f} &nbsp; (nats)"
        ) + (f'<br><span style="color:#b00000">Warning: {html.escape(self.grid_problem, quote=False)}</span>'
             if self.grid_problem else "")
        q = np.exp(log_q)
        self.q_line.set_ydata(q)
        top = 1.1 * max(np.exp(self.log_post).max(), q.max())
        if self.background is None or not (self.ax.get_ylim()[1] / 2 < top <= self.ax.get_ylim()[1]):
            self.ax.set_ylim(0, top)
            self.canvas.draw()
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.canvas.restore_region(self.background)
        self.ax.draw_artist(self.q_line)
        return np.asarray(self.canvas.buffer_rgba())[..., :3]


def elbo_widget(log_joint, grid_axis, *, mu=0.0, log_var=0.0, log_var_range=None):
    r"""Sliders for q's mean and log-variance with log p(x), ELBO and KL(q || p(z|x)) shown live.

    For a 1-D latent model. Everything is by quadrature on ``grid_axis``, so the numbers are
    deterministic and respond instantly: log p(x) from :func:`vae_lite.posterior.grid_posterior`,
    ELBO(q) = sum_g q_g [log p(x, z_g) - log q_g] dz, and KL = log p(x) - ELBO >= 0.

    Args:
        log_joint: ``z (1,) -> log p(x, z)`` (scalar).
        grid_axis: ``(G,)`` evenly spaced latent values covering the posterior, G >= 11. A grid whose
            outermost points hold posterior mass (too narrow or shifted) or whose cells are wider
            than the posterior gives a wrong log p(x): the widget then says so under the numbers and
            issues a :class:`GridCoverageWarning` (see :func:`vae_lite.posterior.grid_coverage`).
        mu, log_var: initial parameters of q (clamped to the slider ranges).
        log_var_range: ``(low, high)`` of the log-variance slider, low < high (default from the grid
            spacing and width).

    Returns:
        an :class:`ElboWidget` (``.widget``, ``.mu``, ``.log_var``, ``.elbo``, ``.kl``, ``.log_evidence``).
        Introduced in lesson 4.
    """
    return ElboWidget(log_joint, grid_axis, mu=mu, log_var=log_var, log_var_range=log_var_range)


# ---------------------------------------------------------------- precomputed frames: no kernel needed


class Frames:
    """Precomputed pictures chosen by one or two sliders, switched in the browser alone.

    Every setting of the sliders has its picture (and a line of readouts) computed in Python once;
    the browser then only switches between them: each slider's position is ``jslink``-ed to the
    ``selected_index`` of an ``ipywidgets.Stack`` of the pictures (for two sliders, a stack of
    stacks). So the sliders move the picture with no kernel at all: in a saved notebook opened on
    the course website, in Voila, and in JupyterLab without a round trip to Python. The cost is
    the saved widget state: one PNG per setting, so settings are kept to a few hundred small pictures.

    Args:
        frames: pictures nested one level per slider (``frames[i]`` or ``frames[i][j]`` for the
            ``i``-th option of the first slider and the ``j``-th of the second); each an ``(h, w)``
            grey image in [0, 1] or ``(h, w, 3)`` uint8 RGB, all of one shape.
        sliders: ``[(description, option labels), ...]``, one or two, the labels the readout shows.
        captions: the readouts, nested like ``frames`` (one line of text each), or None: none
            beyond the sliders' own readouts (each caption costs two more widget models per frame).
        index: the starting position of each slider.
        scale: the pictures' upscaling (nearest neighbour, crisp pixels).

    Introduced in lesson 8 (the 2-D manifold walk and the interpolation, without a kernel).
    """

    def __init__(self, frames, sliders, *, captions=None, index=None, scale=6):
        num = _args.count("the number of sliders", len(sliders))
        _args.at_most("the number of sliders", num, 2, "Frames switches pictures with one or two sliders.")
        sizes = [len(labels) for _, labels in sliders]
        pictures = np.asarray(frames)
        _args.shape("frames", pictures, (*sizes, *pictures.shape[num:]),
                    "Nest the pictures one level per slider, one per option label.")
        _args.at_most("the number of frames", int(np.prod(sizes)), 1000,
                      "each frame is a PNG in the saved notebook; precompute a coarser set of settings.")
        captions = np.full(sizes, "", object) if captions is None else np.asarray(captions, object)
        _args.shape("captions", captions, tuple(sizes), "One caption per frame, nested like frames.")
        index = [0] * num if index is None else [_args.index(f"index[{k}]", i, n, "options") for k, (i, n) in
                                                   enumerate(zip(index, sizes, strict=True))]
        self.sliders = [
            widgets.SelectionSlider(options=[(str(label), k) for k, label in enumerate(labels)], index=i,
                                    description=description, continuous_update=True,
                                    style={"description_width": "110px"}, layout={"width": "420px"})
            for (description, labels), i in zip(sliders, index, strict=True)
        ]
        self.pngs = np.empty(sizes, object)
        for position in np.ndindex(*sizes):
            self.pngs[position] = to_png(pictures[position], scale, compress_level=9, colors=64)

        def frame(position):  # each frame is stored as widget models in the notebook: as few as it needs
            image = widgets.Image(value=self.pngs[position], format="png")
            if not captions[position]:
                return image
            return widgets.VBox([image, widgets.HTML(html.escape(str(captions[position])))])

        self.captions = captions
        self.links = []
        if num == 1:
            self.stack = widgets.Stack([frame((k,)) for k in range(sizes[0])], selected_index=index[0])
            self.links.append(widgets.jslink((self.sliders[0], "index"), (self.stack, "selected_index")))
            self.inner = []
        else:
            self.inner = [widgets.Stack([frame((i, j)) for j in range(sizes[1])], selected_index=index[1])
                          for i in range(sizes[0])]
            self.stack = widgets.Stack(self.inner, selected_index=index[0])
            self.links.append(widgets.jslink((self.sliders[0], "index"), (self.stack, "selected_index")))
            self.links += [widgets.jslink((self.sliders[1], "index"), (s, "selected_index")) for s in self.inner]
        self.widget = widgets.VBox([*self.sliders, self.stack])

    @property
    def position(self):
        """The sliders' positions, a tuple of option indices."""
        return tuple(s.index for s in self.sliders)

    @property
    def png(self):
        """The PNG of the frame the sliders select."""
        return self.pngs[self.position]

    def caption(self):
        lines = [f"{s.description} = {s.label}" for s in self.sliders]
        extra = [str(self.captions[self.position])] if self.captions[self.position] else []
        return ["Static copy of the widget (it moves without a kernel where its saved state loads):", *lines, *extra]

    static_png = View.static_png

    def _repr_mimebundle_(self, **kwargs):
        return _with_static_copy(self, **kwargs)


def elbo_frames(log_joint, grid_axis, *, mus, log_vars, start=(0.0, 0.0)):
    """Lesson 4's ELBO widget with every frame precomputed, so its sliders move without a kernel.

    The pictures and numbers of :func:`elbo_widget` for every ``(mu, log_var)`` in ``mus x log_vars``
    (each at most 21 values): the posterior on the grid, q, and log p(x) = ELBO + KL under it.
    ``start``: the frame shown first is the one nearest to this ``(mu, log_var)``. A :class:`Frames`.
    """
    mus = np.asarray(_args.float_array("mus", mus), np.float64)
    log_vars = np.asarray(_args.float_array("log_vars", log_vars), np.float64)
    _args.ndim("mus", mus, 1, "Pass the values of mu the frames show, e.g. np.linspace(-3, 3, 13).")
    _args.ndim("log_vars", log_vars, 1, "Pass the values of log_var the frames show, e.g. np.linspace(-4, 1, 11).")
    for name, values in (("mus", mus), ("log_vars", log_vars)):
        _args.at_most(f"the number of {name}", len(values), 21, "each pair is a stored picture; use at most 21.")
        _args.count(f"the number of {name}", len(values))
    view = ElboWidget(log_joint, grid_axis, log_var_range=(float(log_vars.min()) - 1, float(log_vars.max()) + 1))
    frames, captions = [], []
    for mu in mus:
        frames.append([]), captions.append([])
        for log_var in log_vars:
            view._hold = True  # set both sliders, then draw once
            view.mu_slider.value, view.log_var_slider.value = float(mu), float(log_var)
            view._hold = False
            frames[-1].append(view.picture().copy())
            captions[-1].append(f"log p(x) = {view.log_evidence:.3f} = ELBO {view.elbo:.3f} + "
                                f"KL(q || p(z|x)) {view.kl:.3f} (nats)"
                                + (f"; warning: {view.grid_problem}" if view.grid_problem else ""))
    index = (int(np.argmin(np.abs(mus - start[0]))), int(np.argmin(np.abs(log_vars - start[1]))))
    return Frames(frames, [("mu", [f"{m:.2f}" for m in mus]), ("log_var", [f"{v:.2f}" for v in log_vars])],
                  captions=captions, index=index, scale=1)
