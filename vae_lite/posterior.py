"""The posterior p(z|x) and the evidence p(x): exact where possible, on a grid otherwise (lesson 3).

Holds the linear-Gaussian latent model, the ground truth for every estimator in the
series: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I), for which log p(x) and p(z|x)
are Gaussian in closed form.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.tree_util import Partial

from vae_lite import _args
from vae_lite.distributions import log_bernoulli, log_normal_std


class LinearGaussian(NamedTuple):
    """z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D).

    Attributes:
        W: ``(D, d)`` loading matrix.
        b: ``(D,)`` offset.
        sigma: observation noise standard deviation (scalar > 0).
    """

    W: jnp.ndarray
    b: jnp.ndarray
    sigma: float

    @staticmethod
    def random(key, data_dim, latent_dim, sigma=0.5):
        """A random instance (``W`` and ``b`` standard normal). Introduced in lesson 3."""
        key_w, key_b = jax.random.split(key)
        return LinearGaussian(
            jax.random.normal(key_w, (data_dim, latent_dim)),
            jax.random.normal(key_b, (data_dim,)),
            sigma,
        )

    def check_x(self, x):
        """Raise unless ``x`` is one data point of this model, ``(D,)``."""
        _args.shape("x", x, jnp.shape(self.b), "Pass one data point of the model; use jax.vmap for a batch.")

    def point_log_joint(self):
        r"""``(x_i, z) -> log p(x_i, z)`` for any data point: the form :mod:`vae_lite.inference` fits (lesson 7).

        A ``jax.tree_util.Partial`` over the model, like :meth:`log_joint`.
        """
        return Partial(_linear_gaussian_log_joint, self)

    def elbo(self, x, mean_q, cov_q):
        r"""Exact ELBO of q = N(mean_q, cov_q) for the data point ``x (D,)``; no sampling (lesson 4).

        Every term is a Gaussian expectation of a quadratic:

        .. math:: \mathcal{L} = -\tfrac{D}{2}\log 2\pi\sigma^2
            - \tfrac{1}{2\sigma^2}\big[\lVert x - W m - b \rVert^2 + \operatorname{tr}(W \Sigma W^\top)\big]
            - \tfrac{d}{2}\log 2\pi - \tfrac12\big[\lVert m \rVert^2 + \operatorname{tr}\Sigma\big]
            + \tfrac12\big[d \log 2\pi e + \log\det\Sigma\big]

        Args:
            x: ``(D,)`` one data point.
            mean_q: ``(d,)``; cov_q: ``(d, d)`` (for a diagonal q pass ``jnp.diag(jnp.exp(log_var))``).

        Returns:
            scalar; equals :meth:`log_evidence` exactly when q is the true posterior.
        """
        self.check_x(x)
        D, d = self.W.shape
        _args.shape("mean_q", mean_q, (d,), f"The model's latent dimension is {d}.")
        _args.shape("cov_q", cov_q, (d, d), "For a diagonal q pass jnp.diag(jnp.exp(log_var)).")
        var = self.sigma**2
        resid = x - self.W @ mean_q - self.b
        expected_log_lik = -0.5 * D * jnp.log(2 * jnp.pi * var) - 0.5 * (
            resid @ resid + jnp.trace(self.W @ cov_q @ self.W.T)
        ) / var
        expected_log_prior = -0.5 * d * jnp.log(2 * jnp.pi) - 0.5 * (mean_q @ mean_q + jnp.trace(cov_q))
        entropy = 0.5 * (d * (jnp.log(2 * jnp.pi) + 1.0) + jnp.linalg.slogdet(cov_q)[1])
        return expected_log_lik + expected_log_prior + entropy

    def log_joint(self, x):
        r"""``z (d,) -> log p(x, z) = log N(x; W z + b, sigma^2 I) + log N(z; 0, I)`` for a fixed ``x (D,)``.

        A ``jax.tree_util.Partial`` (the model and x are its arrays), so the estimators compile
        it once for all data points of a shape.
        """
        self.check_x(x)
        return Partial(_linear_gaussian_log_joint, self, jnp.asarray(x))

    def log_evidence(self, x):
        r"""Exact log p(x) = log N(x; b, W W^T + sigma^2 I), for ``x (D,)``."""
        self.check_x(x)
        cov = self.W @ self.W.T + self.sigma**2 * jnp.eye(self.b.shape[0])
        return jax.scipy.stats.multivariate_normal.logpdf(x, self.b, cov)

    def posterior(self, x):
        r"""Exact posterior p(z|x) = N(m, S) with S = (I + W^T W / sigma^2)^{-1}, m = S W^T (x - b) / sigma^2.

        Returns:
            ``(mean (d,), cov (d, d))``.
        """
        self.check_x(x)
        precision = jnp.eye(self.W.shape[1]) + self.W.T @ self.W / self.sigma**2
        cov = jnp.linalg.inv(precision)
        return cov @ self.W.T @ (x - self.b) / self.sigma**2, cov

    def sample(self, key, num_samples):
        """Ancestral samples ``(z (num_samples, d), x (num_samples, D))`` from p(z) p(x|z)."""
        key_z, key_x = jax.random.split(key)
        z = jax.random.normal(key_z, (num_samples, self.W.shape[1]))
        x = z @ self.W.T + self.b + self.sigma * jax.random.normal(key_x, (num_samples, self.b.shape[0]))
        return z, x


class GridPosterior(NamedTuple):
    """A posterior tabulated on a regular grid.

    Attributes:
        points: ``(G**d, d)`` grid points (``indexing="ij"`` order).
        log_density: ``(G**d,)`` log p(z|x) at the points (normalised so that it
            integrates to one under the grid's quadrature).
        log_evidence: scalar log p(x) by quadrature.
        cell_volume: volume of one grid cell.
    """

    points: jnp.ndarray
    log_density: jnp.ndarray
    log_evidence: jnp.ndarray
    cell_volume: float


SAMPLE_BLOCK = 2048  # latent vectors (samples or grid points) evaluated together: memory stays flat in their number

MAX_GRID_POINTS = _args.MAX_GRID_POINTS


def _per_sample(fn, z):
    """``fn`` on each row of ``z`` ``(S, latent_dim)``, in blocks of :data:`SAMPLE_BLOCK` rows.

    ``jax.lax.map`` runs the blocks one after another (each block vectorised), so a decoder's
    ``(block, pixels)`` intermediates are all that is ever held, not ``(S, pixels)``. The one
    blocking rule of every estimator (here and in :mod:`vae_lite.elbo`) and of the grids.
    """
    return jax.lax.map(fn, z, batch_size=min(z.shape[0], SAMPLE_BLOCK))


def _linear_gaussian_log_joint(model, x, z):
    mean = model.W @ z + model.b
    log_lik = -0.5 * jnp.sum(jnp.log(2 * jnp.pi * model.sigma**2) + (x - mean) ** 2 / model.sigma**2)
    return log_lik + log_normal_std(z)


def make_grid(axes):
    """Points of the regular grid spanned by 1-D ``axes``.

    Args:
        axes: a sequence of d evenly spaced 1-D arrays, of lengths ``G1, ..., Gd``.

    Returns:
        ``(G1*...*Gd, d)`` points, in ``indexing="ij"`` order (the last axis varies
        fastest), so ``values.reshape(G1, ..., Gd)`` puts axis i along array axis i.
        Introduced in lesson 3.
    """
    axes = _args.grid_axes(axes)
    return jnp.stack([m.ravel() for m in jnp.meshgrid(*axes, indexing="ij")], axis=-1)


def normalize_on_grid(log_joint_values, cell_volume):
    r"""Turn log p(x, z_g) on a grid into log p(z_g | x) and log p(x) (Bayes' rule by quadrature).

    .. math:: \log p(x) \approx \log \sum_g p(x, z_g)\,\Delta, \qquad
        \log p(z_g | x) = \log p(x, z_g) - \log p(x)

    The sum is a ``logsumexp``: the joint values are ~e^{-100} for images, far below
    float32's smallest number, so they are never exponentiated directly.

    Args:
        log_joint_values: ``(G,)`` log p(x, z_g) at the G grid points.
        cell_volume: volume Delta of one grid cell (scalar > 0).

    Returns:
        ``(log_density (G,), log_evidence ())``; ``exp(log_density) * cell_volume`` sums
        to one. Introduced in lesson 3 (exercise ``ex03_grid_normalize``).
    """
    _args.ndim("log_joint_values", log_joint_values, 1, "One value per grid point: flatten it with .ravel().")
    _args.ndim("cell_volume", cell_volume, 0, "Pass the volume of one grid cell.")
    # subtract the maximum first: log p(x, z) ~ -100s, where float32 has only ~1e-5 absolute precision
    top = jnp.max(log_joint_values)
    shifted = log_joint_values - top
    log_normalizer = jax.nn.logsumexp(shifted) + jnp.log(cell_volume)
    return shifted - log_normalizer, top + log_normalizer


def grid_posterior(log_joint, grid):
    r"""Exact (up to quadrature) posterior and log-evidence on a regular grid.

    .. math:: \log p(x) \approx \log \sum_g p(x, z_g)\,\Delta, \qquad
        p(z_g | x) = p(x, z_g) / p(x)

    Costs one ``log_joint`` evaluation per grid point: ``G**d`` for G points per axis.

    Args:
        log_joint: ``z (d,) -> log p(x, z)`` (scalar).
        grid: a sequence of d evenly spaced 1-D axes, e.g. ``[jnp.linspace(-4, 4, 101)] * 2``.

    Returns:
        a :class:`GridPosterior`. Introduced in lesson 3.
    """
    grid = _args.grid_axes(grid)
    points = make_grid(grid)
    cell_volume = 1.0
    for a in grid:  # the mean step: in float32 one step a[1] - a[0] is off by up to an ulp of the values
        cell_volume = cell_volume * (a[-1] - a[0]) / (a.shape[0] - 1)
    # blocks of points: a decoder's (points, pixels) logits for a fine 2-D grid would need ~1 GB at once
    log_joint_values = _per_sample(log_joint, points)
    _args.one_value_per_sample("log_joint", log_joint_values, points.shape[0])
    log_density, log_evidence = normalize_on_grid(log_joint_values, jnp.asarray(cell_volume))
    return GridPosterior(points, log_density, log_evidence, cell_volume)


def grid_moments(posterior):
    r"""Posterior mean ``(d,)`` and covariance ``(d, d)`` of a :class:`GridPosterior` (by quadrature).

    .. math:: m = \sum_g z_g\, p(z_g|x)\,\Delta, \qquad S = \sum_g (z_g - m)(z_g - m)^T p(z_g|x)\,\Delta

    Introduced in lesson 3 (to compare with the exact linear-Gaussian posterior).
    """
    weights = jnp.exp(posterior.log_density) * posterior.cell_volume  # (G,), sums to 1
    mean = weights @ posterior.points
    centred = posterior.points - mean
    return mean, (weights[:, None] * centred).T @ centred


class GridCoverage(NamedTuple):
    """How well a regular grid holds a posterior (see :func:`grid_coverage`).

    Attributes:
        edge_share: largest ratio, over the axes, of p(z|x)'s marginal on an outermost grid slice to its
            marginal on the fullest slice; ~0 when the grid reaches into the posterior's tails
            (a Gaussian: 1e-3 at 3.7 standard deviations).
        peak_share: the largest share of p(z|x)'s mass on one grid point, ``max_g p(z_g|x) Delta``;
            near 1 when the posterior is narrower than a cell.
    """

    edge_share: float
    peak_share: float

    @property
    def problem(self):
        """A sentence saying why log p(x) on this grid cannot be trusted, or ``""`` when it can."""
        if self.edge_share > GRID_EDGE_SHARE:
            return (f"the posterior's mass reaches the grid's edge (its density there is {self.edge_share:.2%} of "
                    "its peak), so log p(x) misses what lies beyond: widen or move the grid to cover the posterior.")
        if self.peak_share > GRID_PEAK_SHARE:
            return (f"{self.peak_share:.0%} of the posterior's mass sits on one grid point (the posterior is "
                    "narrower than a cell), so log p(x) by quadrature is off: use a finer grid around the posterior.")
        return ""


GRID_EDGE_SHARE = 1e-3  # an outermost slice holding more than this share of the fullest slice: the grid is too narrow
GRID_PEAK_SHARE = 0.5  # one point holding more than half the mass: the posterior is narrower than ~0.8 cells


def grid_coverage(posterior):
    r"""Whether a :class:`GridPosterior` holds its posterior: mass at the grid's edge, mass within one cell.

    A grid that misses the posterior still "normalises" whatever tail it holds, so log p(x) by
    quadrature can be off by hundreds of nats without any sign; this is the sign. Returns a
    :class:`GridCoverage` (its ``.problem`` is a sentence, empty when the grid is fine).
    Introduced in lesson 4 (the ELBO widget warns with it).
    """
    weights = np.exp(np.asarray(posterior.log_density, np.float64)) * float(posterior.cell_volume)  # sums to 1
    points = np.asarray(posterior.points)
    shape = tuple(len(np.unique(points[:, i])) for i in range(points.shape[1]))
    weights = weights.reshape(shape)
    edge = 0.0
    for i in range(weights.ndim):
        marginal = weights.sum(axis=tuple(j for j in range(weights.ndim) if j != i))
        edge = max(edge, max(marginal[0], marginal[-1]) / marginal.max())
    return GridCoverage(float(edge), float(weights.max()))


def naive_log_evidence(key, log_likelihood, latent_dim, num_samples):
    r"""Naive Monte Carlo log p(x) with samples from the prior.

    .. math:: \log \hat p(x) = \log \frac1S \sum_{s=1}^S p(x | z_s), \qquad z_s \sim \mathcal N(0, I)

    Unbiased for p(x) but, by Jensen's inequality, biased *low* for log p(x); both the
    bias and the variance shrink like 1/S once S is large — and "large" is enormous
    when p(x|z) is peaked in a small part of the prior's mass.

    Args:
        key: a ``jax.random`` key; ``z = jax.random.normal(key, (num_samples, latent_dim))``.
        log_likelihood: ``z (latent_dim,) -> log p(x | z)`` (scalar).
        latent_dim: d.
        num_samples: S >= 1. The S draws are evaluated in blocks of :data:`SAMPLE_BLOCK`, so memory
            does not grow with S (a decoder's ``(S, pixels)`` logits are never held at once).

    Returns:
        scalar estimate of log p(x). Introduced in lesson 3 (exercise ``ex03_naive_mc``).
    """
    _args.prng_key("key", key)
    num_samples, latent_dim = _args.count("num_samples", num_samples), _args.count("latent_dim", latent_dim)
    log_likelihood = _args.function("log_likelihood", log_likelihood, "z (latent_dim,) -> log p(x | z)")
    return _naive_log_evidence(key, log_likelihood, latent_dim, num_samples)


# One program (see _args.function); the samples in blocks (_per_sample), so memory stays flat in num_samples.
@functools.partial(jax.jit, static_argnames=("latent_dim", "num_samples"))
def _naive_log_evidence(key, log_likelihood, latent_dim, num_samples):
    z = jax.random.normal(key, (num_samples, latent_dim))  # the draws of the docstring, whatever the blocks
    log_lik = _per_sample(log_likelihood, z)
    _args.one_value_per_sample("log_likelihood", log_lik, num_samples, what="log p(x | z)")
    return jax.nn.logsumexp(log_lik) - jnp.log(num_samples)


def grid_evaluations(points_per_axis, latent_dim):
    """Number of log-joint evaluations ``G**d`` of a grid with G points per axis in d dimensions.

    A Python ``int`` (exact, no overflow). Introduced in lesson 3.
    """
    return int(points_per_axis) ** int(latent_dim)


def decoder_log_likelihood(decoder, x):
    """``z (d,) -> log p(x | z)`` for a Bernoulli decoder (logits ``decoder(z)``).

    Args:
        decoder: a callable (e.g. :class:`vae_lite.networks.Decoder`) mapping ``(d,)`` to logits ``(D,)``.
        x: ``(D,)`` one binary image.

    Introduced in lesson 3.
    """
    return Partial(_decoder_log_likelihood, _pytree_decoder(decoder), _args.one_image("x", x))


def decoder_log_joint(decoder, x):
    """``z (d,) -> log p(x | z) + log p(z)`` for a Bernoulli decoder and a standard normal prior.

    Args:
        decoder: a callable (e.g. :class:`vae_lite.networks.Decoder`) mapping ``(d,)`` to logits ``(D,)``.
        x: ``(D,)`` one binary image.

    Returns a ``jax.tree_util.Partial`` (the decoder's weights and x are its arrays), so the
    estimators compile it once for all images. Introduced in lesson 3; lessons 4 and 7 use it
    for trained VAEs.
    """
    return Partial(_decoder_log_joint, _pytree_decoder(decoder), _args.one_image("x", x))


def _pytree_decoder(decoder):
    """An NNX module is a pytree already (its weights become arguments); any other callable is wrapped."""
    return decoder if isinstance(decoder, nnx.Module) else _args.function("decoder", decoder, "z (d,) -> logits (D,)")


def _decoder_log_likelihood(decoder, x, z):
    return log_bernoulli(x, decoder(z))


def _decoder_log_joint(decoder, x, z):
    return log_bernoulli(x, decoder(z)) + log_normal_std(z)
