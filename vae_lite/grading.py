"""The visible checks of the graded exercises (the nbgrader test cells of lessons 1-8), one
``check_*`` per exercise, with each one's references and typical mistakes.

Each ``check_*(fn)`` calls a student's function on a few fixed random inputs and compares
it with an independent reference (closed forms, NumPy in float64, the exact
linear-Gaussian model, :mod:`vae_lite.elbo`). On success it returns a one-line summary;
on failure it raises an ``AssertionError`` that says which input, what was expected, what
came back and, when the answer matches a typical mistake, what that mistake was. A function
that raises, exits, returns ``None``, NaN, a tuple or the wrong shape, takes longer than
:data:`TIME_LIMIT_S`, or is (or calls) the library's own answer to the exercise, fails with
such a message too. The inputs are read-only and each reference is computed from them
before the student's function sees them. Usage in a test cell::

    from vae_lite import grading
    print(grading.check_kl_normal_std(kl_to_standard_normal))

The machinery that calls the student's function, reads and compares what it returned and
writes the messages is :mod:`vae_lite._checking` (:data:`TIME_LIMIT_S` and :func:`call`
are re-exported here; the limit a check obeys is ``_checking.TIME_LIMIT_S``). Lesson 6's
checks of the student's modules live in :mod:`vae_lite._checks_training` and are reached
from here (``grading.check_encoder`` ...).

These visible checks teach; they run in the student's kernel, so they are not what makes a
grade trustworthy. The test cells' hidden tests (fresh random inputs, their own NumPy
references) and ``classroom/regrade.py`` (a clean process per submission) are.
"""

import importlib
import importlib.util
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from vae_lite import _reference as R
from vae_lite._checking import TIME_LIMIT_S as TIME_LIMIT_S  # re-exported: grading.TIME_LIMIT_S
from vae_lite._checking import Case, _exercise, _f32, _f64, _passed, as_array, call, expect_close, unpack
from vae_lite.posterior import LinearGaussian

_bernoulli_log_pmf, _logsumexp, _kl_std, _lbeta = R.bernoulli_log_pmf, R.logsumexp, R.kl_std, R.log_beta


def _linear_gaussian(seed, data_dim, latent_dim, sigma):
    """A random exact model (float32, for the student) and one data point ``x (D,)`` drawn from it."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(data_dim, latent_dim)), rng.normal(size=data_dim)
    x = w @ rng.normal(size=latent_dim) + b + sigma * rng.normal(size=data_dim)
    return LinearGaussian(_f32(w), _f32(b), sigma), _f32(x)


def _np_log_joint(model, x, z):
    """log p(x, z) of the linear-Gaussian model in float64 NumPy, for ``z (..., d)``."""
    return R.linear_gaussian_log_joint(model.W, model.b, model.sigma, x, z)


def _np_posterior(model, x):
    """Exact posterior mean ``(d,)`` and covariance ``(d, d)`` and log p(x), in float64 NumPy."""
    mean, cov = R.linear_gaussian_posterior(model.W, model.b, model.sigma, x)
    return mean, cov, R.linear_gaussian_log_evidence(model.W, model.b, model.sigma, x)


# ---------------------------------------------------------------- lesson 1
@_exercise("factorization.image_log_likelihood", "factorization.dataset_log_likelihood")
def check_image_log_likelihood(fn):
    """Lesson 1, ``ex01_image_log_lik``: ``image_log_likelihood(x (D,), p (D,)) -> scalar``.

    Reference: :math:`\\sum_j x_j \\log p_j + (1-x_j) \\log(1-p_j)` in float64.
    """
    rng = np.random.default_rng(1)
    sizes = (5, 12, 784)
    for i, size in enumerate(sizes):
        x = _f64(rng.random(size) < 0.4)
        p = _f64(_f32(rng.uniform(0.05, 0.95, size)))
        case = Case("check_image_log_likelihood", i, len(sizes), {"x": x, "p": p})
        ref = _bernoulli_log_pmf(x, p).sum()
        got = as_array(
            case, call(case, fn, _f32(x), _f32(p)), (),
            shape_hints={(size,): "you returned one number per pixel: sum over the pixels "
                         "(independent pixels, so their log-probabilities add)"},
            nonfinite_hint="log(0)? p is strictly inside (0, 1) here, so the 0 comes from elsewhere: take logs "
            "of probabilities only, never log(x) (a black pixel has x_j = 0)",
        )
        expect_close(case, got, ref, rtol=1e-4, atol=1e-3,
            hint="take the log of the model's product over the pixels (lesson 1, section 3): the log of a product "
            "is a sum, and each pixel contributes the log of the probability of the value it HAS",
            variants=[
                ("the sign is flipped: a log-likelihood of binary pixels is <= 0 "
                 "(you returned the negative log-likelihood, a loss)", -ref),
                ("you averaged over the pixels; sum them instead", ref / size),
                ("you returned the likelihood itself; return its log", np.exp(ref)),
                ("p and 1 - p are swapped: a white pixel (x_j = 1) has probability p_j",
                 _bernoulli_log_pmf(1 - x, p).sum()),
                ("only the white pixels count in your sum: the black pixels (x_j = 0) have a probability too, "
                 "and its log belongs in the sum",
                 (x * np.log(p)).sum()),
                ("you treated p as logits; p is already a probability in (0, 1)",
                 (x * p - np.logaddexp(0, p)).sum()),
            ])
    return _passed("check_image_log_likelihood", len(sizes))


@_exercise("factorization.beta_bernoulli_log_marginal")
def check_shared_theta_log_marginal(fn):
    """Lesson 1, ``ex01_shared_theta``: ``shared_theta_log_marginal(x (N,), a, b) -> scalar``.

    Reference: ``log B(a + k, b + N - k) - log B(a, b)`` with ``math.lgamma`` (k = number of ones).
    """
    inputs = ((6, 2.0, 3.0), (20, 0.5, 1.5), (50, 5.0, 1.0))
    rng = np.random.default_rng(2)
    for i, (n, a, b) in enumerate(inputs):
        x = _f64(np.concatenate([[1.0, 0.0], rng.random(n - 2) < 0.7]))  # at least one of each: 0 < k < N
        k = x.sum()
        case = Case("check_shared_theta_log_marginal", i, len(inputs), {"x": x, "a": a, "b": b})
        ref = _lbeta(a + k, b + n - k) - _lbeta(a, b)
        got = as_array(case, call(case, fn, _f32(x), a, b), (),
                       shape_hints={(n,): "you returned one value per image; return log p(x_1, ..., x_N)"})
        mean = a / (a + b)
        expect_close(case, got, ref, rtol=1e-4, atol=1e-3,
            hint="integrate the shared theta out once for all N images: multiply theta^k (1 - theta)^(N - k), "
            "k = sum(x), by the Beta(a, b) density, collect the powers of theta and 1 - theta, and recognise "
            "what is left as an unnormalised Beta density (its integral is a Beta function; betaln is its log)",
            variants=[
                ("this is sum_i log p(x_i), the answer when every image has its own theta (i.i.d.). "
                 "With ONE theta shared by all images they are not independent: integrate theta out once, "
                 "for all N images together", k * np.log(mean) + (n - k) * np.log1p(-mean)),
                ("you dropped the prior's normaliser: the Beta(a, b) density is not just "
                 "theta^(a - 1) (1 - theta)^(b - 1), and the constant in front of it stays in front of the integral",
                 _lbeta(a + k, b + n - k)),
                ("ones and zeros are swapped: collect the powers again: which count goes with theta (a pixel that "
                 "is on) and which with 1 - theta?", _lbeta(a + n - k, b + k) - _lbeta(a, b)),
                ("the second Beta argument is too large by k: the power of 1 - theta counts only the images where "
                 "the pixel is off, not all N", _lbeta(a + k, b + n) - _lbeta(a, b)),
                ("you plugged in the estimate theta = k / N instead of integrating theta out",
                 k * np.log(k / n) + (n - k) * np.log1p(-k / n)),
                ("you returned the probability; return its log", np.exp(ref)),
                ("the sign is flipped: log-probabilities of discrete data are <= 0", -ref),
            ])
    return _passed("check_shared_theta_log_marginal", len(inputs))


# ---------------------------------------------------------------- lesson 2
@_exercise("sampling.sample_mixture")
def check_mixture_sampling(fn):
    """Lesson 2, ``ex02_mixture_sample``: ``sample_mixture(key, weights (K,), probs (K, D), n)``
    ``-> (z (n,), x (n, D))``.

    Statistical check with 20 000 samples: component frequencies within 6 standard errors
    of ``weights`` and per-component pixel means within 6 standard errors of ``probs``
    (a correct sampler fails with probability < 1e-7; the keys are fixed, so the result is
    deterministic). Also checks shapes, 0/1 pixels and that the key is used.
    """
    weights = _f64([0.1, 0.6, 0.3])
    probs = _f64([[0.9, 0.1, 0.5, 0.2], [0.2, 0.8, 0.5, 0.9], [0.5, 0.5, 0.05, 0.6]])
    num_k, size = probs.shape
    inputs = {"weights": weights, "probs": probs}

    def sample(i, key, n):
        case = Case("check_mixture_sampling", i, 3, {**inputs, "num_samples": n})
        z, x = unpack(case, call(case, fn, jax.random.key(key), _f32(weights), _f32(probs), n), ("z", "x"))
        z = as_array(case, z, (n,), name="z", integer=True,
                     shape_hints={(n, 1): "z should be flat, one id per sample, not a column: ask "
                                  "jax.random.categorical for num_samples draws, not num_samples x 1"})
        x = as_array(case, x, (n, size), name="x")
        if z.min() < 0 or z.max() >= num_k:
            case.fail(f"component ids must be in 0..{num_k - 1}", got=z)
        if not np.all((x == 0) | (x == 1)):
            case.fail("x must hold 0/1 pixel samples", got=x,
                      hint="these are probabilities: return sampled 0/1 pixels instead, drawn with "
                      "jax.random.bernoulli, each on with the probability its image's own component gives it")
        return case, z, x

    sample(0, 0, 7)
    n = 20_000
    case, z, x = sample(1, 1, n)
    freq = np.bincount(z.astype(int), minlength=num_k) / n
    soft = np.exp(weights) / np.exp(weights).sum()
    expect_close(case, freq, weights, rtol=0, atol=6 * np.sqrt(weights * (1 - weights) / n),
        name="the component frequencies",
        hint="component k must be drawn with probability weights[k]: read what jax.random.categorical expects "
        "as its second argument (the exercise says it)",
        variants=[
            ("components are chosen uniformly: the weights are ignored", np.full(num_k, 1 / num_k)),
            ("your frequencies follow softmax(weights), not weights: jax.random.categorical reads its second "
             "argument as LOG-probabilities (logits)", soft),
        ])
    for k in range(num_k):
        count = max((z == k).sum(), 1)
        means = x[z == k].mean(axis=0) if (z == k).any() else np.zeros(size)
        expect_close(case, means, probs[k], rtol=0, atol=6 * np.sqrt(probs[k] * (1 - probs[k]) / count) + 1e-3,
            name=f"the pixel means of the images with z = {k}",
            hint=f"the images of component z = {k} do not have its pixel frequencies: draw each image's pixels "
            "from the probabilities of ITS own component",
            variants=[
                ("x does not follow its component: draw each image's pixels from the probabilities of ITS "
                 "component, not from the mixture's average image", weights @ probs),
                ("0 and 1 are flipped: probs holds each pixel's probability of being ON (1)", 1 - probs[k]),
            ])
    _, z_other, _ = sample(2, 2, n)
    if np.array_equal(z, z_other):
        Case("check_mixture_sampling", 2, 3, inputs).fail(
            "two different keys gave the same samples",
            hint="use the key you are given (split it for z and x) instead of a fixed jax.random.key(0)")
    return _passed("check_mixture_sampling", 3)


# ---------------------------------------------------------------- lesson 3
@_exercise("posterior.normalize_on_grid")
def check_grid_normalization(fn):
    """Lesson 3, ``ex03_grid_normalize``: ``normalize_on_grid(log_joint_values (G,), cell_volume)``
    ``-> (log_posterior (G,), log_evidence)``.

    Reference: ``log_evidence = logsumexp(values) + log(cell_volume)``, ``log_posterior =
    values - log_evidence``, on 1-D and 2-D grids of exact linear-Gaussian models (and the
    same values shifted by -1000, where exp underflows).
    """
    model1, x1 = _linear_gaussian(30, 3, 1, 0.8)
    model2, x2 = _linear_gaussian(31, 4, 2, 0.8)
    axis1, axis2 = np.linspace(-5, 5, 201), np.linspace(-4, 4, 41)
    grid2 = np.stack([g.ravel() for g in np.meshgrid(axis2, axis2, indexing="ij")], axis=-1)
    values1 = _f64(_f32(_np_log_joint(model1, x1, axis1[:, None])))
    values2 = _f64(_f32(_np_log_joint(model2, x2, grid2)))
    inputs = ((values1, 0.05), (values2, 0.2**2), (_f64(_f32(values1 - 1000.0)), 0.05))
    for i, (values, volume) in enumerate(inputs):
        size = values.shape[0]
        case = Case("check_grid_normalization", i, len(inputs), {"log_joint_values": values, "cell_volume": volume})
        total = _logsumexp(values)
        ref_ev = total + np.log(volume)
        log_post, log_ev = unpack(case, call(case, fn, _f32(values), volume), ("log_posterior", "log_evidence"))
        nonfinite = ("exp of values around -1000 underflows to 0, so log(sum(exp(...))) is log 0: compute the log "
                     "of the sum from the logs themselves with jax.nn.logsumexp, never exponentiating them one by one")
        log_ev = as_array(case, log_ev, (), name="log_evidence", nonfinite_hint=nonfinite, shape_hints={
            (size,): "return (log_posterior, log_evidence) in this order"})
        log_post = as_array(case, log_post, (size,), name="log_posterior", nonfinite_hint=nonfinite)
        expect_close(case, log_ev, ref_ev, rtol=1e-5, atol=2e-3, name="log_evidence",
            hint="p(x) = integral p(x, z) dz ~ sum_g p(x, z_g) * cell_volume (section 1): take the log of that "
            "sum without ever forming p(x, z_g) itself, and work out what the factor cell_volume becomes in log space",
            variants=[
                ("you forgot the cell volume: the quadrature multiplies the sum by it, and a factor does not "
                 "vanish in log space", total),
                ("you added cell_volume itself to a log: what does multiplying by it become in log space?",
                 total + volume),
                ("you divided by the cell volume where the quadrature multiplies by it", total - np.log(volume)),
                ("you averaged over the grid points: the integral is a sum times the cell volume, "
                 "not a mean", total - np.log(size)),
                ("the sign is flipped", -ref_ev),
            ])
        ref_post = values - ref_ev
        expect_close(case, log_post, ref_post, rtol=1e-5, atol=2e-3, name="log_posterior",
            hint="Bayes' rule divides the joint by the evidence: do the same in log space, with the log p(x) "
            "you just computed",
            variants=[
                ("these are log-probabilities of the grid cells (they sum to 1), not a log-density (it "
                 "integrates to 1): the log p(x) you normalised with misses the cell volume", values - total),
                ("you added log p(x): Bayes divides the joint by p(x), it does not multiply", values + ref_ev),
                ("you returned densities; return log-densities", np.exp(ref_post)),
                ("not normalised: these are the joint values themselves; Bayes divides them by the evidence",
                 values),
            ])
    return _passed("check_grid_normalization", len(inputs))


@_exercise("posterior.naive_log_evidence")
def check_naive_log_evidence(fn):
    """Lesson 3, ``ex03_naive_mc``: ``naive_log_evidence(key, log_likelihood, latent_dim, num_samples)``.

    Reference: the same prior samples ``z = jax.random.normal(key, (num_samples, latent_dim))``,
    ``logsumexp(log p(x | z_s)) - log S`` in float64, for exact linear-Gaussian models (the last
    one has likelihoods far below float32's smallest number, so it needs logsumexp).
    """
    inputs = ((_linear_gaussian(40, 3, 2, 1.0), 10), (_linear_gaussian(40, 3, 2, 1.0), 1000),
              (_linear_gaussian(41, 40, 2, 0.05), 100))
    for i, ((model, x), num_samples) in enumerate(inputs):
        log_joint = model.log_joint(x)

        def log_likelihood(z, log_joint=log_joint):
            return log_joint(z) - (-0.5 * jnp.sum(jnp.log(2 * jnp.pi) + z**2))

        key = jax.random.key(i)
        d = model.W.shape[1]
        case = Case("check_naive_log_evidence", i, len(inputs), {
            "key": f"jax.random.key({i})", "log_likelihood": f"log p(x|z) of a linear-Gaussian model, x {x.shape}",
            "latent_dim": d, "num_samples": num_samples})

        def estimate(z, model=model, x=x):
            z = _f64(z)
            log_lik = _np_log_joint(model, x, z) + 0.5 * np.sum(np.log(2 * np.pi) + z**2, -1)
            return _logsumexp(log_lik) - np.log(len(log_lik)), log_lik

        # the student's samples, float32 or (under jax_enable_x64) float64: the two differ
        samples = [_f64(jax.random.normal(key, (num_samples, d), dtype)) for dtype in (jnp.float32, None)]
        references = [estimate(z) for z in samples]
        got = as_array(case, call(case, fn, key, log_likelihood, d, num_samples), (),
            shape_hints={(num_samples,): "one value per sample: the estimator averages the S likelihoods into one "
                         "number, in log space"},
            nonfinite_hint="p(x|z) is below float32's smallest number here, so exp underflows to 0: never form the "
            "likelihoods themselves; average them in log space with the help of jax.nn.logsumexp, and mind the 1/S")
        best = int(np.argmin([abs(got - r[0]) for r in references]))
        z, (ref, log_lik) = samples[best], references[best]
        log_prior = -0.5 * np.sum(np.log(2 * np.pi) + z**2, axis=-1)
        other_samples = "your samples differ: use exactly z = jax.random.normal(key, (num_samples, latent_dim))"
        expect_close(case, got, ref, rtol=1e-4, atol=1e-3,
            hint="log p(x) is estimated by the log of the MEAN of the likelihoods p(x | z_s) over the S prior "
            "samples z_s = jax.random.normal(key, (num_samples, latent_dim)): compute it from the log-likelihoods "
            "without exponentiating them",
            variants=[
                ("you averaged the log-likelihoods, not the likelihoods: the log of a mean is not the mean of "
                 "the logs; stay in log space", log_lik.mean()),
                ("you summed the likelihoods instead of averaging them: the 1/S of the mean is missing; what does "
                 "dividing by S become in log space?", _logsumexp(log_lik)),
                ("you added log p(z): samples from the prior already weight by p(z); average p(x|z) only",
                 _logsumexp(log_lik + log_prior) - np.log(num_samples)),
                ("you kept only the best sample (max); average over all samples", log_lik.max()),
                ("you returned the average likelihood; return its log", np.exp(ref)),
                ("the sign is flipped", -ref),
                (other_samples + " (no key splitting)",
                 lambda est=estimate, k=key, s=z.shape: est(jax.random.normal(jax.random.split(k)[0], s))[0]),
                (other_samples + " (no key splitting)",
                 lambda est=estimate, k=key, s=z.shape: est(jax.random.normal(jax.random.split(k)[1], s))[0]),
                (other_samples + " (shape (num_samples, latent_dim), not transposed)",
                 lambda est=estimate, k=key, s=z.shape: est(jax.random.normal(k, s[::-1]).T)[0]),
            ])
    return _passed("check_naive_log_evidence", len(inputs))


# ---------------------------------------------------------------- lesson 4
def _expected_log_joint(model, x, mu, var):
    """E_{z ~ N(mu, diag var)} log p(x, z) for the linear-Gaussian model, in float64."""
    return R.linear_gaussian_expected_log_joint(model.W, model.b, model.sigma, x, mu, var)


def _expected_log_q(log_var, var):
    """E_{z ~ N(mu, diag var)} log N(z; mu, diag e^log_var)."""
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + var / np.exp(log_var))


@_exercise("elbo.elbo", "elbo.elbo_entropy_form", "elbo.elbo_kl_form")
def check_elbo(fn):
    """Lesson 4, ``ex04_elbo``: ``elbo_estimate(key, log_joint, mu (d,), log_var (d,), num_samples)``.

    Reference: the exact ELBO of a linear-Gaussian model, E_q[log p(x, z)] + H(q) in closed
    form. Statistical check: ``num_samples = 2000`` and a tolerance of 6 standard errors of
    the Monte Carlo estimate (+ 1e-3 relative), so a correct estimator passes with
    probability > 1 - 1e-8 (fixed keys: deterministic).
    """
    model, x = _linear_gaussian(50, 4, 2, 0.8)
    post_mean, post_cov, log_px = _np_posterior(model, x)
    post_log_var = np.log(np.diag(post_cov))
    qs = ((post_mean + np.array([0.3, -0.2]), post_log_var + 0.4), (np.zeros(2), np.zeros(2)),
          (post_mean, post_log_var - 1.0))
    num_samples = 2000
    log_joint = model.log_joint(x)
    for i, (mu, log_var) in enumerate(qs):
        mu, log_var = _f64(_f32(mu)), _f64(_f32(log_var))
        case = Case("check_elbo", i, len(qs), {"key": f"jax.random.key({i})",
                    "log_joint": "log p(x, z) of a linear-Gaussian model", "mu": mu, "log_var": log_var,
                    "num_samples": num_samples})
        var = np.exp(log_var)
        ref = _expected_log_joint(model, x, mu, var) - _expected_log_q(log_var, var)
        got = as_array(case, call(case, fn, jax.random.key(i), log_joint, _f32(mu), _f32(log_var), num_samples), (),
            shape_hints={(num_samples,): "one value per sample: the ELBO estimate is a single number, their average"},
            nonfinite_hint="log_var is a LOG-variance and may be negative: no square root or log of it; what turns "
            "log sigma**2 into sigma?")
        entropy = -_expected_log_q(log_var, var)
        z = mu + np.sqrt(var) * np.random.default_rng(i).standard_normal((20_000, 2))
        log_w = _np_log_joint(model, x, z) + 0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mu) ** 2 / var, 1)
        tol = 6 * log_w.std() / np.sqrt(num_samples) + 1e-3 * (1 + abs(ref))

        def wrong_spread(var_sample, mu=mu, log_var=log_var):
            return _expected_log_joint(model, x, mu, var_sample) - _expected_log_q(log_var, var_sample)

        expect_close(case, got, ref, rtol=0, atol=tol,
            hint="estimate the ELBO of section 2 from samples z_s of q, built from mu and log_var: which two "
            "log-densities does each sample need, and how do the num_samples values become one number? "
            f"(tolerance {tol:.3f})",
            variants=[
                ("you forgot the entropy term: the ELBO needs q's own log-density at each sample too "
                 "(distributions.log_normal_diag), not only log_joint", ref - entropy),
                ("wrong sign of the entropy: a wider q must raise the entropy term; check the sign that log q "
                 "enters with", ref - 2 * entropy),
                ("your samples have the wrong spread: you scaled the noise by exp(log_var), the variance; which of "
                 "sigma, sigma**2 and log sigma**2 does the noise need?", wrong_spread(np.exp(2 * log_var))),
                ("you used log_var as the standard deviation: log_var is log sigma**2, so what is sigma?",
                 wrong_spread(log_var**2)),
                ("you used the prior N(0, I) for log q(z); q is N(mu, diag exp(log_var))",
                 _expected_log_joint(model, x, mu, var) + 0.5 * np.sum(np.log(2 * np.pi) + mu**2 + var)),
                ("you returned the negative ELBO (a loss); return the ELBO", -ref),
                ("this is close to log p(x): a logsumexp over samples estimates log p(x), not the ELBO; "
                 "the ELBO is a plain average over the samples", log_px, max(tol, 0.05)),
            ])
    return _passed("check_elbo", len(qs))


@_exercise("distributions.kl_normal_std")
def check_kl_normal_std(fn):
    """Lesson 4, ``ex04_kl``: ``kl_to_standard_normal(mu (d,), log_var (d,)) -> scalar``.

    Reference: ``0.5 * sum(mu**2 + exp(log_var) - 1 - log_var)`` in float64.
    """
    rng = np.random.default_rng(8)
    inputs = ((np.array([0.5, -1.2, 0.3]), np.array([-0.5, 0.2, 1.0])),
              (rng.normal(size=20), rng.uniform(-2.0, 1.0, 20)), (np.zeros(2), np.zeros(2)))
    for i, (mu, log_var) in enumerate(inputs):
        mu, log_var = _f64(_f32(mu)), _f64(_f32(log_var))
        d = len(mu)
        case = Case("check_kl_normal_std", i, len(inputs), {"mu": mu, "log_var": log_var})
        ref = _kl_std(mu, log_var)
        got = as_array(case, call(case, fn, _f32(mu), _f32(log_var)), (),
            shape_hints={(d,): "one value per latent dimension: sum them"},
            nonfinite_hint="log of a negative number? log_var is already the log of the variance and can be "
            "negative: never take its log or its square root")
        var = np.exp(log_var)
        sigma_hint = ("you used sigma where the formula needs the variance sigma**2: which of sigma, sigma**2 and "
                      "log sigma**2 is log_var?")
        expect_close(case, got, ref, rtol=1e-5, atol=1e-4,
            hint="take the expectation of each term of section 6 under q by hand, using only the mean and the "
            "variance of z_j under q (what is the expected square of a variable, in terms of those two?); log_var_j "
            "is log sigma_j**2. Sanity check: 0 at mu = 0, log_var = 0",
            variants=[
                ("the sign is flipped: a KL divergence is never negative", -ref),
                (sigma_hint, _kl_std(mu, 0.5 * log_var) - 0.25 * np.sum(log_var)),
                (sigma_hint, _kl_std(mu, 0.5 * log_var)),
                ("your value is twice the KL: you dropped the factor 1/2 that every term of the integrand carries",
                 2 * ref),
                ("the KL of a distribution to itself must be 0, and yours is not at mu = 0, log_var = 0: check "
                 "your constant term", ref + d / 2),
                ("your result is linear in mu, but q's mean at -mu must give the same KL as at mu: recheck the "
                 "expectation of z_j**2 under q", 0.5 * np.sum(mu + var - 1 - log_var)),
                ("your result does not change with mu: moving q's mean away from 0 must raise the KL; recheck the "
                 "expectation of z_j**2 under q", 0.5 * np.sum(var - 1 - log_var)),
                ("wrong sign of the log-variance term: the KL must grow when sigma moves away from 1 in EITHER "
                 "direction; try a very small sigma", 0.5 * np.sum(mu**2 + var - 1 + log_var)),
                ("you averaged over latent dimensions; sum them", ref / d),
                ("this is KL(N(0, I) || q), the reverse direction; the ELBO needs KL(q || N(0, I))",
                 0.5 * np.sum((1 + mu**2) / var - 1 + log_var)),
            ])
    return _passed("check_kl_normal_std", len(inputs))


# ---------------------------------------------------------------- lesson 5
@_exercise("distributions.reparameterize")
def check_reparameterized_sample(fn):
    """Lesson 5, ``ex05_reparam``: ``reparameterize(key, mu, log_var) -> z`` (shape of ``mu``).

    Reference: ``mu + exp(0.5 * log_var) * jax.random.normal(key, mu.shape)``; also checks
    that ``jax.grad`` flows to ``mu`` (gradient 1) and ``log_var`` (0.5 * sigma * eps).
    """
    rng = np.random.default_rng(9)
    shapes = ((4,), (3, 2), (500,))
    for i, shape in enumerate(shapes):
        mu, log_var = _f64(_f32(rng.normal(size=shape))), _f64(_f32(rng.uniform(-2.0, 1.0, shape)))
        key = jax.random.key(i)
        case = Case("check_reparameterized_sample", i, len(shapes),
                    {"key": f"jax.random.key({i})", "mu": mu, "log_var": log_var})
        sigma = np.exp(0.5 * log_var)
        # eps drawn in float32 (mu's dtype) or, under jax_enable_x64, in float64: the two differ
        draws = [_f64(jax.random.normal(key, shape, dtype)) for dtype in (jnp.float32, None)]
        got = as_array(case, call(case, fn, key, _f32(mu), _f32(log_var)), shape,
            nonfinite_hint="sqrt or log of a negative log_var? log_var is log sigma**2 and may be negative: which "
            "operation turns it into sigma?")
        eps = min(draws, key=lambda e: np.max(np.abs(got - (mu + sigma * e))))
        ref = mu + sigma * eps
        hint = ("z must be a sample of N(mu, diag exp(log_var)) written as a differentiable function of mu, "
                "log_var and the noise eps = jax.random.normal(key, mu.shape): shift and scale the noise, and "
                "remember that log_var is log sigma**2, not sigma")
        other_eps = ("your samples have the right mean and spread but different noise: use "
                     "eps = jax.random.normal(key, mu.shape) with the key as given (no splitting)")
        eps_hat = (got - mu) / sigma
        if got.size >= 100 and abs(eps_hat.mean()) < 0.3 and 0.7 < eps_hat.std() < 1.3:
            hint = other_eps
        expect_close(case, got, ref, rtol=1e-5, atol=1e-5, hint=hint,
            variants=[
                ("you used exp(log_var), the variance, as the standard deviation: the noise is scaled by sigma, "
                 "not sigma**2", mu + np.exp(log_var) * eps),
                ("you used log_var as the standard deviation: log_var is log sigma**2, so which operation gives "
                 "sigma?", mu + log_var * eps),
                ("you used sqrt(log_var) as the standard deviation: log_var is the LOG of the variance, not the "
                 "variance", np.where(log_var >= 0, mu + np.sqrt(np.abs(log_var)) * eps, np.nan)),
                ("you forgot the mean: your samples are centred at 0, not at mu", sigma * eps),
                ("you ignored log_var: your samples have spread 1 whatever log_var says", mu + eps),
                ("no noise: z must be a random sample of q, not its mean", mu),
                ("you returned the noise eps itself: z is a sample of N(mu, diag exp(log_var)) built from it", eps),
                ("you subtracted the scaled noise: the check's sample adds it (the same distribution, but not the "
                 "same sample)", mu - sigma * eps),
                (other_eps, lambda k=key, m=mu, s=sigma: m + s * _f64(jax.random.normal(jax.random.split(k)[0], m.shape))),
                (other_eps, lambda k=key, m=mu, s=sigma: m + s * _f64(jax.random.normal(jax.random.split(k)[1], m.shape))),
            ])
        if i == 0:
            summed = jax.grad(lambda m, v, key=key: jnp.sum(fn(key, m, v)), argnums=(0, 1))
            grads = call(case, summed, _f32(mu), _f32(log_var), what="jax.grad of your function")
            grad_mu, grad_log_var = unpack(case, grads, ("d/dmu", "d/dlog_var"))
            expect_close(case, as_array(case, grad_mu, shape), np.ones(shape), name="the gradient of sum(z) w.r.t. mu",
                         hint="z must depend on mu through jax.numpy operations (no numpy, no stop_gradient)")
            expect_close(case, as_array(case, grad_log_var, shape), 0.5 * sigma * eps,
                name="the gradient of sum(z) w.r.t. log_var",
                hint="the point of the trick: z must be a differentiable function of log_var (jax.numpy operations "
                "on log_var and on noise that does not depend on it)",
                variants=[("no gradient reaches log_var: don't use stop_gradient or sample with "
                           "jax.random.normal(key, shape) * a constant", np.zeros(shape))])
    return _passed("check_reparameterized_sample", len(shapes))


def _score_of_log_q(eps, log_var):
    """``(d/dmu, d/dlog_var)`` of log N(z; mu, diag e^log_var) at z = mu + sigma * eps, each ``(S, d)`` (float64)."""
    return eps / np.exp(0.5 * log_var), 0.5 * (eps**2 - 1.0)


@_exercise()
def check_score_function_loo(fn):
    """Lesson 5, ``ex05_score_loo``: ``score_function_loo(key, f, mu (d,), log_var (d,), num_samples)``
    ``-> (grad_mu, grad_log_var)``, each ``(num_samples, d)``.

    Reference, in float64 from the same noise ``eps = jax.random.normal(key, (num_samples, d))``,
    ``z_s = mu + exp(0.5 * log_var) * eps_s``: ``(f(z_s) - b_s) * grad log q(z_s)`` with the
    leave-one-out baseline ``b_s = mean_{t != s} f(z_t)``, for a smooth and a step (non-differentiable)
    f. Statistical check on the last input (``f(z) = sum(z**2)``, 20 000 samples): the mean of the
    estimates lies within 4 standard errors (std / sqrt(S)) of the exact gradient
    ``(2 mu, exp(log_var))``, and their variance is below plain REINFORCE's on the same noise.
    """

    def square(z):
        return jnp.sum(z**2)

    def step(z):
        return jnp.sum(jnp.where(z > 0.3, 1.0, 0.0))

    np_f = {square: lambda z: np.sum(z**2, -1), step: lambda z: np.sum(z > 0.3, -1).astype(np.float64)}
    shown = {square: "sum(z**2)", step: "sum(z > 0.3) (a step: not differentiable)"}
    rng = np.random.default_rng(14)
    inputs = ((square, np.array([0.5]), np.array([-0.4]), 5),
              (step, np.array([0.2, 0.4, -0.1]), np.array([0.0, -0.5, 0.3]), 5),  # f takes 1, 2 and 3 values
              (square, rng.normal(size=3), rng.uniform(-2, 1, 3), 400),
              (square, np.array([0.5]), np.array([-0.4]), 20_000))  # the statistical check
    for i, (f, mu, log_var, num_samples) in enumerate(inputs):
        mu, log_var = _f64(_f32(mu)), _f64(_f32(log_var))
        d, key, last = len(mu), jax.random.key(i), i == len(inputs) - 1
        shape = (num_samples, d)
        case = Case("check_score_function_loo", i, len(inputs), {"key": f"jax.random.key({i})", "f": shown[f],
                    "mu": mu, "log_var": log_var, "num_samples": num_samples})

        def estimates(eps, baseline="loo", f=f, mu=mu, log_var=log_var):
            """Per-sample ``(grad_mu, grad_log_var, f(z_s) - b_s)`` from the noise ``eps`` and a baseline rule."""
            eps = _f64(eps)
            values = np_f[f](mu + np.exp(0.5 * log_var) * eps)
            b = {"loo": (values.sum() - values) / (len(values) - 1), "none": 0.0, "all": values.mean(),
                 "by S": (values.sum() - values) / len(values), "f(mu)": np_f[f](mu)}[baseline]
            centred = (values - b)[:, None]
            score_mu, score_log_var = _score_of_log_q(eps, log_var)
            return centred * score_mu, centred * score_log_var, centred

        # eps drawn in float32 (mu's dtype) or, under jax_enable_x64, in float64: the two differ
        draws = [_f64(jax.random.normal(key, shape, dtype)) for dtype in (jnp.float32, None)]
        refs = [estimates(eps) for eps in draws]
        out = call(case, fn, key, f, _f32(mu), _f32(log_var), num_samples)
        grad_mu, grad_log_var = unpack(case, out, ("grad_mu", "grad_log_var"))
        per_sample = {(d,): "you averaged over the samples: return one estimate per sample, shape (num_samples, d) "
                      "(the lesson averages them)", (d, num_samples): "transposed: one row per sample, (num_samples, d)"}
        grad_mu = as_array(case, grad_mu, shape, name="grad_mu", shape_hints=per_sample)
        grad_log_var = as_array(case, grad_log_var, shape, name="grad_log_var", shape_hints=per_sample)
        best = int(np.argmin([np.max(np.abs(grad_mu - r[0])) for r in refs]))
        eps, (ref_mu, ref_log_var, centred) = draws[best], refs[best]
        if last:
            exact = np.concatenate([2 * mu, np.exp(log_var)])  # d/d(mu, log_var) of E_q[z^2] = mu^2 + e^log_var
            got = np.concatenate([grad_mu, grad_log_var], axis=1)
            mean, error = got.mean(0), got.std(0) / np.sqrt(num_samples)
            if np.any(np.abs(mean - exact) > 4 * error):
                case.fail("the mean of your estimates is more than 4 standard errors from the exact gradient "
                          "(2 mu, exp(log_var)): the estimator is biased", expected=exact, got=mean,
                          hint="the baseline b_s must not depend on z_s: average f over the OTHER samples only")
            plain = np.concatenate(estimates(eps, "none")[:2], axis=1)
            if np.any(got.var(0) >= plain.var(0)):
                case.fail("your estimates are no less noisy than plain REINFORCE on the same samples "
                          "(variances of d/dmu and d/dlog_var)", expected=plain.var(0), got=got.var(0),
                          hint="subtract the baseline b_s (the mean of f over the other samples) from f(z_s)")
        baselines = [(hint, estimates(eps, rule)) for hint, rule in (
            ("no baseline: this is plain REINFORCE; subtract b_s = the mean of f over the OTHER samples", "none"),
            ("the baseline is the mean of ALL samples, f(z_s) included, so it depends on z_s and biases the "
             "gradient by a factor (S - 1) / S: leave sample s out of its own baseline", "all"),
            ("your baseline divides the sum over the other samples by S, but there are only S - 1 of them: that "
             "is not their mean", "by S"),
            ("a constant baseline such as f(mu) keeps the estimate unbiased but is not this estimator: "
             "b_s = the mean of f over the other samples", "f(mu)"),
        )]
        split_keys = [lambda half=half, k=key, est=estimates, s=shape: est(jax.random.normal(jax.random.split(k)[half], s))
                      for half in (0, 1)]
        other_eps = ("your samples differ: draw eps = jax.random.normal(key, (num_samples, d)) with the key as "
                     "given (no splitting), and build z from it as in lesson 5's reparameterisation")

        def baseline_and_key_variants(part, baselines=baselines, split_keys=split_keys, other_eps=other_eps):
            return ([(hint, value[part]) for hint, value in baselines]
                    + [(other_eps, lambda draw=draw: draw()[part]) for draw in split_keys])

        sigma = np.exp(0.5 * log_var)
        expect_close(case, grad_mu, ref_mu, rtol=1e-4, atol=1e-4, name="grad_mu",
            hint="grad_mu[s] = (f(z_s) - b_s) times the derivative of log N(z_s; mu, exp(log_var)) w.r.t. mu "
            "(differentiate the log density by hand), b_s = the mean of f(z_t) over t != s",
            variants=[
                ("your score of mu is off by a factor of sigma: differentiate log N(z; mu, sigma**2) w.r.t. mu "
                 "again and count the powers of sigma", centred * eps),
                ("the sign of the score is flipped: moving mu toward z raises log q(z), so the score of mu points "
                 "from mu to z", -ref_mu),
                ("the outputs are swapped: return (grad_mu, grad_log_var)", ref_log_var),
                *baseline_and_key_variants(0),
            ])
        expect_close(case, grad_log_var, ref_log_var, rtol=1e-4, atol=1e-4, name="grad_log_var",
            hint="grad_log_var[s] = (f(z_s) - b_s) times the derivative of log N(z_s; mu, exp(v)) w.r.t. "
            "v = log_var (not w.r.t. sigma or the variance); write sigma**2 = exp(v) before differentiating",
            variants=[
                ("your score of log_var is twice the right one: the factor 1/2 of the Gaussian's log-density is "
                 "missing", 2 * ref_log_var),
                ("your score of log_var misses its constant term: a score has mean zero under q, and yours is never "
                 "negative; which part of log q gives a constant when you differentiate w.r.t. v?",
                 centred * 0.5 * eps**2),
                ("this is the score of sigma; the exercise differentiates w.r.t. v = log_var: write sigma**2 = exp(v) "
                 "first, or use the chain rule", centred * (eps**2 - 1) / sigma),
                ("this is the score of the variance; the exercise differentiates w.r.t. v = log_var: write "
                 "sigma**2 = exp(v) first, or use the chain rule", centred * 0.5 * (eps**2 - 1) / sigma**2),
                ("the outputs are swapped: return (grad_mu, grad_log_var)", ref_mu),
                *baseline_and_key_variants(1),
            ])
    return _passed("check_score_function_loo", len(inputs))


# ---------------------------------------------------------------- lesson 6
@_exercise()
def check_negative_elbo(fn):
    """Lesson 6, ``ex06_vae_loss``: ``negative_elbo_loss(x (B, D), logits (B, D), mu (B, d), log_var (B, d))``.

    Reference: ``mean_b [KL_b - sum_j log Bern(x_bj; sigmoid(logits_bj))]`` in float64; the
    last input has logits of size up to 100 (needs a stable log-sigmoid). Also checks that
    ``jax.grad`` w.r.t. the logits works and equals ``(sigmoid(logits) - x) / B``.
    """
    rng = np.random.default_rng(10)
    shapes = ((4, 20, 3, 3.0), (8, 784, 20, 3.0), (2, 10, 2, 100.0))
    for i, (batch, size, d, scale) in enumerate(shapes):
        x = _f64(rng.random((batch, size)) < 0.5)
        logits = _f64(_f32(rng.normal(size=(batch, size)) * 3.0))
        if scale > 10:
            logits = _f64(np.where(rng.random((batch, size)) < 0.8, 2 * x - 1, 1 - 2 * x) * scale)
        mu, log_var = _f64(_f32(rng.normal(size=(batch, d)))), _f64(_f32(rng.uniform(-2, 1, (batch, d))))
        case = Case("check_negative_elbo", i, len(shapes), {"x": x, "logits": logits, "mu": mu, "log_var": log_var})
        args = tuple(_f32(a) for a in (x, logits, mu, log_var))
        rec = np.sum(x * logits - np.logaddexp(0, logits), axis=1)  # (B,)
        kl = _kl_std(mu, log_var)
        ref = np.mean(kl - rec)
        got = as_array(case, call(case, fn, *args), (),
            shape_hints={(batch,): "one loss per example: take the mean over the batch"},
            nonfinite_hint="log(0): log(sigmoid(logits)) underflows for large |logits|; use the stable "
            "vae_lite.distributions.log_bernoulli(x, logits) (or jax.nn.log_sigmoid / softplus), and remember "
            "the decoder outputs logits, not probabilities")
        probs = 1 / (1 + np.exp(-logits))
        expect_close(case, got, ref, rtol=1e-4, atol=1e-3,
            hint="the negative ELBO of section 1, averaged over the batch: per image, the reconstruction "
            "log-likelihood summed over the pixels (distributions.log_bernoulli) and the closed-form KL of lesson 4; "
            "check the sign each of the two enters with",
            variants=[
                ("you summed over the batch; the loss is the MEAN over the batch", batch * ref),
                ("you returned the ELBO; the loss is its negative", -ref),
                ("wrong sign of the KL: the loss is the NEGATIVE ELBO, and the ELBO is lowered by the KL",
                 np.mean(-kl - rec)),
                ("you forgot the KL term", np.mean(-rec)),
                ("you forgot the reconstruction term", np.mean(kl)),
                ("you averaged over pixels; sum the log-likelihood over pixels", np.mean(kl - rec / size)),
                ("you averaged the KL over latent dimensions; sum it", np.mean(kl / d - rec)),
                ("the KL uses sigma where it needs the variance sigma**2: which of sigma, sigma**2 and "
                 "log sigma**2 is log_var?",
                 np.mean(_kl_std(mu, 0.5 * log_var) - 0.25 * log_var.sum(1) - rec)),
                ("you applied sigmoid twice: log_bernoulli takes the logits themselves",
                 np.mean(kl - np.sum(x * probs - np.logaddexp(0, probs), axis=1))),
            ])
        if i == 0:
            loss_of_logits = jax.grad(lambda lg, args=args: fn(args[0], lg, args[2], args[3]))
            grad = call(case, loss_of_logits, args[1], what="jax.grad of your function w.r.t. logits")
            expect_close(case, as_array(case, grad, (batch, size), name="the gradient"),
                         (probs - x) / batch, name="the gradient w.r.t. logits",
                         hint="write the loss with jax.numpy operations only so that it can be differentiated")
    return _passed("check_negative_elbo", len(shapes))


# ---------------------------------------------------------------- lesson 7
@_exercise("inference.mean_field_step")
def check_mean_field_step(fn):
    """Lesson 7, ``ex07_mf_step``: ``mean_field_step(key, log_joint, mu, log_var, learning_rate, num_samples)``
    ``-> (new_mu, new_log_var)``.

    Reference: one gradient ASCENT step, ``(mu, log_var) + learning_rate * grad`` of
    ``vae_lite.elbo.elbo(key, log_joint, mu, log_var, num_samples)`` (same key, so exact). The
    gradient is computed by hand in float64 (:func:`vae_lite._reference.linear_gaussian_elbo_grad`)
    from the same noise ``eps = jax.random.normal(key, (num_samples, d))``, not by the library.
    """
    model, x = _linear_gaussian(60, 4, 2, 0.8)
    log_joint = model.log_joint(x)
    inputs = ((_f64([0.5, -0.3]), _f64([-1.0, -0.5]), 0.05, 32), (_f64(np.zeros(2)), _f64(np.zeros(2)), 0.1, 8))
    for i, (mu, log_var, lr, num_samples) in enumerate(inputs):
        key = jax.random.key(i)
        case = Case("check_mean_field_step", i, len(inputs), {
            "key": f"jax.random.key({i})", "log_joint": "log p(x, z) of a linear-Gaussian model", "mu": mu,
            "log_var": log_var, "learning_rate": lr, "num_samples": num_samples})

        def grad(k, mu=mu, log_var=log_var, num_samples=num_samples):
            eps = jax.random.normal(k, (num_samples, len(mu)), jnp.float32)  # the noise elbo.elbo draws
            g = R.linear_gaussian_elbo_grad(model.W, model.b, model.sigma, x, _f32(mu), _f32(log_var), eps)
            return np.concatenate(g)

        old, g = np.concatenate([mu, log_var]), grad(key)
        ref = old + lr * g
        out = call(case, fn, key, log_joint, _f32(mu), _f32(log_var), lr, num_samples)
        new_mu, new_log_var = unpack(case, out, ("new_mu", "new_log_var"))
        got = np.concatenate([as_array(case, new_mu, (2,), name="new_mu"),
                              as_array(case, new_log_var, (2,), name="new_log_var")])
        other_key = "the gradient differs: use vae_lite.elbo.elbo(key, ...) with the key as given (no splitting)"
        expect_close(case, got, ref, rtol=1e-4, atol=1e-4, name="(new_mu, new_log_var)",
            hint="one plain gradient-ASCENT step of size learning_rate on vae_lite.elbo.elbo with respect to "
            "(mu, log_var) only, the key as given; jax.grad's argnums says which arguments it differentiates",
            variants=[
                ("you descended: we MAXIMISE the ELBO, so step along the gradient, not against it", old - lr * g),
                ("you returned the gradient; return the updated parameters", g),
                ("you ignored the learning rate", old + g),
                ("log_var was not updated", np.concatenate([ref[:2], log_var])),
                ("mu was not updated", np.concatenate([mu, ref[2:]])),
                ("the outputs are swapped: return (new_mu, new_log_var)", np.concatenate([ref[2:], ref[:2]])),
                (other_key, lambda g=grad, k=key, o=old, r=lr: o + r * g(jax.random.split(k)[0])),
                (other_key, lambda g=grad, k=key, o=old, r=lr: o + r * g(jax.random.split(k)[1])),
            ])
    return _passed("check_mean_field_step", len(inputs))


@_exercise()
def check_refinement(fn):
    """Lesson 7, ``ex07_refine``: ``refine(key, log_joint, mu, log_var, learning_rate, num_steps, num_samples)``
    ``-> (mu, log_var)``.

    Reference: from the encoder's ``(mu, log_var)``, ``num_steps`` plain gradient-ASCENT steps
    ``params + learning_rate * grad`` of ``vae_lite.elbo.elbo(keys[t], log_joint, mu, log_var, num_samples)``,
    ``keys = jax.random.split(key, num_steps)`` (fresh noise each step; ``num_steps = 0`` returns the
    inputs). Each gradient is computed by hand in float64
    (:func:`vae_lite._reference.linear_gaussian_elbo_grad`) from the noise
    ``jax.random.normal(keys[t], (num_samples, d))`` that elbo.elbo draws, on an exact linear-Gaussian
    model; the exact ELBO of the reference rises over the five steps of the last input.
    """
    model, x = _linear_gaussian(60, 4, 2, 0.8)
    log_joint = model.log_joint(x)
    post_mean, post_cov, _ = _np_posterior(model, x)
    guess = (post_mean + np.array([0.6, -0.5]), np.log(np.diag(post_cov)) + 1.0)  # an encoder's imperfect guess
    inputs = ((guess, 0.05, 0, 8), (guess, 0.08, 1, 16), (guess, 0.05, 5, 32))
    for i, ((mu, log_var), lr, num_steps, num_samples) in enumerate(inputs):
        mu, log_var = _f64(_f32(mu)), _f64(_f32(log_var))
        key = jax.random.key(i)
        case = Case("check_refinement", i, len(inputs), {
            "key": f"jax.random.key({i})", "log_joint": "log p(x, z) of a linear-Gaussian model", "mu": mu,
            "log_var": log_var, "learning_rate": lr, "num_steps": num_steps, "num_samples": num_samples})
        start = np.concatenate([mu, log_var])

        def ascend(keys, lr=lr, sign=1.0, num_samples=num_samples, start=start):
            """The parameters after one step per key, and the last gradient (NaN if no step)."""
            params, g = start, np.full(4, np.nan)
            for k in keys:
                eps = jax.random.normal(k, (num_samples, 2), jnp.float32)  # the noise elbo.elbo draws
                g = np.concatenate(R.linear_gaussian_elbo_grad(model.W, model.b, model.sigma, x, params[:2],
                                                               params[2:], eps))
                params = params + sign * lr * g
            return params, g

        keys = jax.random.split(key, num_steps)
        ref, last_grad = ascend(keys)
        if num_steps == 5:  # the reference itself: refinement raises the exact ELBO
            def exact_elbo(p):
                return R.linear_gaussian_elbo(model.W, model.b, model.sigma, x, p[:2], np.exp(p[2:]))

            assert exact_elbo(ref) > exact_elbo(start), "check_refinement: the reference did not raise the ELBO"
        out = call(case, fn, key, log_joint, _f32(mu), _f32(log_var), lr, num_steps, num_samples)
        new_mu, new_log_var = unpack(case, out, ("mu", "log_var"))
        blown_up = ("the parameters blew up: is each step an ASCENT step scaled by learning_rate? A step against the "
                    "gradient, or without the rate, diverges")
        got = np.concatenate([as_array(case, new_mu, (2,), name="mu", nonfinite_hint=blown_up),
                              as_array(case, new_log_var, (2,), name="log_var", nonfinite_hint=blown_up)])
        split_hint = "one key per step: step t uses the t-th of the num_steps keys of jax.random.split(key, num_steps)"
        count_hint = "take exactly num_steps steps, step t with the t-th key of jax.random.split(key, num_steps)"

        def chained(k=key, n=num_steps, use_new=True):
            steps = []
            for _ in range(n):
                k, sub = jax.random.split(k)
                steps.append(sub if use_new else k)
            return steps

        expect_close(case, got, ref, rtol=1e-4, atol=1e-4, name="(mu, log_var)",
            hint="start at (mu, log_var) and take num_steps gradient-ascent steps (your mean_field_step does one), "
            "step t with the t-th key of jax.random.split(key, num_steps); num_steps = 0 returns the inputs",
            variants=[
                ("the same key at every step gives the same noise every step: " + split_hint,
                 lambda a=ascend, k=key, n=num_steps: a([k] * n)[0]),
                (split_hint + " (not a chain of splits)", lambda c=chained, a=ascend: a(c())[0]),
                (split_hint + " (not a chain of splits)", lambda c=chained, a=ascend: a(c(use_new=False))[0]),
                ("one step too many: " + count_hint, lambda a=ascend, k=key, n=num_steps: a(jax.random.split(k, n + 1))[0]),
                ("one step too few: " + count_hint, lambda a=ascend, ks=keys: a(ks[:-1])[0]),
                ("one step too few: " + count_hint, lambda a=ascend, ks=keys: a(ks[1:])[0]),
                ("you returned after the first step: put the return after the loop", lambda a=ascend, ks=keys: a(ks[:1])[0]),
                ("you descended: we MAXIMISE the ELBO, so step along the gradient, not against it",
                 lambda a=ascend, ks=keys: a(ks, sign=-1.0)[0]),
                ("you returned the last gradient; return the refined parameters", last_grad),
                ("you ignored the learning rate", lambda a=ascend, ks=keys: a(ks, lr=1.0)[0]),
                ("the outputs are swapped: return (mu, log_var)", np.concatenate([ref[2:], ref[:2]])),
            ])
    return _passed("check_refinement", len(inputs))


# ---------------------------------------------------------------- lesson 8
@_exercise("explorer.interpolate")
def check_interpolation(fn):
    """Lesson 8, ``ex08_interpolate``: ``interpolate(z0 (d,), z1 (d,), t (T,)) -> (T, d)``.

    Reference: ``(1 - t) z0 + t z1`` row by row.
    """
    rng = np.random.default_rng(13)
    inputs = ((3, np.linspace(0, 1, 5)), (2, np.array([0.3, 0.0, 1.0, 0.75])), (1, np.array([0.5])))
    for i, (d, t) in enumerate(inputs):
        z0, z1 = _f64(_f32(rng.normal(size=d))), _f64(_f32(rng.normal(size=d)))
        t = _f64(_f32(t))
        case = Case("check_interpolation", i, len(inputs), {"z0": z0, "z1": z1, "t": t})
        tt = t[:, None]
        ref = (1 - tt) * z0 + tt * z1
        got = as_array(case, call(case, fn, _f32(z0), _f32(z1), _f32(t)), (len(t), d),
                       shape_hints={(d, len(t)): "transposed: one row per value of t, shape (T, d); give t a "
                                    "trailing axis of length 1 so that it broadcasts against the (d,) codes"})
        expect_close(case, got, ref, rtol=1e-5, atol=1e-5,
            hint="row k is the point a fraction t_k of the way along the straight line from z0 to z1: t = 0 gives "
            "z0, t = 1 gives z1, t = 0.5 the midpoint",
            variants=[
                ("the endpoints are swapped: t = 0 must give z0", tt * z0 + (1 - tt) * z1),
                ("z0 keeps its full weight at every t: at t = 1 your row is z0 + z1, not z1; the weight of z0 must "
                 "fall to 0 as t goes to 1", z0 + tt * z1),
                ("you forgot z0: at t = 0 your row is 0, not z0", tt * z1),
            ])
    return _passed("check_interpolation", len(inputs))


@_exercise("explorer.inverse_cdf_grid")
def check_inverse_cdf_grid(fn):
    """Lesson 8, ``ex08_inverse_cdf``: ``inverse_cdf_grid(num_points) -> (num_points,)``.

    Reference: ``statistics.NormalDist().inv_cdf((i + 0.5) / num_points)`` in float64.
    """
    sizes = (4, 11, 1)
    for i, n in enumerate(sizes):
        case = Case("check_inverse_cdf_grid", i, len(sizes), {"num_points": n})
        normal = NormalDist()
        probs = (np.arange(n) + 0.5) / n
        ref = np.array([normal.inv_cdf(p) for p in probs])
        got = as_array(case, call(case, fn, n), (n,),
            nonfinite_hint="the inverse CDF of 0 is -inf and of 1 is +inf, so a grid of probabilities "
            "including 0 and 1 (jnp.linspace(0, 1, n)) breaks: no slice has its middle at probability 0 or 1")
        expect_close(case, got, ref, rtol=1e-4, atol=1e-4,
            hint="the grid must hold num_points points of equal prior mass, each in the middle (in probability) of "
            "its slice: which probability lies below slice i's middle? Then one function of jax.scipy.stats.norm, "
            "the inverse CDF, turns that probability into the point",
            variants=[
                ("you used the probabilities (i + 1) / (n + 1): they cut [0, 1] into n + 1 equal pieces and take "
                 "their inner edges; the grid needs n slices of equal mass and the middle (in probability) of each",
                 [normal.inv_cdf((j + 1) / (n + 1)) for j in range(n)]),
                ("these are probabilities (the prior mass below each point), not points on the real line: map "
                 "them through the inverse CDF", probs),
                ("you used the CDF Phi, which maps points to probabilities; the grid needs its inverse, from "
                 "probabilities to points (another function of jax.scipy.stats.norm)",
                 [normal.cdf(p) for p in probs]),
                ("the order is reversed: quantiles must increase with i", ref[::-1]),
            ])
    return _passed("check_inverse_cdf_grid", len(sizes))



# ---------------------------------------------------------------- checks that live in their own modules
# check name -> private module (imported on first use: each builds on this module's machinery)
_MODULE_CHECKS = {
    "check_decoder": "_checks_training", "check_encoder": "_checks_training",  # lesson 6's modules, loss, step
    "check_train_step": "_checks_training", "check_vae_loss": "_checks_training",
    "check_fair_generator": "_checks_generation",  # lesson 2: a Gaussian fitted to an autoencoder's codes
    "check_iwae_bound": "_checks_bounds",  # lesson 4: the importance-weighted bound
    "check_full_covariance_elbo": "_checks_full_covariance",  # lesson 7: a richer q
}


def __getattr__(name):
    """``grading.check_encoder`` and the other checks listed in :data:`_MODULE_CHECKS`, from their modules."""
    if name in _MODULE_CHECKS:
        return getattr(importlib.import_module(f"vae_lite.{_MODULE_CHECKS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    available = [n for n, m in _MODULE_CHECKS.items() if importlib.util.find_spec(f"vae_lite.{m}") is not None]
    return sorted([*globals(), *available])
