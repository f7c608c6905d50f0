"""The posterior p(z|x) and the evidence p(x): exact where possible, on a grid otherwise (lesson 3).

Holds the linear-Gaussian latent model, the ground truth for every estimator in the
series: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I), for which log p(x) and p(z|x)
are Gaussian in closed form.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

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
        """``z (d,) -> log p(x, z)`` for a fixed data point ``x (D,)``."""
        self._check_x(x)

        def log_joint(z):
            mean = self.W @ z + self.b
            log_lik = -0.5 * jnp.sum(jnp.log(2 * jnp.pi * self.sigma**2) + (x - mean) ** 2 / self.sigma**2)
            return log_lik + log_normal_std(z)

        return log_joint

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
        """Ancestral samples ``(z (n, d), x (n, D))`` from p(z) p(x|z)."""
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


def make_grid(axes):
    """Points ``(G1*...*Gd, d)`` of the regular grid spanned by 1-D ``axes`` (each evenly spaced)."""
    axes = [jnp.asarray(a) for a in axes]
    for i, a in enumerate(axes):
        if a.ndim != 1 or a.shape[0] < 2:
            raise ValueError(f"axis {i} must be a 1-D array of at least 2 points, got shape {a.shape}.")
    return jnp.stack([m.ravel() for m in jnp.meshgrid(*axes, indexing="ij")], axis=-1)


def grid_posterior(log_joint, grid):
    r"""Exact (up to quadrature) posterior and log-evidence on a regular grid.

    .. math:: \log p(x) \approx \log \sum_g p(x, z_g)\,\Delta, \qquad
        p(z_g | x) = p(x, z_g) / p(x)

    Args:
        log_joint: ``z (d,) -> log p(x, z)``.
        grid: a sequence of d evenly spaced 1-D axes, e.g. ``[jnp.linspace(-4, 4, 101)] * 2``.

    Returns:
        a :class:`GridPosterior`. Introduced in lesson 3.
    """
    points = make_grid(grid)
    cell_volume = 1.0
    for a in grid:
        cell_volume = cell_volume * (a[1] - a[0])
    log_joint_values = jax.vmap(log_joint)(points)
    log_evidence = jax.nn.logsumexp(log_joint_values) + jnp.log(cell_volume)
    return GridPosterior(points, log_joint_values - log_evidence, log_evidence, cell_volume)


def decoder_log_joint(decoder, x):
    """``z (d,) -> log p(x | z) + log p(z)`` for a Bernoulli decoder and a standard normal prior.

    Args:
        decoder: a callable (e.g. :class:`vae_lite.networks.Decoder`) mapping ``(d,)`` to logits ``(D,)``.
        x: ``(D,)`` one binary image.

    Introduced in lesson 3; lessons 4 and 6 use it for trained VAEs.
    """
    return lambda z: log_bernoulli(x, decoder(z)) + log_normal_std(z)
