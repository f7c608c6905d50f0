r"""The KL weight β, live: one slider over a sweep of trained VAEs (lesson 6).

Lesson 6 trains the same VAE with the loss :math:`-\mathbb E_q[\log p(x \mid z)] + \beta\,\mathrm{KL}(q \,\|\, p(z))`
for several β. :func:`sweep` computes, once per β, everything the picture shows: decoded prior
samples (the same draws z ~ N(0, I) for every β), reconstructions of a few fixed test images,
the encoder's mean standard deviation and mean KL per latent dimension,

.. math:: \bar\sigma_j = \frac1N \sum_i e^{\text{log\_var}_{ij}/2}, \qquad
    \overline{\mathrm{KL}}_j = \frac1N \sum_i \tfrac12\big(\mu_{ij}^2 + e^{\text{log\_var}_{ij}} - 1 - \text{log\_var}_{ij}\big),

and the readouts (reconstruction term, KL, the digit classifier's recognised share of the prior
samples). :func:`beta_widget` shows them with a β slider; it takes only these arrays (a :class:`Sweep`),
so it can be built and tested without models, and each move only swaps pictures drawn beforehand.
"""

import math
from typing import NamedTuple

import ipywidgets as widgets
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_lite import _args
from vae_lite.widgets import View, control_text

SWITCHED_OFF_KL = 0.1  # nats: a dimension whose mean KL is below this carries (almost) nothing about x


class DimensionSummary(NamedTuple):
    """Per latent dimension j, means over images of the encoder's q(z | x), from :func:`dimension_summary`."""

    sigma: np.ndarray  # (d,): mean of sigma_j = exp(log_var_j / 2)
    kl: np.ndarray  # (d,): mean of KL_j = (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) / 2, nats


class Sweep(NamedTuple):
    """What :class:`BetaWidget` shows for B values of β (``pixels`` = product of ``image_shape``).

    Attributes:
        betas: ``(B,)`` the KL weights, increasing.
        image_shape: ``(height, width)`` of one image.
        originals: ``(R, pixels)`` the pictured test images, in [0, 1].
        reconstructions: ``(B, R, pixels)`` p(x | z) with z ~ q(z | x) for each of them, pixel probabilities.
        samples: ``(B, S, pixels)`` decoded prior samples, the same z for every β.
        sigma: ``(B, d)`` the encoder's mean standard deviation per dimension (:func:`dimension_summary`).
        kl: ``(B, d)`` the mean KL per dimension, nats.
        reconstruction: ``(B,)`` the mean reconstruction term E_q[log p(x | z)] on the test images, nats.
        recognised: ``(B,)`` the share of the prior samples the digit classifier recognises (NaN: not judged).
        recognised_stderr: ``(B,)`` its binomial standard error.
    """

    betas: np.ndarray
    image_shape: tuple
    originals: np.ndarray
    reconstructions: np.ndarray
    samples: np.ndarray
    sigma: np.ndarray
    kl: np.ndarray
    reconstruction: np.ndarray
    recognised: np.ndarray
    recognised_stderr: np.ndarray


def dimension_summary(mu, log_var):
    r"""Mean over images of σ_j and of KL(N(μ_j, σ_j²) ‖ N(0, 1)) per latent dimension j, in float64.

    Args:
        mu, log_var: ``(N, d)`` the encoder's outputs for N images.

    Returns:
        a :class:`DimensionSummary`; ``kl.sum()`` is the mean of ``distributions.kl_normal_std``. Lesson 6.
    """
    mu, log_var = _args.float_array("mu", mu), _args.float_array("log_var", log_var)
    _args.same_shape("mu", mu, "log_var", log_var)
    fix = "mu and log_var must be (num_images, latent_dim) with at least one image: pass model.encoder(x) for a batch x."
    _args.ndim("mu", mu, 2, fix)
    _args.at_least("mu's number of images", len(mu), 1, fix)
    _args.finite("mu", mu)
    _args.log_variance("log_var", log_var)
    mu, log_var = np.asarray(mu, np.float64), np.asarray(log_var, np.float64)
    kl = 0.5 * (mu**2 + np.exp(log_var) - 1.0 - log_var)
    return DimensionSummary(np.exp(0.5 * log_var).mean(axis=0), kl.mean(axis=0))


def sweep(models, x, z, *, key, num_images=8, num_samples=8, judge=None):
    r"""Everything :class:`BetaWidget` shows, computed once per β.

    Args:
        models: a mapping β -> trained VAE (``model.encoder``, ``model.decoder``), e.g. ``{0.0: ..., 4.0: ...}``.
        x: ``(N, pixels)`` binary test images: all of them give the readouts and the per-dimension means,
            the first ``num_images`` are pictured.
        z: ``(n, d)`` draws from N(0, I), decoded by every model; the first ``num_samples`` are pictured,
            and with a ``judge`` all n are judged.
        key: a JAX key for the one z ~ q(z | x) per image of the reconstruction term (as
            ``training.evaluate(key, model, x)``, so the numbers are that function's) and of the pictured
            reconstructions.
        judge: optional digit classifier (``classifier.train_classifier(...).model``); without it the
            recognised share is NaN.

    Returns:
        a :class:`Sweep`. Introduced in lesson 6.
    """
    from vae_lite import classifier, training

    _args.prng_key("key", key)
    _args.nonempty_mapping("models", models, "Map each beta to its trained VAE, e.g. "
                           "{beta: training.train(beta=beta, ...).model for beta in betas}.")
    betas = np.array([_beta(b) for b in models], np.float64)
    _args.increasing("the betas", list(betas), "The betas must increase: build the mapping in increasing order of beta.")
    _args.floating("x", x)
    _args.image_batch("x", x)
    num_images = _args.count("num_images", num_images)
    num_samples = _args.count("num_samples", num_samples)
    _args.at_most("num_images", num_images, len(x), f"x holds {len(x)} images; pass num_images <= {len(x)}.")
    latent_dim = next(iter(models.values())).latent_dim
    draws = f"e.g. jax.random.normal(key, (2000, {latent_dim}))"
    _args.ndim("z", z, 2, f"Pass prior draws (n, {latent_dim}), {draws}.")
    _args.equal("z's last axis", np.shape(z)[1], latent_dim, f"The models' codes have {latent_dim} dimensions; {draws}.")
    _args.at_most("num_samples", num_samples, len(z), f"z holds {len(z)} draws; pass num_samples <= {len(z)}.")
    _args.floating("z", z)
    _args.finite("z", z)
    side = math.isqrt(np.shape(x)[1])
    image_shape = (side, side) if side * side == np.shape(x)[1] else (1, np.shape(x)[1])
    x, z = jnp.asarray(x), jnp.asarray(z)
    pictured = x[:num_images]
    out = {name: [] for name in ("reconstructions", "samples", "sigma", "kl", "reconstruction", "share", "stderr")}
    for model in models.values():
        summary = dimension_summary(*_encode(model, x, training.EVAL_BLOCK))
        out["sigma"].append(summary.sigma)
        out["kl"].append(summary.kl)
        out["reconstruction"].append(training.evaluate(key, model, x).recon)
        out["reconstructions"].append(np.asarray(_reconstruct(model, pictured, jax.random.split(key)[1])))
        decoded = np.asarray(_decode(model, z))
        out["samples"].append(np.asarray(decoded[:num_samples]))
        if judge is None:
            out["share"].append(np.nan)
            out["stderr"].append(np.nan)
        else:
            share = classifier.confident_share(judge, decoded)
            out["share"].append(share.share)
            out["stderr"].append(share.stderr)
    return Sweep(betas, image_shape, np.asarray(pictured, np.float32), np.stack(out["reconstructions"]),
                 np.stack(out["samples"]), np.stack(out["sigma"]), np.stack(out["kl"]),
                 np.array(out["reconstruction"]), np.array(out["share"]), np.array(out["stderr"]))


def _beta(value):
    value = _args.number("each beta", value)
    _args.in_range("each beta", value, 0, math.inf, "A beta weighs the KL term: a finite number >= 0.")
    return value


def _encode(model, x, block):
    """The encoder's (mu, log_var) for all of ``x``, a block of images at a time (one compiled program)."""
    parts = [_encoder(model, x[start : start + block]) for start in range(0, len(x), block)]
    return tuple(np.concatenate([np.asarray(p[i]) for p in parts]) for i in (0, 1))


# compiled once per shape and shared by the models of a sweep (one architecture): eager calls would
# compile every operation separately, about 1 MB of memory each
@nnx.jit
def _encoder(model, x):
    return model.encoder(x)


@nnx.jit
def _decode(model, z):
    """Pixel probabilities sigmoid(decoder(z))."""
    return jax.nn.sigmoid(model.decoder(z))


@nnx.jit
def _reconstruct(model, x, key):
    """Pixel probabilities of the decode of one z ~ q(z | x) per image."""
    mu, log_var = model.encoder(x)
    return jax.nn.sigmoid(model.decoder(mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)))


# ---------------------------------------------------------------- the widget


def _checked(s):
    """Raise unless the arrays of the :class:`Sweep` ``s`` fit together; returns them as float64 / float32 arrays."""
    _args.instance("beta_widget's sweep", s, Sweep, "beta_widget takes a beta_sweep.Sweep (from beta_sweep.sweep).")
    betas = np.asarray(s.betas, np.float64)
    fix = "Sweep.betas must be (B,) finite numbers >= 0, increasing; build the Sweep with beta_sweep.sweep."
    _args.ndim("Sweep.betas", betas, 1, fix)
    _args.finite("Sweep.betas", betas, fix)
    _args.in_range("Sweep.betas", betas, 0, math.inf, fix)
    _args.increasing("Sweep.betas", list(betas), fix)
    num = len(betas)
    shape = tuple(int(n) for n in s.image_shape)
    pixels = math.prod(shape)
    originals = np.asarray(s.originals, np.float32)
    expected = {"originals": (originals.shape[0], pixels),
                "reconstructions": (num, originals.shape[0], pixels),
                "samples": (num, np.shape(s.samples)[1] if np.ndim(s.samples) == 3 else -1, pixels),
                "sigma": (num, np.shape(s.sigma)[-1] if np.ndim(s.sigma) else -1),
                "kl": (num, np.shape(s.sigma)[-1] if np.ndim(s.sigma) else -1),
                "reconstruction": (num,), "recognised": (num,), "recognised_stderr": (num,)}
    arrays = {}
    for name, want in expected.items():
        value = np.asarray(getattr(s, name), np.float64)
        fix = f"(B = {num} betas, images of {shape}); build the Sweep with beta_sweep.sweep."
        _args.shape(f"Sweep.{name}", value, want, fix)
        _args.at_least(f"the length of Sweep.{name}'s shortest axis", min(value.shape), 1, f"it holds nothing {fix}")
        # recognised: NaN where the sweep had no classifier to judge its samples
        _args.finite(f"Sweep.{name}", value if not name.startswith("recognised") else value[~np.isnan(value)],
                     f"It must hold finite numbers {fix}")
        arrays[name] = value
    for name in ("originals", "reconstructions", "samples"):
        _args.in_range(f"Sweep.{name}", arrays[name], 0, 1, "Pixel intensities: the sigmoid of the decoder's logits.")
    _args.in_range("Sweep.sigma", arrays["sigma"], 0, math.inf, "A standard deviation is > 0.", closed=False)
    _args.in_range("Sweep.kl", arrays["kl"], -1e-6, math.inf, "A KL divergence cannot be negative.")
    return betas, shape, arrays


class BetaWidget(View):
    """A β slider over a :class:`Sweep`: test images, their reconstructions, prior samples (the same z for
    every β), σ and KL per latent dimension, and the readouts of the chosen β.

    Built by :func:`beta_widget`. ``.beta`` is the chosen β, ``.readout`` the numbers shown; every picture
    is drawn when the widget is built, so a move of the slider only shows another one. :meth:`select` picks
    a β by value and refuses, with a visible message, one the sweep did not train.
    """

    target = 1  # the pictures are drawn at their final size

    def __init__(self, s, index=None):
        self.betas, self.image_shape, self.arrays = _checked(s)
        num = len(self.betas)
        index = num - 1 if index is None else _args.index("index", index, num, what="betas in the sweep")
        kl = self.arrays["kl"]
        self.order = np.argsort(kl[-1], kind="stable")  # dimensions sorted by their KL at the largest beta
        self._pictures = [self._draw(i) for i in range(num)]
        self.slider = widgets.SelectionSlider(options=[(f"{b:g}", i) for i, b in enumerate(self.betas)],
                                              value=int(index), description="β (KL weight)", continuous_update=True,
                                              style={"description_width": "110px"})
        self.text, self.message = widgets.HTML(), widgets.HTML()
        self.slider.observe(self._moved, names="value")
        self._init_view([self.slider, self.text, self.message], beside=False)

    @property
    def index(self):
        return self.slider.value

    @property
    def beta(self):
        return float(self.betas[self.index])

    def _moved(self, change):
        self.message.value = ""
        self.refresh()

    def select(self, beta):
        """Show β = ``beta`` if the sweep has it; otherwise say so under the slider and keep the picture."""
        try:
            value = float(beta)
        except (TypeError, ValueError):
            value = math.nan
        match = np.flatnonzero(np.isclose(self.betas, value, rtol=1e-9, atol=1e-12)) if math.isfinite(value) else []
        if len(match) == 0:
            trained = ", ".join(f"{b:g}" for b in self.betas)
            self.message.value = (f"<span style='color:#b00'>β = {beta!r} is not in the sweep (trained: {trained}); "
                                  f"still showing β = {self.beta:g}.</span>")
            return False
        self.slider.value = int(match[0])
        return True

    def _draw(self, i):
        """The picture of β number ``i`` as an RGB array: three rows of images and two bar charts."""
        a, h, w = self.arrays, *self.image_shape
        fig = Figure(figsize=(12, 4.6), dpi=72)
        canvas = FigureCanvasAgg(fig)
        grid = fig.add_gridspec(3, 2, width_ratios=(1.45, 1.0), hspace=0.5, wspace=0.18,
                                left=0.01, right=0.99, top=0.9, bottom=0.13)
        rows = ((a["originals"], "test images (binarised)"),
                (a["reconstructions"][i], "their reconstructions: p(x | z), z ~ q(z | x)"),
                (a["samples"][i], "prior samples: the same z ~ N(0, I) for every β, decoded"))
        for row, (images, title) in enumerate(rows):
            ax = fig.add_subplot(grid[row, 0])
            # images side by side, 2 columns of light grey between them
            strip = np.concatenate([np.pad(im.reshape(h, w), ((0, 0), (0, 2)), constant_values=0.15) for im in images],
                                   axis=1)[:, :-2]
            ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(title, fontsize=9, loc="left")
        dims = np.arange(len(self.order))
        right = grid[:, 1].subgridspec(2, 1, hspace=0.3)
        sigma_ax, kl_ax = fig.add_subplot(right[0]), fig.add_subplot(right[1])
        off = a["kl"][i][self.order] < SWITCHED_OFF_KL
        colors = np.where(off, "tab:red", "tab:blue")
        sigma_ax.bar(dims, a["sigma"][i][self.order], color=colors)
        sigma_ax.axhline(1.0, color="k", ls="--", lw=1)
        sigma_ax.set(ylim=(0, 1.1), ylabel="mean σ_j", xticks=[])
        sigma_ax.set_title(f"encoder's σ per dimension, mean {a['sigma'][i].mean():.3f} (dashed: the prior's σ = 1)",
                           fontsize=9)
        kl_ax.bar(dims, np.maximum(a["kl"][i][self.order], 1e-3), color=colors)
        kl_ax.axhline(SWITCHED_OFF_KL, color="k", ls=":", lw=1)
        kl_ax.set_yscale("log")
        kl_ax.set_ylim(1e-3, 2 * max(1.0, a["kl"].max()))
        kl_ax.set(ylabel="mean KL_j (nats, log scale)", xticks=dims[::2])
        kl_ax.set_xlabel(f"latent dimension j (sorted by its KL at β = {self.betas[-1]:g}); red: KL < "
                         f"{SWITCHED_OFF_KL:g} nats", fontsize=9)
        kl_ax.set_title(f"KL per dimension, total {a['kl'][i].sum():.1f} nats (dotted: 0.1 nats)", fontsize=9)
        fig.suptitle(f"β = {self.betas[i]:g}", fontsize=12, x=0.02, ha="left")
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def picture(self):
        a, i = self.arrays, self.index
        kl = float(a["kl"][i].sum())
        recon = float(a["reconstruction"][i])
        self.readout = {"beta": self.beta, "reconstruction": recon, "kl": kl, "elbo": recon - kl,
                        "mean_sigma": float(a["sigma"][i].mean()),
                        "switched_off": int(np.sum(a["kl"][i] < SWITCHED_OFF_KL)),
                        "recognised": float(a["recognised"][i]), "recognised_stderr": float(a["recognised_stderr"][i])}
        r = self.readout
        judged = ("" if math.isnan(r["recognised"]) else
                  f"; prior samples recognised {r['recognised']:.3f} ± {r['recognised_stderr']:.3f}")
        self.text.value = (f"β = {r['beta']:g}: reconstruction term {recon:.1f} nats, KL {kl:.1f} nats "
                           f"(ELBO {recon - kl:.1f}), mean σ {r['mean_sigma']:.3f}, "
                           f"{r['switched_off']} of {len(a['kl'][i])} dimensions below {SWITCHED_OFF_KL:g} nats{judged}")
        return self._pictures[i]

    def caption(self):
        """The static copy's text: the chosen beta and the readouts (Greek letters spelled out for the PNG's font)."""
        lines = ["Static copy of the widget (run the notebook to move the slider):",
                 f"beta (KL weight) = {self.beta:g}, of {', '.join(f'{b:g}' for b in self.betas)}",
                 control_text(self.text)]
        return [line.replace("β", "beta").replace("σ", "sigma").replace("±", "+-") for line in lines]


def beta_widget(s, *, index=None):
    """A β slider over the :class:`Sweep` ``s`` (from :func:`sweep`), starting at β number ``index`` (default:
    the largest). Introduced in lesson 6."""
    return BetaWidget(s, index)
