"""Check of lesson 2's fair-generator exercise: draws from the Gaussian fitted to an autoencoder's codes.

Re-exported by :mod:`vae_lite.grading` (``grading.check_fair_generator``) and built, as its checks
are, on :mod:`vae_lite._checking`. The reference is the codes' own mean and covariance in float64
NumPy; the comparison is statistical: the mean and covariance of the student's draws must match
them within a bound set by their Monte Carlo standard errors, so any correct sampler passes,
whichever square root of the covariance it uses.
"""

import jax
import numpy as np

from vae_lite._checking import Case, _exercise, _f32, _f64, _passed, as_array, call, expect_close

NUM_SAMPLES = 20_000
"""Draws asked of the student's function on the sets of codes with d > 1 (on the d = 1 set, 1.5 times as
many: a second num_samples, at no extra compilation, catches a hard-coded one)."""
STANDARD_ERRORS = 6.0
"""The tolerance, in Monte Carlo standard errors of each compared entry."""


def _code_sets():
    """The three fixed code sets ``(name, codes (n, d) float64 holding float32 values)``: d = 2 strongly
    correlated with unequal scales, d = 1, and d = 10 codes from a lumpy three-cluster cloud (not
    Gaussian, as an autoencoder's are). Each has a non-zero mean and a full-rank covariance far from
    the identity, and ``num_samples`` for it. (Few sets, and one num_samples per set: every new shape
    costs the student's function its compilations, about half a second.)"""
    rng = np.random.default_rng(20)
    sets = []
    cov2 = np.array([[4.0, 0.95], [0.95, 0.25]])  # standard deviations 2 and 0.5, correlation 0.95
    sets.append(("correlation 0.95, standard deviations 2 and 0.5",
                 rng.multivariate_normal([3.0, -2.0], cov2, size=500)))
    sets.append(("one latent dimension", rng.normal(1.5, 0.3, size=(50, 1))))
    centres = rng.normal(0.0, 3.0, (3, 10)) + 1.0
    lumps = centres[rng.integers(0, 3, 2000)] + rng.normal(size=(2000, 10)) @ rng.normal(0.0, 0.6, (10, 10))
    sets.append(("three clusters: not Gaussian, as an autoencoder's codes", lumps))
    sizes = {1: NUM_SAMPLES * 3 // 2}
    return [(name, _f64(_f32(codes)), sizes.get(codes.shape[1], NUM_SAMPLES)) for name, codes in sets]


def _moment_se(cov, num_samples):
    """Monte Carlo standard errors of the sample mean ``(d,)`` and sample covariance ``(d, d)`` of
    ``num_samples`` Gaussian draws with covariance ``cov``: se(C_jk)^2 = (S_jj S_kk + S_jk^2) / N."""
    var = np.diag(cov)
    return np.sqrt(var / num_samples), np.sqrt((np.outer(var, var) + cov**2) / num_samples)


def _copies(samples, codes):
    """Share of the rows of ``samples`` that are exact (float32) copies of a row of ``codes``."""
    rows = {row.tobytes() for row in codes.astype(np.float32)}
    return float(np.mean([row.tobytes() in rows for row in samples.astype(np.float32)]))


@_exercise("sampling.sample_fitted_gaussian")
def check_fair_generator(fn):
    """Lesson 2, ``ex02_fair_generator``: ``sample_fitted_gaussian(key, codes (n, d), num_samples)``
    ``-> (num_samples, d)`` draws of N(m, S), m and S the mean and covariance of the codes.

    Statistical check on three fixed code sets (d = 2 strongly correlated, d = 1, d = 10 from a
    three-cluster cloud; non-zero means, full-rank covariances far from I) with ``num_samples =
    20 000`` (30 000 for d = 1): the draws' mean within 6 standard errors of m and their covariance
    within 6 standard errors of S, entry by entry, where S may be the maximum-likelihood (1/n) or the
    unbiased (1/(n - 1)) estimate (the bound adds their difference). That is 72 comparisons; each
    fails a correct sampler with probability about 2e-9 (normal tails; for the covariance entries
    the Edgeworth correction of their skewness, 0.02 at 20 000 draws, makes it at most 3e-9), so a
    correct sampler fails with probability < 72 x 3e-9 < 1e-6. The keys are fixed, so the result is
    deterministic.
    Also: the shape, finite values, draws that are not copies of the codes (resampling them is not
    sampling a fitted density), the same key giving the same draws and another key other draws.
    """
    code_sets = _code_sets()
    total = len(code_sets)
    for i, (name, codes, num_samples) in enumerate(code_sets):
        n, d = codes.shape
        case = Case("check_fair_generator", i, total,
                    {"codes": codes, "(n, d)": f"{codes.shape}, {name}", "num_samples": num_samples})
        mean = codes.mean(axis=0)
        centred = codes - mean
        cov_ml = centred.T @ centred / n
        cov_unbiased = cov_ml * n / (n - 1)
        se_mean, se_cov = _moment_se(cov_unbiased, num_samples)
        tol_mean = STANDARD_ERRORS * se_mean + 1e-6
        tol_cov = STANDARD_ERRORS * se_cov + np.abs(cov_unbiased - cov_ml) + 1e-6

        def draw(key, case=case, codes=codes, num_samples=num_samples, d=d, n=n):
            return as_array(
                case, call(case, fn, jax.random.key(key), _f32(codes), num_samples), (num_samples, d),
                name="your samples",
                shape_hints={
                    (n, d): "one row per code: the function returns num_samples new draws, not one per code",
                    (d, num_samples): "one row per draw, one column per latent dimension: your result is transposed",
                    (num_samples, n): "one column per code: your covariance is between the codes instead of between "
                    "the latent dimensions; which axis of codes holds the dimensions?",
                    (num_samples,): "keep one column per latent dimension, (num_samples, d), even when d = 1",
                    (d, d): "this is a (d, d) matrix: return the draws themselves, (num_samples, d)",
                },
                nonfinite_hint="NaN or inf: did you take an entry-by-entry square root of the covariance? Its "
                "off-diagonal entries can be negative, and an entrywise root is not the matrix root that turns "
                "standard-normal noise into noise with covariance S")

        samples = draw(i)
        if _copies(samples, codes) > 0.5:
            case.fail("most of your samples are exact copies of codes", hint="resampling the codes (or returning "
                      "them) only repeats what the encoder produced; the exercise fits a Gaussian to the codes and "
                      "draws NEW codes from it")
        got_mean = samples.mean(axis=0)
        got_cov = np.cov(samples, rowvar=False).reshape(d, d)
        _check_mean(case, got_mean, got_cov, mean, tol_mean, num_samples)
        _check_cov(case, got_cov, mean, cov_ml, tol_cov, n, num_samples)
        if not np.array_equal(draw(i), samples):
            case.fail("the same key gave different samples", hint="draw all randomness from the key you are given "
                      "(jax.random with that key), not from NumPy's or another global random state")
        if np.array_equal(draw(100 + i), samples):
            case.fail("two different keys gave the same samples",
                      hint="use the key you are given instead of a fixed jax.random.key(0)")
    return _passed("check_fair_generator", total)


def _check_mean(case, got_mean, got_cov, mean, tol, num_samples):
    d = len(mean)
    looks_standard = np.all(np.abs(got_cov - np.eye(d)) <= STANDARD_ERRORS * _moment_se(np.eye(d), num_samples)[1])
    centred_at_zero = (
        "your samples look like draws of N(0, I): the codes are not used at all. The fair generator fits a "
        "Gaussian to the codes (their centre and their spread) and draws from that one"
        if looks_standard else
        "your samples are centred at 0 but the codes are not: you forgot to put the codes' mean back into the "
        "draws")
    expect_close(case, got_mean, mean, rtol=0, atol=tol, name="the mean of your samples",
        hint="the mean of your draws must be the codes' mean m: which part of your function sets where the draws "
        f"are centred? (tolerance: {STANDARD_ERRORS:g} Monte Carlo standard errors per entry, {tol.max():.3g} at most "
        "here)",
        variants=[(centred_at_zero, np.zeros(d), STANDARD_ERRORS * np.sqrt(np.diag(got_cov) / num_samples))])


def _check_cov(case, got_cov, mean, cov, tol, num_codes, num_samples):
    d = len(mean)
    lower = np.linalg.cholesky(cov)
    entrywise_root = np.sqrt(np.abs(cov)) * np.sign(cov)

    wrong_covariances = [  # (the mistake, the covariance its draws have)
        ("your samples have covariance I: the codes' spread is missing. Draws of N(0, I) shifted to the codes' "
         "mean are not draws of the Gaussian fitted to them, which also has the codes' covariance", np.eye(d)),
        ("your samples have the codes' variances but none of their correlations: you used only the spread of each "
         "dimension on its own (the diagonal); the codes' dimensions are correlated, and the fitted Gaussian has "
         "their full covariance", np.diag(np.diag(cov))),
        ("your samples' covariance is the codes' covariance SQUARED: you scaled the noise by the covariance itself. "
         "A covariance is a squared scale; the noise needs a square root of it, and with correlated dimensions a "
         "matrix one", cov @ cov),
        ("your samples' variances are the codes' variances squared and their correlations are lost: you scaled each "
         "dimension's noise by its variance instead of a scale (a standard deviation, and with correlated "
         "dimensions a matrix square root of the covariance)", np.diag(np.diag(cov) ** 2)),
        ("your samples' covariance is what a matrix root of S gives when it is applied from the wrong side "
         "(transposed): work out the covariance of your draws from the matrix you multiply the noise by, and "
         "compare it with S", lower.T @ lower),
        ("you took an entry-by-entry square root of the covariance: that is not a matrix whose square gives S; work "
         "out the covariance of your draws from the matrix you multiply the noise by",
         entrywise_root @ entrywise_root.T),
        ("your covariance includes the mean: the codes were not centred before their outer products were averaged, "
         "so you used their second moment, not their covariance", cov + np.outer(mean, mean)),
        ("your covariance is about n times too large: the outer products were summed but not averaged over the "
         "codes", cov * num_codes),
    ]
    expect_close(case, got_cov, cov, rtol=0, atol=tol, name="the covariance of your samples",
        hint="draws of the fitted Gaussian must have the codes' covariance S, correlations included: standard-normal "
        "noise has covariance I, so work out what your transformation of the noise does to its covariance and "
        f"choose it so that the result is S (tolerance: {STANDARD_ERRORS:g} Monte Carlo standard errors per entry)",
        variants=[(mistake, wrong, STANDARD_ERRORS * _moment_se(wrong, num_samples)[1])  # each with its own spread
                  for mistake, wrong in wrong_covariances])
