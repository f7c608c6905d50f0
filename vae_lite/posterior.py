"""The posterior p(z|x) and the evidence p(x): exact where possible, on a grid otherwise (lesson 3).

Holds the linear-Gaussian latent model, the ground truth for every estimator in the
series: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I), for which log p(x) and p(z|x)
are Gaussian in closed form.
"""

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

    def _check_x(self, x):
        if jnp.shape(x) != jnp.shape(self.b):
            raise ValueError(f"x must have shape {jnp.shape(self.b)} (one data point), got {jnp.shape(x)}.")

    def log_joint(self, x):
        r"""``z (d,) -> log p(x, z) = log N(x; W z + b, sigma^2 I) + log N(z; 0, I)`` for a fixed ``x (D,)``.

        A ``jax.tree_util.Partial`` (the model and x are its arrays), so the estimators compile
        it once for all data points of a shape.
        """
        self._check_x(x)
        return Partial(_linear_gaussian_log_joint, self, jnp.asarray(x))

    def log_evidence(self, x):
        r"""Exact log p(x) = log N(x; b, W W^T + sigma^2 I), for ``x (D,)``."""
        self._check_x(x)
        cov = self.W @ self.W.T + self.sigma**2 * jnp.eye(self.b.shape[0])
        return jax.scipy.stats.multivariate_normal.logpdf(x, self.b, cov)

    def posterior(self, x):
        r"""Exact posterior p(z|x) = N(m, S) with S = (I + W^T W / sigma^2)^{-1}, m = S W^T (x - b) / sigma^2.

        Returns:
            ``(mean (d,), cov (d, d))``.
        """
        self._check_x(x)
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


GRID_BLOCK = 2048  # grid points evaluated together by grid_posterior


MAX_GRID_POINTS = 2**24  # about 17 million points: a 4097 x 4097 grid


def _linear_gaussian_log_joint(model, x, z):
    mean = model.W @ z + model.b
    log_lik = -0.5 * jnp.sum(jnp.log(2 * jnp.pi * model.sigma**2) + (x - mean) ** 2 / model.sigma**2)
    return log_lik + log_normal_std(z)


def _check_axes(axes):
    """The axes as arrays, checked: 1-D, at least 2 points, evenly spaced, a grid of sensible size."""
    if hasattr(axes, "ndim") and axes.ndim == 2 and axes.shape[0] > 8:
        raise ValueError(
            f"grid must be a list of d 1-D axes (one per latent dimension), got one array of shape {axes.shape}; "
            "pass the axes themselves, e.g. [jnp.linspace(-4, 4, 101)] * 2, not make_grid(...)'s points."
        )
    axes = [jnp.asarray(a) for a in axes]
    if not axes:
        raise ValueError("axes must hold at least one 1-D array (one per latent dimension).")
    for i, a in enumerate(axes):
        if a.ndim != 1 or a.shape[0] < 2:
            raise ValueError(f"axis {i} must be a 1-D array of at least 2 points, got shape {a.shape}.")
        _args.floating(f"axis {i}", a)
        values = _args.concrete(a)
        steps = np.diff(values.astype(np.float64)) if values is not None else np.ones(1)
        if not (np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-3, atol=0)):
            raise ValueError(
                f"axis {i} must be increasing and evenly spaced (quadrature weighs every point by one cell "
                f"volume), got steps from {steps.min():.4g} to {steps.max():.4g}; use jnp.linspace(low, high, n)."
            )
    size = float(np.prod([a.shape[0] for a in axes], dtype=np.float64))
    if size > MAX_GRID_POINTS:
        raise ValueError(
            f"a grid of {' x '.join(str(a.shape[0]) for a in axes)} = {size:.3g} points is too large "
            f"(at most {MAX_GRID_POINTS}); a grid costs G**d evaluations, so use fewer points or dimensions."
        )
    return axes


def make_grid(axes):
    """Points of the regular grid spanned by 1-D ``axes``.

    Args:
        axes: a sequence of d evenly spaced 1-D arrays, of lengths ``G1, ..., Gd``.

    Returns:
        ``(G1*...*Gd, d)`` points, in ``indexing="ij"`` order (the last axis varies
        fastest), so ``values.reshape(G1, ..., Gd)`` puts axis i along array axis i.
        Introduced in lesson 3.
    """
    axes = _check_axes(axes)
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
    if jnp.ndim(log_joint_values) != 1:
        raise ValueError(
            f"log_joint_values must be a 1-D array (one value per grid point), got shape "
            f"{jnp.shape(log_joint_values)}; flatten it with .ravel()."
        )
    if jnp.ndim(cell_volume) != 0:
        raise ValueError(f"cell_volume must be a scalar, got shape {jnp.shape(cell_volume)}.")
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
    grid = _check_axes(grid)
    points = make_grid(grid)
    cell_volume = 1.0
    for a in grid:
        cell_volume = cell_volume * (a[1] - a[0])
    # blocks of points: a decoder's (points, pixels) logits for a fine 2-D grid would need ~1 GB at once
    log_joint_values = jax.lax.map(log_joint, points, batch_size=min(points.shape[0], GRID_BLOCK))
    if log_joint_values.shape != points.shape[:1]:
        raise ValueError(
            f"log_joint must map one latent vector (d,) to a scalar; on {points.shape[0]} grid "
            f"points it returned shape {log_joint_values.shape}."
        )
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
        num_samples: S >= 1.

    Returns:
        scalar estimate of log p(x). Introduced in lesson 3 (exercise ``ex03_naive_mc``).
    """
    _args.prng_key("key", key)
    num_samples, latent_dim = _args.count("num_samples", num_samples), _args.count("latent_dim", latent_dim)
    z = jax.random.normal(key, (num_samples, latent_dim))
    log_lik = jax.vmap(log_likelihood)(z)
    if log_lik.shape != (num_samples,):
        raise ValueError(
            f"log_likelihood must map z (d,) to a scalar; it returned shape {log_lik.shape[1:]}."
        )
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
    return Partial(_decoder_log_likelihood, _pytree_decoder(decoder), _one_image(x))


def decoder_log_joint(decoder, x):
    """``z (d,) -> log p(x | z) + log p(z)`` for a Bernoulli decoder and a standard normal prior.

    Args:
        decoder: a callable (e.g. :class:`vae_lite.networks.Decoder`) mapping ``(d,)`` to logits ``(D,)``.
        x: ``(D,)`` one binary image.

    Returns a ``jax.tree_util.Partial`` (the decoder's weights and x are its arrays), so the
    estimators compile it once for all images. Introduced in lesson 3; lessons 4 and 7 use it
    for trained VAEs.
    """
    return Partial(_decoder_log_joint, _pytree_decoder(decoder), _one_image(x))


def _one_image(x):
    if jnp.ndim(x) != 1:
        raise ValueError(
            f"x must be one flat image (pixels,), got shape {jnp.shape(x)}; use jax.vmap for a batch."
        )
    return jnp.asarray(x)


def _pytree_decoder(decoder):
    """An NNX module is a pytree already (its weights become arguments); any other callable is wrapped."""
    return decoder if isinstance(decoder, nnx.Module) else _args.function("decoder", decoder, "z (d,) -> logits (D,)")


def _decoder_log_likelihood(decoder, x, z):
    return log_bernoulli(x, decoder(z))


def _decoder_log_joint(decoder, x, z):
    return log_bernoulli(x, decoder(z)) + log_normal_std(z)
