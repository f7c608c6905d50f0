"""Lesson 3's naive Monte Carlo widget (``vae_lite.naive_mc``), against the linear-Gaussian closed forms.

With p(z) = N(0, I) and x | z ~ N(Wz + b, s^2 I), log p(x) = log N(x; b, W W^T + s^2 I), and the
likelihood's relative variance under the prior is exact too: p(x | z)^2 = (4 pi s^2)^(-D/2) N(x; Wz + b,
s^2/2 I), so E_p(z)[p(x | z)^2] = (4 pi s^2)^(-D/2) N(x; b, W W^T + s^2/2 I) and v = E[p^2] / p(x)^2 - 1.
For S >> v the delta method gives sd[log p_hat] ~ sqrt(v / S) and E[log p_hat] ~ log p(x) - v / (2 S).
"""

import numpy as np
import pytest
import traitlets
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from vae_lite import _reference as R
from vae_lite import naive_mc

POOL = 2**16


@pytest.fixture(scope="module")
def model():
    """Two data points of a linear-Gaussian model (d = 1, D = 3) and a pool of prior samples for each."""
    rng = np.random.default_rng(5)
    w, b, sigma = 4 * rng.normal(size=(3, 1)), rng.normal(size=3), 0.5
    xs = [w @ rng.normal(size=1) + b + sigma * rng.normal(size=3) for _ in range(2)]
    z = rng.normal(size=(POOL, 1))
    log_lik = np.array([R.linear_gaussian_log_joint(w, b, sigma, x, z) + 0.5 * (np.log(2 * np.pi) + z[:, 0] ** 2)
                        for x in xs])  # log p(x | z) = log p(x, z) - log p(z)
    log_evidence = np.array([R.linear_gaussian_log_evidence(w, b, sigma, x) for x in xs])
    second = [-1.5 * np.log(4 * np.pi * sigma**2) + multivariate_normal.logpdf(x, b, w @ w.T + sigma**2 / 2 * np.eye(3))
              for x in xs]  # log E[p(x | z)^2]
    v = np.exp(np.array(second) - 2 * log_evidence) - 1
    return log_lik, log_evidence, v


@pytest.fixture(scope="module")
def naive(model):
    log_lik, log_evidence, _ = model
    return naive_mc.naive_estimates(log_lik, log_evidence)


def test_the_estimates_approach_the_exact_log_evidence_as_s_grows(model, naive):
    _, log_evidence, v = model
    assert 5 < v.min() and v.max() < 50  # a model where S = 1 is visibly biased and S = 4096 is not
    sizes = naive.sample_sizes
    assert list(sizes) == [2**k for k in range(13)]  # powers of 2 up to MAX_SAMPLES = 4096
    for i in range(2):
        assert naive.bias[i, 0] < -5 * naive.bias_se[i, 0]  # S = 1: biased low (Jensen), far beyond the noise
        assert abs(naive.bias[i, -1]) < 4 * naive.bias_se[i, -1] + 0.01  # S = 4096: log p(x) within 4 s.e.
        large = sizes >= 16 * v[i]  # where the delta method holds
        # sd ~ sqrt(v / S): the sample sd of n estimates has a relative standard error ~ 1 / sqrt(2 n)
        ratio = naive.sd[i, large] / np.sqrt(v[i] / sizes[large])
        n = naive.num_estimates[large]
        assert np.all(np.abs(ratio - 1) < 0.1 + 5 / np.sqrt(2 * n))
        # mean ~ log p(x) - v / (2 S), within 5 standard errors of the mean
        expected = -v[i] / (2 * sizes[large])
        assert np.all(np.abs(naive.bias[i, large] - expected) < 5 * naive.bias_se[i, large] + 0.01)


def test_summaries_are_the_log_sum_exp_of_disjoint_groups(model, naive):
    log_lik, log_evidence, _ = model
    for k, s in enumerate(naive.sample_sizes):
        groups = log_lik.reshape(2, POOL // s, s)
        estimates = logsumexp(groups, axis=-1) - np.log(s)  # scipy: an independent log-sum-exp
        np.testing.assert_allclose(naive.estimates[k], estimates, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(naive.mean[:, k], estimates.mean(1), rtol=1e-12)
        np.testing.assert_allclose(naive.sd[:, k], np.std(estimates, axis=1, ddof=1), rtol=1e-9)
        np.testing.assert_allclose(naive.bias_se[:, k], np.std(estimates, 1, ddof=1) / np.sqrt(POOL // s), rtol=1e-9)
        np.testing.assert_allclose(naive.above[:, k], (estimates > log_evidence[:, None]).mean(1))
    assert list(naive.num_estimates) == [POOL // s for s in naive.sample_sizes]


def test_the_widget_shows_the_chosen_image_and_s(model, naive):
    log_lik, log_evidence, _ = model
    w = naive_mc.naive_widget(naive, ["first", "second"], index=0, num_samples=1)
    first = w.png
    w.sample_slider.value = 64
    assert w.png != first
    estimates = logsumexp(log_lik[0].reshape(-1, 64), axis=-1) - np.log(64)
    assert w.readout["num_samples"] == 64 and w.readout["num_estimates"] == POOL // 64
    assert w.readout["bias"] == pytest.approx(estimates.mean() - log_evidence[0], rel=1e-9)
    assert w.readout["bias_se"] == pytest.approx(estimates.std(ddof=1) / np.sqrt(len(estimates)), rel=1e-9)
    assert w.readout["sd"] == pytest.approx(estimates.std(ddof=1), rel=1e-9)
    share = np.mean(estimates > log_evidence[0])
    assert w.readout["above"] == pytest.approx(share)
    assert w.readout["above_se"] == pytest.approx(np.sqrt(share * (1 - share) / len(estimates)))
    before = w.png
    w.image_menu.value = 1
    assert w.png != before and w.readout["log_evidence"] == pytest.approx(log_evidence[1])
    w.image_menu.value = 0  # back to a picture already drawn once: the same PNG
    assert w.png == before
    caption = "\n".join(w.caption())
    assert "S samples = 64" in caption and "share of the estimates above log p(x)" in caption
    assert w.static_png[:4] == b"\x89PNG"


def test_the_slider_refuses_an_s_that_was_not_computed_and_the_widget_stays_as_it_was(naive):
    w = naive_mc.naive_widget(naive, num_samples=16)
    shown, readout = w.png, dict(w.readout)
    for bad in (3, float("nan"), 8192):
        with pytest.raises(traitlets.TraitError):
            w.sample_slider.value = bad
    assert w.num_samples == 16 and w.png == shown and w.readout == readout


@pytest.mark.parametrize("bad, match", [
    ({"index": 2}, r"index=2 is out of range: there are 2 images \(0 to 1\)"),
    ({"index": -1}, "index must be an integer >= 0, got -1"),
    ({"index": True}, r"index must be an integer >= 0, got True \(bool\)"),
    ({"num_samples": 3}, r"num_samples \[3\] not among \[.*\]; pick one of the sample sizes"),
    ({"num_samples": float("nan")}, r"num_samples must be an integer >= 1, got nan \(float\); pass a whole number"),
    ({"num_samples": 4.0}, "num_samples must be an integer >= 1, got 4.0 .*write num_samples=4"),
])
def test_the_widget_refuses_an_image_or_s_it_has_not_computed(naive, bad, match):
    with pytest.raises(ValueError, match=match):
        naive_mc.naive_widget(naive, **bad)
    with pytest.raises(ValueError, match="one label per image"):
        naive_mc.naive_widget(naive, ["a"])


def test_bad_arrays_are_refused_with_the_fix():
    log_lik, log_evidence = np.zeros((2, 64)), np.zeros(2)
    with pytest.raises(ValueError, match=r"one value per image, shape \(2,\)"):
        naive_mc.naive_estimates(log_lik, np.zeros(3))
    with pytest.raises(ValueError, match="N images, P prior samples"):
        naive_mc.naive_estimates(np.zeros(64), np.zeros(1))
    with pytest.raises(ValueError, match="N images, P prior samples"):
        naive_mc.naive_estimates(np.zeros((2, 1)), log_evidence)
    nan = log_lik.copy()
    nan[1, 5] = np.nan
    with pytest.raises(ValueError, match="log_likelihood holds NaN"):
        naive_mc.naive_estimates(nan, log_evidence)
    with pytest.raises(ValueError, match="log_evidence holds an infinite value"):
        naive_mc.naive_estimates(log_lik, np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="must divide the pool"):
        naive_mc.naive_estimates(log_lik, log_evidence, sample_sizes=[1, 3])
    with pytest.raises(ValueError, match="at least 2 estimates"):
        naive_mc.naive_estimates(log_lik, log_evidence, sample_sizes=[64])
    with pytest.raises(ValueError, match="increasing"):
        naive_mc.naive_estimates(log_lik, log_evidence, sample_sizes=[4, 2])
    with pytest.raises(ValueError, match="integer"):
        naive_mc.naive_estimates(log_lik, log_evidence, sample_sizes=[2.5])
    assert list(naive_mc.naive_estimates(log_lik, log_evidence).sample_sizes) == [1, 2, 4, 8, 16, 32]
