"""Check of lesson 7's full-covariance exercise: the Monte Carlo ELBO of q = N(mean, L Lᵀ).

Re-exported by :mod:`vae_lite.grading` (``grading.check_full_covariance_elbo``) and built, as its
checks are, on :mod:`vae_lite._checking`; a module of its own to keep each file readable. The
references are float64 NumPy formulas for linear-Gaussian models whose posteriors are correlated
(:func:`expected_log_joint`, :func:`entropy`, the exact posterior and log p(x) of
:mod:`vae_lite._reference`): nothing here samples or integrates with the library's answer.
"""

import math

import jax
import numpy as np

from vae_lite._checking import Case, _exercise, _f32, _f64, _passed, as_array, call, compiled, expect_close
from vae_lite.grading import _np_log_joint, _np_posterior
from vae_lite.posterior import LinearGaussian

LOG_2PI = math.log(2 * math.pi)
NUM_STD_ERRORS = 6.0
"""Width of the statistical check in Monte Carlo standard errors: a correct estimator lands outside it
with probability about 2e-9 (a normal tail; the mean of thousands of log-weights is very nearly normal)."""


# ---------------------------------------------------------------- float64 references
def correlated_model(seed, data_dim, latent_dim, sigma, shared=1.5):
    """A linear-Gaussian model whose columns of W share a direction (so its posterior is correlated), as the
    student's function receives it (float32), and one data point ``x (D,)`` drawn from it."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(data_dim, latent_dim)) + shared * rng.normal(size=(data_dim, 1))
    b = rng.normal(size=data_dim)
    x = w @ rng.normal(size=latent_dim) + b + sigma * rng.normal(size=data_dim)
    return LinearGaussian(_f32(w), _f32(b), sigma), _f32(x)


def expected_log_joint(model, x, mean, cov):
    """E_{z ~ N(mean, cov)} log p(x, z) of the linear-Gaussian model, in closed form (float64): a Gaussian
    expectation of a quadratic, E[(a - W z)^2] = (a - W mean)^2 + tr(W cov W^T)."""
    w, b, x, mean, cov = (np.asarray(a, np.float64) for a in (model.W, model.b, x, mean, cov))
    s2, (size, d) = float(model.sigma) ** 2, w.shape
    resid = x - w @ mean - b
    log_lik = -0.5 * size * np.log(2 * np.pi * s2) - 0.5 * (resid @ resid + np.trace(w @ cov @ w.T)) / s2
    return log_lik - 0.5 * d * LOG_2PI - 0.5 * (mean @ mean + np.trace(cov))


def entropy(cov):
    """Entropy of N(., cov) in nats (float64)."""
    return 0.5 * (len(cov) * (LOG_2PI + 1.0) + np.linalg.slogdet(np.asarray(cov, np.float64))[1])


def exact_elbo(model, x, mean, cov):
    """The ELBO of q = N(mean, cov), E_q[log p(x, z)] + H[q], in closed form."""
    return expected_log_joint(model, x, mean, cov) + entropy(cov)


def _log_normal(z, mean, cov):
    """log N(z; mean, cov) for ``z (..., d)`` (float64)."""
    diff = np.asarray(z, np.float64) - mean
    return -0.5 * (len(mean) * LOG_2PI + np.linalg.slogdet(cov)[1]
                   + np.sum(diff * np.linalg.solve(cov, diff.T).T, -1))


def log_weight_std(model, x, mean, chol, seed, num_draws=20_000):
    """Standard deviation of one sample's log p(x, z) - log q(z), z ~ q = N(mean, L Lᵀ), from ``num_draws`` draws."""
    eps = np.random.default_rng(seed).standard_normal((num_draws, len(mean)))
    z = mean + eps @ chol.T
    return float(np.std(_np_log_joint(model, x, z) - _log_normal(z, mean, chol @ chol.T)))


def _expected_log_normal(mean_z, cov_z, mean, cov):
    """E_{z ~ N(mean_z, cov_z)} log N(z; mean, cov)."""
    diff = mean_z - mean
    return -0.5 * (len(mean) * LOG_2PI + np.linalg.slogdet(cov)[1]
                   + np.trace(np.linalg.solve(cov, cov_z)) + diff @ np.linalg.solve(cov, diff))


# ---------------------------------------------------------------- the typical mistakes
def _mistakes(model, x, mean, chol, ref):
    """``(hint, value)`` of each typical wrong answer: the value its estimator tends to (its expectation)."""
    cov, d = chol @ chol.T, len(mean)
    expected = expected_log_joint(model, x, mean, cov)
    log_det_chol = float(np.sum(np.log(np.diag(chol))))
    flipped = chol.T @ chol  # the covariance of samples that went through the factor from the wrong side
    symmetric = 0.5 * (chol + chol.T)  # chol read as a covariance (factorising it reads it symmetrised)
    positive = bool(np.all(np.linalg.eigvalsh(symmetric) > 0))
    transposed = ("your samples have covariance chol^T chol, not chol chol^T: the factor was applied to the noise "
                  "from the wrong side. Check one sample by hand: is z - mean the factor applied to that sample's "
                  "noise, or its transpose applied?")
    as_covariance = ("you treated chol as the covariance itself; it is a factor of it: q's covariance is chol "
                     "times its transpose, and its samples go through the factor")
    half = ("the log-determinant of q's covariance is half what it should be: you took the log-determinant of chol "
            "itself (or its diagonal as the variances). The covariance is chol times its transpose: how do the "
            "determinants of a matrix, of its transpose and of their product relate?")
    return [
        (transposed, expected_log_joint(model, x, mean, flipped) + entropy(cov)),
        (transposed, expected_log_joint(model, x, mean, flipped) - _expected_log_normal(mean, flipped, mean, cov)),
        (half, ref - 0.5 * log_det_chol),
        (half, expected - _expected_log_normal(mean, cov, mean, np.diag(np.diag(chol)))),
        ("the log-determinant of q's covariance counts twice: check the power of the determinant in a Gaussian's "
         "normalising constant", ref + log_det_chol),
        ("your log q treats q as a diagonal Gaussian with the variances on the diagonal of chol chol^T: q's "
         "coordinates are correlated, and the determinant of a correlated covariance is smaller than the product of "
         "its diagonal", expected + entropy(np.diag(np.diag(cov)))),
        ("your ELBO is off by a constant that depends only on the dimension d: the 2 pi part of the Gaussian's "
         "normalising constant is missing from log q", ref - 0.5 * d * LOG_2PI),
        ("your ELBO is off by a constant that depends only on the dimension d: the normalising constant of the "
         "Gaussian (its 2 pi and e parts) is missing", ref - 0.5 * d * (LOG_2PI + 1.0)),
        ("your ELBO is d/2 nats too low on average: a term of log q whose average is d/2 is missing (the one that "
         "depends on where the sample fell)", ref - 0.5 * d),
        ("wrong sign of the entropy: a wider q must raise the ELBO's entropy term; check the sign that log q enters "
         "with", expected - entropy(cov)),
        ("you returned the negative ELBO (a loss); return the ELBO", -ref),
        # chol read as a covariance only where that reading is one (positive definite); NaN is never matched
        (as_covariance, exact_elbo(model, x, mean, symmetric) if positive else np.nan),
        (as_covariance, expected - _expected_log_normal(mean, cov, mean, symmetric) if positive else np.nan),
    ]


# ---------------------------------------------------------------- the check
@_exercise("inference.full_covariance_elbo")
def check_full_covariance_elbo(fn):
    """Lesson 7, ``ex07_full_cov``: ``full_covariance_elbo(key, log_joint, mean (d,), chol (d, d), num_samples)``
    ``-> scalar``, the Monte Carlo ELBO of q = N(mean, chol cholᵀ), averaging log p(x, z_s) - log q(z_s).

    Two kinds of test input on linear-Gaussian models with correlated posteriors (float64 references):

    * **exactness**: mean and chol are the exact posterior's mean and Cholesky factor. Then every sample's
      log p(x, z_s) - log q(z_s) equals log p(x), so the estimate must equal log p(x) for any
      ``num_samples`` (4000, then 1) up to float32 rounding (1e-3 nats + 1e-5 relative).
    * **statistical**: a shifted mean and a tilted, non-symmetric factor, ``num_samples = 4000``. The estimate must
      lie within :data:`NUM_STD_ERRORS` Monte Carlo standard errors of the closed-form ELBO
      E_q[log p(x, z)] + H[q] (the standard deviation of one log-weight from 20 000 NumPy draws, + 1e-3
      relative), so a correct estimator fails with probability below 1e-8 (fixed keys: deterministic).
    """
    exact_tol = {"rtol": 1e-5, "atol": 1e-3}
    # (seed of the model, num_samples, q: None for the exact posterior, else (offset of the mean from the
    # posterior mean, a lower-triangular "tilt" T: chol = (posterior's Cholesky factor) T, not symmetric))
    cases = ((11, 4000, None),
             (11, 4000, ([0.1, -0.1, 0.05], [[1.1, 0.0, 0.0], [0.5, 0.8, 0.0], [0.3, -0.4, 1.0]])),
             (21, 4000, ([-0.15, 0.1, 0.1], [[1.2, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.5, 0.4, 1.1]])),
             (26, 1, None))
    d = 3  # one latent size and two sample counts: few shapes for JAX to compile the student's function for
    student = compiled(fn, static_argnums=4)  # num_samples fixes the shapes
    for i, (seed, num_samples, q) in enumerate(cases):
        model, x = correlated_model(seed, d + 3, d, 0.6)
        post_mean, post_cov, log_px = _np_posterior(model, x)
        post_chol = np.linalg.cholesky(post_cov)
        if q is None:  # the exact posterior
            mean, chol = _f64(_f32(post_mean)), _f64(_f32(post_chol))
        else:
            mean, chol = _f64(_f32(post_mean + np.array(q[0]))), _f64(_f32(post_chol @ np.array(q[1])))
        case = Case("check_full_covariance_elbo", i, len(cases), {
            "key": f"jax.random.key({i})", "log_joint": "log p(x, z) of a linear-Gaussian model", "mean": mean,
            "chol": chol, "num_samples": num_samples})
        ref = exact_elbo(model, x, mean, chol @ chol.T)  # = log p(x) (up to float32 rounding) when exact
        mistakes = _mistakes(model, x, mean, chol, ref)  # at the posterior, a sampling mistake may go unseen
        got = as_array(case, call(case, student, jax.random.key(i), model.log_joint(x), _f32(mean), _f32(chol), num_samples),
            (), shape_hints={(num_samples,): "one value per sample: the ELBO estimate is a single number, their "
                             "average", (d,): "one value per latent dimension: the ELBO is a single number"},
            nonfinite_hint="log of a non-positive number? chol's diagonal is positive, but its other entries, and the "
            "entries of the covariance, may be negative")
        if q is None:
            # an estimator right only on average is told apart from the exact one only with many samples
            average = log_px if num_samples >= 100 else np.nan
            expect_close(case, got, log_px, **exact_tol,
                hint="q is the exact posterior here, so every sample's log p(x, z_s) - log q(z_s) is the same number, "
                "log p(x): your estimate must equal it for any num_samples. Compare log q at one sample with the "
                "density of N(mean, chol chol^T) written out (section 10)",
                variants=[(h, v, 0.15) for h, v in mistakes if not abs(v - log_px) <= 0.3] + [
                    ("right on average, but not exact when q is the posterior: you replaced log q at each sample by "
                     "its average over q (the entropy). Use each sample's own log q(z_s), as in lesson 4's ELBO",
                     average, 6 * math.sqrt(d / (2 * num_samples)) + 1e-3)])
        else:
            tol = NUM_STD_ERRORS * log_weight_std(model, x, mean, chol, seed=i) / math.sqrt(num_samples)
            tol += 1e-3 * (1 + abs(ref))
            expect_close(case, got, ref, rtol=0, atol=tol,
                hint="estimate the ELBO as in lesson 4, from samples of q = N(mean, chol chol^T) made of standard "
                f"normal noise and the factor chol, with q's own log-density (section 10) (tolerance {tol:.3f})",
                variants=mistakes + [
                    ("this is close to log p(x): a logsumexp over samples estimates log p(x), not the ELBO; the ELBO "
                     "is a plain average over the samples", log_px, max(tol, 0.05))])
    return _passed("check_full_covariance_elbo", len(cases))
