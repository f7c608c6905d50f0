"""The check of lesson 4's importance-weighted bound exercise (``ex04_iwae``).

Re-exported by :mod:`vae_lite.grading` (``grading.check_iwae_bound``) and built, as its checks are,
on :mod:`vae_lite._checking`; a module of its own only to keep each file readable. Every reference
is float64 NumPy on exact linear-Gaussian models (:mod:`vae_lite._reference`, through the helpers of
:mod:`vae_lite.grading`): the closed-form log p(x) and ELBO, and the bound itself from the same noise
``jax.random.normal(key, (num_samples, d))`` the exercise prescribes; nothing here calls
:func:`vae_lite.elbo.log_evidence_is`, the library's answer.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vae_lite import _reference as R
from vae_lite._checking import Case, _exercise, _f32, _f64, _passed, as_array, call, expect_close
from vae_lite.grading import (
    _expected_log_joint,
    _expected_log_q,
    _linear_gaussian,
    _np_log_joint,
    _np_posterior,
)
from vae_lite.posterior import LinearGaussian

STAT_KEYS = 20  # keys per sample size in the statistical part of the check
STAT_SAMPLE_SIZES = (1, 10, 100)


def _log_mean_exp(log_w, axis=-1):
    """log of the mean of exp(log_w) along ``axis``, in float64."""
    return R.logsumexp(log_w, axis=axis) - np.log(np.shape(log_w)[axis])


def _log_q(z, mu, log_var):
    """log N(z; mu, diag e^log_var) for ``z (..., d)``, in float64."""
    return -0.5 * np.sum(R.LOG_2PI + log_var + (z - mu) ** 2 / np.exp(log_var), axis=-1)


def _orthogonal_linear_gaussian(seed, data_dim, scales, sigma):
    """A linear-Gaussian model whose ``W`` has orthogonal columns (lengths ``scales``), and one ``x`` from it.

    ``W^T W`` is diagonal, so the posterior covariance ``(I + W^T W / sigma^2)^-1`` is diagonal too and a
    diagonal q can be the exact posterior.
    """
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(data_dim, len(scales))))
    w, b = basis * np.asarray(scales), rng.normal(size=data_dim)
    x = w @ rng.normal(size=len(scales)) + b + sigma * rng.normal(size=data_dim)
    return LinearGaussian(_f32(w), _f32(b), sigma), _f32(x)


def _noise(key, num_samples, d):
    """The noise the exercise prescribes, ``jax.random.normal(key, (num_samples, d))``, as the student may draw
    it: float32, or float64 under ``jax_enable_x64`` (the two differ)."""
    return [_f64(jax.random.normal(key, (num_samples, d), dtype)) for dtype in (jnp.float32, None)]


def _make_bound(model, x, mu, log_var):
    """``bound(eps, spread=..., combine=..., weight=...)``: the bound and its typical wrong versions from noise
    ``eps (K, d)``, in float64. ``spread`` turns log_var into the scale of the noise, ``weight`` makes the
    log-weights from log p(x, z) and log q(z), ``combine`` makes one number from the K log-weights."""

    def bound(eps, spread=lambda lv: np.exp(0.5 * lv), combine=_log_mean_exp,
              weight=lambda log_joint, log_q: log_joint - log_q, shift=True):
        z = (mu if shift else 0.0) + spread(log_var) * eps
        return combine(weight(_np_log_joint(model, x, z), _log_q(z, mu, log_var)))

    return bound


def _variants(bound, eps, key, num_samples, d):
    """The typical wrong answers for noise ``eps``, each with the hint that names the mistake."""
    other_noise = ("your samples differ from the check's: draw the noise with one call, "
                   "jax.random.normal(key, (num_samples, d)), with the key as given")
    return [
        ("you averaged the log-weights: that is the ELBO of ex04_elbo again. This bound averages the weights "
         "themselves and takes the log of that average (section 7)",
         lambda: bound(eps, combine=np.mean)),
        ("your value is off by log K: you summed the K weights where the bound averages them (a sum grows with "
         "K); what does dividing by K become in log space?", lambda: bound(eps, combine=R.logsumexp)),
        ("the weight has no q in it: an importance weight divides the joint p(x, z) by the density of the "
         "distribution that drew z, here q", lambda: bound(eps, weight=lambda log_joint, log_q: log_joint)),
        ("wrong sign of log q: the weight DIVIDES p(x, z) by q(z); check the sign q's log-density enters with",
         lambda: bound(eps, weight=lambda log_joint, log_q: log_joint + log_q)),
        ("your samples have the wrong spread: you scaled the noise by exp(log_var), the variance; which of "
         "sigma, sigma**2 and log sigma**2 does the noise need?", lambda: bound(eps, spread=np.exp)),
        ("you used log_var as the standard deviation: log_var is log sigma**2, so what is sigma?",
         lambda: bound(eps, spread=lambda lv: lv)),
        ("your samples come from N(0, I), not from q: shift and scale the noise by q's mean and standard "
         "deviation, as in section 2", lambda: bound(eps, spread=np.ones_like, shift=False)),
        ("your samples are not centred on q's mean: the noise must be shifted by mu as well as scaled",
         lambda: bound(eps, shift=False)),
        ("you kept only the largest weight (a max): the bound averages all K weights",
         lambda: bound(eps, combine=np.max)),
        ("you returned the average weight; return its log", lambda: np.exp(bound(eps))),
        (other_noise + " (no key splitting)",
         lambda: bound(_f64(jax.random.normal(jax.random.split(key)[0], (num_samples, d))))),
        (other_noise + " (no key splitting)",
         lambda: bound(_f64(jax.random.normal(jax.random.split(key)[1], (num_samples, d))))),
        (other_noise + " (shape (num_samples, d), not transposed)",
         lambda: bound(_f64(jax.random.normal(key, (d, num_samples))).T)),
    ]


@_exercise("elbo.log_evidence_is")
def check_iwae_bound(fn):
    """Lesson 4, ``ex04_iwae``: ``iwae_bound(key, log_joint, mu (d,), log_var (d,), num_samples) -> scalar``.

    The importance-weighted bound with K = ``num_samples`` samples z_k ~ q = N(mu, diag e^log_var):
    :math:`\\log \\frac1K \\sum_k p(x, z_k) / q(z_k)`, the noise drawn as the exercise says,
    ``eps = jax.random.normal(key, (K, d))``. Four parts, on exact linear-Gaussian models:

    1. Exactness: W with orthogonal columns makes the posterior diagonal, and with q equal to it every
       weight is p(x), so the bound is the closed-form log p(x) for every K (1, 10, 100; any noise).
    2. The same noise: a q that is not the posterior, K = 10, 100, 1; compared with the bound computed in
       float64 from the same ``eps`` (float32 or, under ``jax_enable_x64``, float64 draws).
    3. The same q at a data point moved 36 units off the model's plane (orthogonal to W's columns, so the
       posterior stays put): every log-weight drops by about 1000, and exp of them underflows.
    4. Statistics, over :data:`STAT_KEYS` keys for each K in :data:`STAT_SAMPLE_SIZES`: the average bound
       lies between the ELBO (closed form) and log p(x), equals the expected K-sample bound (at K = 1 the
       ELBO; else a float64 Monte Carlo of 2 * 10^5 log-weights) and rises from K = 10 to 100.
       Tolerances are 6 standard errors (the spread of the K-sample bound, from that Monte Carlo, over
       sqrt(:data:`STAT_KEYS`), plus the Monte Carlo's own error) + 1e-3: a correct estimator that drew other
       noise would fail each comparison with probability about 2e-9 (normal approximation); with the
       prescribed noise the keys are fixed, so the result is deterministic.
    """
    name, total = "check_iwae_bound", 3 + 3 + 1 + len(STAT_SAMPLE_SIZES)
    index = iter(range(total))
    lg_text = "log p(x, z) of a linear-Gaussian model"

    def run(log_joint, mu, log_var, key_seed, num_samples, ref_of_noise, extra="", nonfinite_hint=None):
        """Call the student's function once; returns the case, its result, the noise it drew (float32 or float64)
        and the key."""
        nonfinite_hint = nonfinite_hint or (
            "log of 0 or of a negative number? log_var is a LOG-variance and may be negative (no square root or log "
            "of it); and a weight formed with exp can underflow to 0: keep the weights in log space")
        d = len(mu)
        key = jax.random.key(key_seed)
        case = Case(name, next(index), total, {"key": f"jax.random.key({key_seed})", "log_joint": lg_text + extra,
                                               "mu": mu, "log_var": log_var, "num_samples": num_samples})
        draws = _noise(key, num_samples, d)
        got = as_array(case, call(case, fn, key, log_joint, _f32(mu), _f32(log_var), num_samples), (),
            shape_hints={(num_samples,): "one value per sample: the bound combines the K weights into a single "
                         "number", (num_samples, d): "you returned the samples: return the bound, one number"},
            nonfinite_hint=nonfinite_hint)
        eps = min(draws, key=lambda e: abs(got - ref_of_noise(e)))
        return case, got, eps, key

    # ---- 1. exactness: q is the posterior, every weight is p(x)
    model, x = _orthogonal_linear_gaussian(70, 4, (1.5, 0.7), 0.6)
    post_mean, post_cov, log_px = _np_posterior(model, x)
    assert np.max(np.abs(post_cov - np.diag(np.diag(post_cov)))) < 1e-5, "check_iwae_bound: posterior not diagonal"
    mu, log_var = _f64(_f32(post_mean)), _f64(_f32(np.log(np.diag(post_cov))))
    bound, log_joint = _make_bound(model, x, mu, log_var), model.log_joint(x)  # one log_joint: a jit of fn caches
    for key_seed, num_samples in ((0, 10), (1, 100), (2, 1)):
        case, got, eps, key = run(log_joint, mu, log_var, key_seed, num_samples, bound,
                                  extra=" whose posterior is exactly this q")
        expect_close(case, got, log_px, rtol=1e-5, atol=2e-4,
            hint="here q IS the posterior, so every weight p(x, z_k) / q(z_k) equals p(x), whatever the samples, "
            "and the bound must be log p(x) for every K: form each sample's weight from log_joint and q's "
            "log-density (distributions.log_normal_diag), and combine the K weights as section 7 says",
            variants=_variants(bound, eps, key, num_samples, len(mu)))

    # ---- 2. the same noise: a q beside the posterior
    model, x = _linear_gaussian(50, 4, 2, 0.8)
    post_mean, post_cov, log_px = _np_posterior(model, x)
    sd = np.sqrt(np.diag(post_cov))
    mu, log_var = _f64(_f32(post_mean + np.array([1.0, -1.0]) * sd)), _f64(_f32(np.log(sd**2) - 0.5))
    bound, log_joint = _make_bound(model, x, mu, log_var), model.log_joint(x)
    for key_seed, num_samples in ((3, 10), (4, 100), (5, 1)):
        case, got, eps, key = run(log_joint, mu, log_var, key_seed, num_samples, bound)
        expect_close(case, got, bound(eps), rtol=1e-4, atol=1e-3,
            hint="the bound of section 7, from samples of q made from the noise jax.random.normal(key, "
            "(num_samples, d)) as in section 2: which two log-densities does each sample's weight need, and how do "
            "the K weights become one number without leaving log space?",
            variants=_variants(bound, eps, key, num_samples, len(mu)))

    # ---- 3. the data point moved off the model's plane: every weight shrinks by e^-1000
    w64 = np.asarray(model.W, dtype=np.float64)
    off_plane = np.linalg.svd(w64)[0][:, -1]  # a unit vector orthogonal to the columns of W: q stays the posterior's
    x_far = _f32(np.asarray(x, dtype=np.float64) + 36.0 * off_plane)
    far_bound = _make_bound(model, x_far, mu, log_var)
    case, got, eps, key = run(model.log_joint(x_far), mu, log_var, 6, 100, far_bound,
                              extra=" at a data point far from the model", nonfinite_hint=(
        "the weights here are about e^-1000, far below the smallest float32: exp of a log-weight underflows to 0 "
        "and its log is -inf. Never form a weight itself: average them in log space, as you did for lesson 3's "
        "naive estimator (jax.nn.logsumexp)"))
    assert far_bound(eps) < -900, "check_iwae_bound: the far data point's log-weights are not near -1000"
    expect_close(case, got, far_bound(eps), rtol=1e-5, atol=2e-3,
        hint="the log-weights here are near -1000: compute the log of the average weight without forming the "
        "weights, as for lesson 3's naive estimator",
        variants=_variants(far_bound, eps, key, 100, len(mu)))

    # ---- 4. statistics over keys: between the ELBO and log p(x), rising with K
    var = np.exp(log_var)
    elbo = _expected_log_joint(model, x, mu, var) - _expected_log_q(log_var, var)
    rng = np.random.default_rng(52)
    means, errors, expectations = {}, {}, {}
    for num_samples in STAT_SAMPLE_SIZES:
        replicas = 200_000 // num_samples
        bounds = _make_bound(model, x, mu, log_var)(
            rng.standard_normal((replicas, num_samples, 2)), combine=lambda a: _log_mean_exp(a, axis=-1))
        expected = elbo if num_samples == 1 else bounds.mean()
        error = bounds.std() * np.sqrt(1 / STAT_KEYS + 1 / replicas)
        tol = 6 * error + 1e-3
        seeds = range(100 + 100 * num_samples, 100 + 100 * num_samples + STAT_KEYS)
        case = Case(name, next(index), total, {
            "key": f"jax.random.key(s) for s in {seeds}", "log_joint": lg_text, "mu": mu, "log_var": log_var,
            "num_samples": num_samples})
        got = np.array([as_array(case, call(case, fn, jax.random.key(s), log_joint, _f32(mu),
                                            _f32(log_var), num_samples), ()) for s in seeds])
        mean = got.mean()
        between = f"the ELBO ({elbo:.3f}) and log p(x) ({log_px:.3f}), to {tol:.3f}"
        if mean < elbo - tol:
            case.fail(f"on average over {STAT_KEYS} keys your bound ({mean:.3f}) lies below the ELBO ({elbo:.3f})",
                      hint="the average of K weights has the same expectation as one weight, p(x), but less spread, "
                      "so Jensen's gap can only shrink: the K-sample bound is never below the ELBO on average")
        if mean > log_px + tol:
            case.fail(f"on average over {STAT_KEYS} keys your bound ({mean:.3f}) lies above log p(x) ({log_px:.3f})",
                      hint="by Jensen the log of an average of weights is a LOWER bound on log p(x) on average: "
                      "did you sum the weights instead of averaging them?")
        expect_close(case, mean, expected, rtol=0, atol=tol,
            name=f"the average over {STAT_KEYS} keys (it must lie between {between})",
            hint="your bounds have the wrong expectation: compare your function with the check's same-noise "
            "test inputs above",
            variants=[("your average is the ELBO at every K: you averaged the log-weights", elbo),
                      ("your average is off by log K: average the weights, do not sum them",
                       expected + np.log(num_samples))])
        means[num_samples], errors[num_samples], expectations[num_samples] = mean, error, expected
    # the reference itself (its Monte Carlo error is below 0.01 nats): the bound rises from the ELBO toward log p(x)
    assert elbo + 0.5 < expectations[10] < expectations[100] - 0.1 < log_px - 0.2, \
        "check_iwae_bound: the reference does not rise with K"
    rise = means[100] - means[10]
    if rise < -6 * np.hypot(errors[10], errors[100]):
        Case(name, total - 1, total).fail(
            f"your bound fell from K = 10 ({means[10]:.3f}) to K = 100 ({means[100]:.3f}) on average",
            hint="more samples must tighten the bound toward log p(x): the average of more weights spreads less")
    return _passed(name, total)
