r"""Naive Monte Carlo against the number of prior samples S, live, for one image (lesson 3).

The naive estimator of lesson 3 averages the likelihood over S samples from the prior,

.. math::
    \log \hat p(x) = \log \frac1S \sum_{s=1}^S p(x \mid z_s), \qquad z_s \sim p(z),

which is unbiased for p(x) but biased low for log p(x) (Jensen). Given a pool of P values
log p(x | z_s) per image (one decoder pass over P prior samples), cutting the pool into P / S
consecutive groups of S gives P / S independent estimates for each S at no further cost.
:func:`naive_estimates` does that for every S of a set (powers of 2 by default) and summarises
the estimates against the exact log p(x) (the lesson's grid quadrature); :func:`naive_widget`
shows them: pick an image, move S.
"""

from typing import NamedTuple

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_lite import _args
from vae_lite.widgets import View

MAX_SAMPLES = 4096
"""The largest S of the default set 1, 2, 4, ..., MAX_SAMPLES (capped so that every S leaves >= 2 estimates)."""


class NaiveEstimates(NamedTuple):
    """The naive estimates of log p(x) for N images and K sample sizes, and their summaries (float64).

    For S = ``sample_sizes[k]``, ``estimates[k]`` is ``(N, P // S)``: estimate j of image i is the
    log-mean-exp of pool values ``j*S ... (j+1)*S - 1``. The summaries are ``(N, K)``.
    """

    sample_sizes: np.ndarray  # (K,) the sample sizes S, increasing
    estimates: tuple  # K arrays (N, P // S): the independent estimates for each S
    log_evidence: np.ndarray  # (N,) the exact log p(x) the estimates are compared with
    mean: np.ndarray  # (N, K) mean of the estimates
    sd: np.ndarray  # (N, K) their standard deviation (ddof = 1)
    bias_se: np.ndarray  # (N, K) standard error of the mean, sd / sqrt(P // S)
    above: np.ndarray  # (N, K) share of the estimates above log p(x)

    @property
    def bias(self):
        """mean - log p(x), ``(N, K)``: negative where the estimates fall short on average (Jensen)."""
        return self.mean - self.log_evidence[:, None]

    @property
    def num_estimates(self):
        """P // S, ``(K,)``: how many independent estimates each S gives."""
        return np.array([e.shape[1] for e in self.estimates])


def _log_mean_exp(values):
    """log of the mean of exp(values) over the last axis; the largest value is taken out first (no underflow)."""
    top = np.max(values, axis=-1, keepdims=True)
    return top[..., 0] + np.log(np.mean(np.exp(values - top), axis=-1))


def naive_estimates(log_likelihood, log_evidence, sample_sizes=None):
    """Every naive estimate of log p(x) a pool of prior samples gives, for each S, against the exact log p(x).

    Args:
        log_likelihood: ``(N, P)`` log p(x_i | z_s) for N images and P prior samples z_s ~ p(z) (the same
            samples for every image, or not: each row is used on its own), with P >= 2.
        log_evidence: ``(N,)`` the exact log p(x_i) (by quadrature in lesson 3).
        sample_sizes: increasing whole numbers S, each dividing P with P // S >= 2; default the powers of 2
            up to ``min(MAX_SAMPLES, P // 2)`` that divide P.

    Returns:
        a :class:`NaiveEstimates`. Introduced in lesson 3.
    """
    log_likelihood = np.asarray(_args.float_array("log_likelihood", log_likelihood), np.float64)
    log_evidence = np.asarray(_args.float_array("log_evidence", log_evidence), np.float64)
    fix = "Pass log_likelihood of shape (N images, P prior samples) with P >= 2; for one image log_lik[None]."
    _args.ndim("log_likelihood", log_likelihood, 2, fix)
    _args.at_least("log_likelihood's number of prior samples P", log_likelihood.shape[1], 2, fix)
    _args.shape("log_evidence", log_evidence, log_likelihood.shape[:1],
                f"Pass one value per image, shape ({log_likelihood.shape[0]},): the log p(x) of the same N images "
                "as log_likelihood.")
    _args.finite("log_likelihood", log_likelihood, "Every log p(x | z_s) must be a finite number.")
    _args.finite("log_evidence", log_evidence, "Pass the finite log p(x) of each image.")
    pool = log_likelihood.shape[1]
    if sample_sizes is None:
        sample_sizes = [2**k for k in range(64) if 2**k <= min(MAX_SAMPLES, pool // 2) and pool % 2**k == 0]
    sizes = [_args.count("sample size", s) for s in sample_sizes]
    _args.increasing("sample_sizes", sizes, "Pass whole numbers from small to large, e.g. [1, 2, 4, 8].")
    for s in sizes:
        _args.divisor("sample size S", s, pool, f"Each S must divide the pool's P = {pool} samples; pick S among "
                      f"the divisors of P up to {pool // 2}.")
        _args.at_most("sample size S", s, pool // 2, f"each S must leave at least 2 estimates (P // S >= 2) of the "
                      f"pool's P = {pool} samples; pick S among the divisors of P up to {pool // 2}.")
    estimates = tuple(_log_mean_exp(log_likelihood.reshape(len(log_likelihood), -1, s)) for s in sizes)
    mean = np.stack([e.mean(axis=1) for e in estimates], axis=1)
    sd = np.stack([e.std(axis=1, ddof=1) for e in estimates], axis=1)
    bias_se = sd / np.sqrt([e.shape[1] for e in estimates])
    above = np.stack([np.mean(e > log_evidence[:, None], axis=1) for e in estimates], axis=1)
    return NaiveEstimates(np.array(sizes), estimates, log_evidence, mean, sd, bias_se, above)


class NaiveWidget(View):
    """One image's naive estimates for the chosen S (right) and their mean +- sd against S (left).

    Built by :func:`naive_widget`; ``.index`` and ``.num_samples`` are the controls' values, and
    ``.readout`` holds the numbers shown (S, the number of estimates, mean - log p(x) and its standard
    error, the sd, the share above log p(x)).
    """

    def __init__(self, naive, labels=None, index=0, num_samples=None):
        self.naive = naive
        num_images, sizes = len(naive.log_evidence), [int(s) for s in naive.sample_sizes]
        labels = list(labels) if labels is not None else [f"image {i}" for i in range(num_images)]
        _args.equal("the number of labels", len(labels), num_images, "Pass one label per image, or none.")
        self.labels = labels
        index = _args.index("index", index, num_images)
        num_samples = _args.count("num_samples", sizes[0] if num_samples is None else num_samples)
        _args.names_in("num_samples", [num_samples], sizes, "pick one of the sample sizes computed.")
        self.image_menu = widgets.Dropdown(options=[(label, i) for i, label in enumerate(labels)], value=int(index),
                                           description="image")
        # a slider over the computed S only (equal steps in log S): no value outside the set can be chosen
        self.sample_slider = widgets.SelectionSlider(options=[(str(s), s) for s in sizes], value=int(num_samples),
                                                     description="S samples", continuous_update=True)
        self.text, self.share_text = widgets.HTML(), widgets.HTML()
        self._figure()
        # precomputed: every image's curve, drawn, and every histogram, so a move draws only the right panel
        self.backgrounds = [self._draw_background(i) for i in range(num_images)]
        self.histograms = [[np.histogram(e[i], bins=min(40, max(5, e.shape[1] // 4))) for e in naive.estimates]
                           for i in range(num_images)]
        for control in (self.image_menu, self.sample_slider):
            control.observe(lambda change: self.refresh(), names="value")
        self._init_view([self.image_menu, self.sample_slider, self.text, self.share_text], beside=False)

    @property
    def index(self):
        return self.image_menu.value

    @property
    def num_samples(self):
        return self.sample_slider.value

    def _figure(self):
        self.fig = Figure(figsize=(8.4, 3.2), dpi=80)
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax_curve, self.ax_hist = self.fig.subplots(1, 2)
        self.fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.91, wspace=0.28)  # fixed: no tight_layout per move
        self._histogram_artists()

    def _draw_background(self, i):
        """The figure with image ``i``'s curve (mean +- sd against S, the exact log p(x)) and an empty right panel."""
        n, ax = self.naive, self.ax_curve
        ax.clear()
        sizes = n.sample_sizes
        ax.fill_between(sizes, n.mean[i] - n.sd[i], n.mean[i] + n.sd[i], color="C0", alpha=0.25,
                        label="± sd of the estimates")
        ax.plot(sizes, n.mean[i], "o-", color="C1", ms=3, label="mean of the estimates")
        ax.axhline(n.log_evidence[i], color="k", ls="--", lw=1.5, label="log p(x) by quadrature")
        ax.set_xscale("log", base=2)
        ticks = sizes[:: max(1, (len(sizes) + 6) // 7)]
        ax.set_xticks(ticks, [str(s) for s in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("number of prior samples S")
        ax.set_ylabel("naive estimate of log p(x) (nats)")
        ax.set_title(f"{self.labels[i]}: mean ± sd of the estimates against S", fontsize=9)
        self.s_line = ax.axvline(sizes[0], color="C3", lw=1.5, animated=True, label="the chosen S (right panel)")
        ax.legend(loc="lower right", fontsize=7)  # the right panel's lines have the same colours
        self.ax_hist.set_visible(False)
        self.canvas.draw()
        self.ax_hist.set_visible(True)
        # the line of the chosen S uses only the x axis (log S), the same for every image: kept across images
        return self.canvas.copy_from_bbox(self.fig.bbox)

    def _histogram_artists(self):
        """The right panel's artists, made once and updated on every move (no ``ax.clear()``: it is slow)."""
        ax = self.ax_hist
        self.bars = ax.stairs([0.0], [0.0, 1.0], fill=True, color="C0", alpha=0.7, animated=True)
        self.truth_line = ax.axvline(0.0, color="k", ls="--", lw=1.5, animated=True)
        self.mean_line = ax.axvline(0.0, color="C1", lw=1.5, animated=True)
        ax.set_xlabel("naive estimate of log p(x) (nats)")
        ax.set_ylabel("number of estimates")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))

    def _draw_histogram(self, k):
        n, i, ax = self.naive, self.index, self.ax_hist
        counts, edges = self.histograms[i][k]
        self.bars.set_data(counts, edges)
        self.truth_line.set_xdata([n.log_evidence[i]] * 2)
        self.mean_line.set_xdata([n.mean[i, k]] * 2)
        lo, hi = min(edges[0], n.log_evidence[i]), max(edges[-1], n.log_evidence[i])
        pad = 0.05 * (hi - lo) + 1e-3
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(0, 1.25 * counts.max())
        ax.set_title(f"the {n.num_estimates[k]} independent estimates with S = {n.sample_sizes[k]}", fontsize=9)
        self.fig.draw_artist(ax)
        for artist in (self.bars, self.truth_line, self.mean_line):
            ax.draw_artist(artist)

    def picture(self):
        n, i = self.naive, self.index
        k = int(np.flatnonzero(n.sample_sizes == self.num_samples)[0])
        self.canvas.restore_region(self.backgrounds[i])
        self.s_line.set_xdata([n.sample_sizes[k]] * 2)
        self.ax_curve.draw_artist(self.s_line)
        self._draw_histogram(k)
        count = int(n.num_estimates[k])
        share_se = np.sqrt(n.above[i, k] * (1 - n.above[i, k]) / count)
        self.readout = {"num_samples": int(n.sample_sizes[k]), "num_estimates": count, "bias": n.bias[i, k],
                        "bias_se": n.bias_se[i, k], "sd": n.sd[i, k], "above": n.above[i, k], "above_se": share_se,
                        "log_evidence": n.log_evidence[i]}
        self.text.value = (f"S = {n.sample_sizes[k]}: {count} estimates, mean - log p(x) = {n.bias[i, k]:.2f} "
                           f"± {n.bias_se[i, k]:.2f} (standard error), sd {n.sd[i, k]:.2f} nats; "
                           f"log p(x) = {n.log_evidence[i]:.2f}")
        self.share_text.value = f"share of the estimates above log p(x): {n.above[i, k]:.3f} ± {share_se:.3f}"
        return np.asarray(self.canvas.buffer_rgba())[..., :3]


def naive_widget(naive, labels=None, *, index=0, num_samples=None):
    """A dropdown over the images of ``naive`` (a :class:`NaiveEstimates`) and a slider over its sample sizes S.

    Shows the estimates for the chosen S against the exact log p(x), and their mean +- sd against S,
    with the bias (and its standard error), the sd and the share above log p(x). Introduced in lesson 3.
    """
    return NaiveWidget(naive, labels, index, num_samples)
