"""Lesson 7's live picture of the gaps (``vae_lite.gaps``), against the exact linear-Gaussian answers.

With p(z) = N(0, I) and x | z ~ N(Wz + b, s^2 I) the posterior is Gaussian with a known mean and
covariance, so log p(x), the best diagonal Gaussian q* (mean: the posterior mean; precisions: the
diagonal of the posterior precision) and the approximation gap KL(q* || p(z|x)) are closed forms.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from vae_lite import _reference as R
from vae_lite import gaps


def gaussian_kl(m0, c0, m1, c1):
    """KL(N(m0, c0) || N(m1, c1)) in float64."""
    inv = np.linalg.inv(c1)
    d = len(m0)
    return 0.5 * (np.trace(inv @ c0) - d + (m1 - m0) @ inv @ (m1 - m0) + np.linalg.slogdet(c1)[1]
                  - np.linalg.slogdet(c0)[1])


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    w, b, sigma = rng.normal(size=(5, 2)), rng.normal(size=5), 0.7
    xs = [w @ rng.normal(size=2) + b + sigma * rng.normal(size=5) for _ in range(3)]
    return w, b, sigma, xs


def grids_of(model, mus, log_vars, num=121, width=7.0):
    """ImageGrids of the linear-Gaussian model, built in NumPy as decoder_grids builds a VAE's."""
    w, b, sigma, xs = model
    axes, points, cells, values = [], [], [], []
    for x, mu, lv in zip(xs, mus, log_vars, strict=True):
        half = np.maximum(width * np.exp(0.5 * lv), 0.5)
        a = mu[:, None] + half[:, None] * np.linspace(-1, 1, num)
        z = np.stack(np.meshgrid(a[0], a[1], indexing="ij"), -1).reshape(-1, 2)
        axes.append(a)
        points.append(z)
        cells.append((a[0, 1] - a[0, 0]) * (a[1, 1] - a[1, 0]))
        values.append(R.linear_gaussian_log_joint(w, b, sigma, x, z))
    return gaps.ImageGrids(*(jnp.asarray(np.array(v), jnp.float32) for v in (axes, points, cells, values)))


@pytest.fixture(scope="module")
def computed(model):
    w, b, sigma, xs = model
    posts = [R.linear_gaussian_posterior(w, b, sigma, x) for x in xs]
    # a start like an encoder's: off the posterior mean, too narrow in one axis, too wide in the other
    mus = np.array([m + np.array([0.4, -0.3]) for m, _ in posts])
    log_vars = np.array([np.log(np.diag(c)) + np.array([-1.0, 0.8]) for _, c in posts])
    g = gaps.refine_on_grid(grids_of(model, [m for m, _ in posts], [np.log(np.diag(c)) for _, c in posts]),
                            mus, log_vars)
    return posts, mus, log_vars, g


def test_log_evidence_and_both_gaps_match_the_closed_forms(model, computed):
    w, b, sigma, xs = model
    posts, mus, log_vars, g = computed
    for i, (x, (mean, cov)) in enumerate(zip(xs, posts, strict=True)):
        assert g.log_evidence[i] == pytest.approx(R.linear_gaussian_log_evidence(w, b, sigma, x), abs=2e-3)
        start_kl = gaussian_kl(mus[i], np.diag(np.exp(log_vars[i])), mean, cov)
        assert g.elbo[i, 0] == pytest.approx(g.log_evidence[i] - start_kl, abs=5e-3)  # the encoder's q, K = 0
        precision = np.linalg.inv(cov)
        best_var = 1 / np.diag(precision)  # the best diagonal Gaussian: the posterior mean, 1 / diag(precision)
        np.testing.assert_allclose(g.mu[i, -1], mean, atol=5e-3)
        np.testing.assert_allclose(np.exp(g.log_var[i, -1]), best_var, rtol=2e-2)
        assert g.approximation_gap[i] == pytest.approx(gaussian_kl(mean, np.diag(best_var), mean, cov), abs=5e-3)
        assert g.amortization_gap[i] == pytest.approx(start_kl - g.approximation_gap[i], abs=1e-2)
        assert g.approximation_gap[i] > 0.01  # a correlated posterior: no diagonal q reaches it


def test_refinement_keeps_q_after_every_step(computed):
    _, mus, log_vars, g = computed
    assert g.mu.shape == (3, gaps.NUM_STEPS + 1, 2) and g.elbo.shape == (3, gaps.NUM_STEPS + 1)
    np.testing.assert_allclose(g.mu[:, 0], mus, rtol=1e-6)  # K = 0 is the start itself
    np.testing.assert_allclose(g.log_var[:, 0], log_vars, rtol=1e-6)
    assert np.all(g.elbo[:, -1] > g.elbo[:, 0] + 0.1) and np.all(g.elbo <= g.log_evidence[:, None] + 1e-4)


def test_decoder_grids_evaluate_the_bernoulli_log_joint_around_the_encoders_q():
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(2, 6)), rng.normal(size=6)
    x = (rng.random((2, 6)) < 0.5).astype(np.float32)
    mu, log_var = np.array([[0.3, -1.0], [2.0, 0.5]]), np.array([[-6.0, -1.0], [0.0, -2.0]])
    grids = gaps.decoder_grids(lambda z: z @ jnp.asarray(a, jnp.float32) + jnp.asarray(c, jnp.float32),
                               jnp.asarray(x), jnp.asarray(mu), jnp.asarray(log_var), num=5, width=10.0)
    half = np.maximum(10.0 * np.exp(0.5 * log_var), 0.5)
    np.testing.assert_allclose(np.asarray(grids.axes)[:, :, 0], mu - half, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grids.axes)[:, :, -1], mu + half, rtol=1e-5)
    for i in range(2):
        z = np.asarray(grids.points[i], np.float64)
        logits = z @ a + c
        expected = (np.sum(x[i] * logits - np.logaddexp(0, logits), 1) - 0.5 * np.sum(z**2, 1) - np.log(2 * np.pi))
        np.testing.assert_allclose(np.asarray(grids.log_joint[i]), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="2-d latent"):
        gaps.decoder_grids(lambda z: z, jnp.asarray(x), jnp.zeros((2, 3)), jnp.zeros((2, 3)))


def test_the_widget_shows_the_chosen_image_and_step_and_refuses_what_it_has_not_computed(computed):
    _, _, _, g = computed
    w = gaps.gap_widget(g, ["a", "b", "c"], index=1)
    first = w.png
    w.step_slider.value = gaps.NUM_STEPS
    assert w.png != first and w.readout["elbo_k"] == pytest.approx(g.elbo[1, -1])
    assert w.readout["closed"] == pytest.approx(1.0)
    w.image_menu.value = 2
    assert w.readout["log_evidence"] == pytest.approx(g.log_evidence[2])
    assert "approximation gap" in "\n".join(w.caption()) and w.static_png[:4] == b"\x89PNG"
    for bad in ({"index": 3}, {"index": -1}, {"steps": gaps.NUM_STEPS + 1}, {"steps": 2.5}):
        with pytest.raises(ValueError):
            gaps.gap_widget(g, **bad)
    with pytest.raises(ValueError, match="the number of labels must be 3, got 1. Pass one label per image"):
        gaps.gap_widget(g, ["a"])


def test_gap_frames_precompute_each_image_and_step(model, computed):
    g = computed[-1]
    num_images = len(g.log_evidence)
    view = gaps.gap_frames(g, [f"point {i}" for i in range(num_images)], images=[1, 0], steps=(0, 3, gaps.NUM_STEPS))
    assert [label for label, _ in view.sliders[0].options] == ["point 1", "point 0"]
    assert [label for label, _ in view.sliders[1].options] == ["0", "3", str(gaps.NUM_STEPS)]
    pngs = [[view.inner[row].children[col].value for col in range(3)] for row in range(2)]
    assert len({png for row in pngs for png in row}) == 6  # every image and step is its own picture
    assert pngs == [list(row) for row in view.pngs]
    assert view.caption()[1:] == ["image = point 1", "K steps = 0"]
    with pytest.raises(ValueError, match="at most 12"):
        gaps.gap_frames(g, images=[0] * 13)
    with pytest.raises(ValueError, match="steps"):
        gaps.gap_frames(g, steps=(0, gaps.NUM_STEPS + 1))
