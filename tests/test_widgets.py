"""Tests for vae_lite.widgets: the picture plumbing, and lesson 4's ELBO widget against closed forms."""

import base64
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import stats

from vae_lite import _reference as R
from vae_lite import posterior, widgets


def png_pixels(png, mode="L"):
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


# ---------------------------------------------------------------- pictures


def test_to_png_upscales_with_nearest_neighbour():
    image = np.array([[0.0, 1.0], [1.0, 0.0]])
    pixels = png_pixels(widgets.to_png(image, scale=3))
    assert pixels.shape == (6, 6)
    np.testing.assert_array_equal(pixels[:3, :3], 255)  # 0 = white background
    np.testing.assert_array_equal(pixels[:3, 3:], 0)  # 1 = black ink


def test_to_png_draws_the_marker_in_red():
    marker = np.array([[True, False], [False, False]])
    pixels = png_pixels(widgets.to_png(np.full((2, 2), 0.5), scale=1, marker=marker), "RGB")
    np.testing.assert_array_equal(pixels[0, 0], [220, 30, 30])
    assert pixels[1, 1, 0] == pixels[1, 1, 1] == pixels[1, 1, 2]  # the rest stays grey


def test_side_by_side_leaves_white_gaps():
    a, b = np.full((2, 3), 0.25), np.full((2, 3), 0.75)
    canvas = widgets.side_by_side([a, b], gap=2)
    assert canvas.shape == (2, 8)
    np.testing.assert_array_equal(canvas[:, :3], a)
    np.testing.assert_array_equal(canvas[:, 3:5], 0.0)
    np.testing.assert_array_equal(canvas[:, 5:], b)


# ---------------------------------------------------------------- the view


class Level(widgets.View):
    """A minimal view: one slider, the picture a uniform grey at the slider's value."""

    def __init__(self):
        self.level = widgets.slider("level", 0.2, 1.0, lo=0.0)
        self.level.observe(self._guard, names="value")
        self.draws = 0
        self._init_view([self.level])

    def picture(self):
        self.draws += 1
        return np.full((4, 4), self.level.value)


def test_view_redraws_on_a_slider_change_and_rejects_nan():
    view = Level()
    assert view.draws == 1 and view.scale == Level.target // 4
    assert (view.image_widget.height, view.image_widget.width) == (str(4 * view.scale),) * 2
    before = view.png
    view.level.value = 0.9
    assert view.draws == 2 and view.png != before
    np.testing.assert_allclose(png_pixels(view.png), round(255 * (1 - 0.9)), atol=1)
    view.level.value = float("nan")
    assert view.level.value == 0.9
    view.level.value = 5.0  # clamped to the slider's range
    assert view.level.value == 1.0
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == view.static_png


def test_static_png_is_the_picture_with_the_controls_written_under_it():
    view = Level()
    view.level.value = 0.75
    assert view.caption()[1:] == ["level = 0.75"]
    static = Image.open(io.BytesIO(view.static_png))
    assert static.text["Description"] == "\n".join(view.caption())  # the text travels with the picture
    live = png_pixels(view.png, "RGB")
    h, w, _ = live.shape
    pixels = np.asarray(static.convert("RGB"))
    np.testing.assert_array_equal(pixels[:h, :w], live)  # the picture itself, unchanged
    assert pixels.shape[0] > h and (pixels[h:] < 128).any()  # and dark text below it
    assert view._repr_mimebundle_()["text/plain"] == "\n".join(view.caption())


def test_control_text_reads_what_the_reader_sees():
    assert widgets.control_text(widgets.slider("z[3]", -1.234, 3.0)) == "z[3] = -1.23"
    html = widgets.widgets.HTML("<b>ELBO</b> -3.5 &nbsp;+&nbsp; <b>KL</b> 0.2")
    assert widgets.control_text(html) == "ELBO -3.5 + KL 0.2"
    choice = widgets.widgets.Dropdown(options=[("first 7", 0), ("first 2", 1)], value=1, description="or digit")
    assert widgets.control_text(choice) == "or digit = first 2"
    assert widgets.control_text(widgets.widgets.Dropdown(options=[("a", 0)], value=None)) == ""
    box = widgets.widgets.HBox([widgets.slider("a", 0.5, 1.0), widgets.slider("b", -0.25, 1.0)])
    assert widgets.control_text(box) == "a = 0.50, b = -0.25"


# ---------------------------------------------------------------- lesson 4: ELBO widget


@pytest.fixture(scope="module")
def linear_gaussian():
    model = posterior.LinearGaussian.random(jax.random.key(0), 3, 1, sigma=0.7)
    x = model.sample(jax.random.key(1), 1)[1][0]
    return model, x


def exact_posterior(model, x):
    """Mean and variance of the 1-D posterior p(z|x), by conditioning the joint Gaussian of (z, x) (float64)."""
    mean, cov = R.linear_gaussian_posterior(model.W, model.b, model.sigma, x)
    return float(mean[0]), float(cov[0, 0])


def exact_log_evidence(model, x):
    """log N(x; b, W W^T + sigma^2 I) in float64 (scipy)."""
    W, b = (np.asarray(a, np.float64) for a in (model.W, model.b))
    return stats.multivariate_normal(b, W @ W.T + float(model.sigma) ** 2 * np.eye(len(b))).logpdf(np.asarray(x))


def closed_form_elbo(model, x, mu, log_var):
    """ELBO of q = N(mu, e^log_var) for the 1-D-latent linear-Gaussian model, in closed form (float64)."""
    return R.linear_gaussian_elbo(model.W, model.b, model.sigma, x, np.atleast_1d(mu), np.atleast_1d(np.exp(log_var)))


@pytest.mark.parametrize("mu, log_var", [(0.0, 0.0), (0.8, -2.0), (-1.0, -0.5)])
def test_elbo_widget_against_closed_forms(linear_gaussian, mu, log_var):
    model, x = linear_gaussian
    view = widgets.elbo_widget(model.log_joint(x), jnp.linspace(-6, 6, 1201), mu=mu, log_var=log_var)
    assert (view.mu, view.log_var) == (mu, log_var)
    np.testing.assert_allclose(view.log_evidence, exact_log_evidence(model, x), atol=1e-4)
    np.testing.assert_allclose(view.elbo, closed_form_elbo(model, x, mu, log_var), atol=1e-3)
    # KL(N(mu, s2) || N(m, v)) between two 1-D Gaussians, with p(z|x) = N(m, v) from the conditioning formula
    m, v = exact_posterior(model, x)
    s2 = np.exp(log_var)
    kl = 0.5 * (np.log(v / s2) + (s2 + (mu - m) ** 2) / v - 1)
    np.testing.assert_allclose(view.kl, kl, atol=1e-3)


def test_elbo_widget_sliders_update_live(linear_gaussian):
    model, x = linear_gaussian
    view = widgets.elbo_widget(model.log_joint(x), jnp.linspace(-6, 6, 1201))
    m, v = exact_posterior(model, x)
    before = view.png
    view.mu_slider.value = m
    view.log_var_slider.value = float(np.log(v))
    assert view.png != before
    np.testing.assert_allclose(view.mu, m, atol=0.01)  # the slider rounds to its step
    np.testing.assert_allclose(view.elbo, closed_form_elbo(model, x, view.mu, view.log_var), atol=1e-3)
    assert view.kl < 1e-3  # q = posterior: the bound is tight
    assert str(round(view.kl, 3)) in view.text.value or f"{view.kl:.3f}" in view.text.value
    # the static copy (a saved notebook without a kernel) states the slider values and all three readouts
    caption = Image.open(io.BytesIO(view.static_png)).text["Description"]
    assert f"mu = {view.mu:.2f}" in caption and f"log_var = {view.log_var:.2f}" in caption
    for name, value in (("log p(x) =", view.log_evidence), ("ELBO", view.elbo), ("KL(q || p(z|x))", view.kl)):
        assert f"{name} {value:.3f}" in caption, (name, caption)
    view.log_var_slider.value = 100.0  # clamped to the slider's range
    assert view.log_var == view.log_var_slider.max
    view.mu_slider.value = float("nan")
    assert np.isfinite(view.mu) and np.isfinite(view.elbo)


def test_elbo_widget_rejects_bad_grid(linear_gaussian):
    model, x = linear_gaussian
    with pytest.raises(ValueError, match="1-D"):
        widgets.elbo_widget(model.log_joint(x), jnp.zeros((3, 3)))


@pytest.mark.parametrize("bad, message", [
    ({"log_var_range": (5, -5)}, r"log_var_range must be \(low, high\) with low < high, got \(5, -5\); pass \(-5, 5\)"),
    ({"log_var_range": (0, float("nan"))}, "log_var_range's high must be one finite number"),
    ({"grid_axis": jnp.linspace(-3, 3, 3)}, r"grid_axis must be a 1-D array of at least 11 points, got shape \(3,\)"),
    ({"log_var": [0.0, 1.0]}, "log_var must be one finite number"),
])  # fmt: skip
def test_elbo_widget_refuses_what_its_sliders_cannot_show(linear_gaussian, bad, message):
    """A reversed range and a 3-point grid (whose default range is reversed) once gave a raw TraitError."""
    model, x = linear_gaussian
    arguments = {"grid_axis": jnp.linspace(-6, 6, 1201), **bad}
    with pytest.raises(ValueError, match=message):
        widgets.elbo_widget(model.log_joint(x), **arguments)


def one_d_model(weight, sigma):
    """A 1-D linear-Gaussian model whose posterior has standard deviation (1 + weight^2 / sigma^2)^(-1/2)."""
    return posterior.LinearGaussian(jnp.array([[weight]]), jnp.array([0.0]), sigma)


@pytest.mark.parametrize("weight, sigma, x, axis, problem", [
    (20.0, 0.2, 1.0, jnp.linspace(-3, 3, 101), "narrower than a cell"),  # posterior sd 0.01, cells 0.06
    (2.0, 0.5, 1.0, jnp.linspace(-10, -5, 101), "reaches the grid's edge"),  # posterior N(0.47, 0.24^2)
    (2.0, 0.5, 1.0, jnp.linspace(0.5, 3, 101), "reaches the grid's edge"),  # cuts the posterior at its mean
])  # fmt: skip
def test_elbo_widget_warns_when_its_grid_misses_the_posterior(weight, sigma, x, axis, problem):
    """The quadrature log p(x) is then far from the exact one; the widget says so, live and in its static copy."""
    model, x = one_d_model(weight, sigma), jnp.array([x])
    with pytest.warns(widgets.GridCoverageWarning, match=problem):
        view = widgets.elbo_widget(model.log_joint(x), axis)
    assert abs(view.log_evidence - exact_log_evidence(model, x)) > 0.1  # why it warns: the number is wrong
    assert problem in view.text.value
    assert problem in Image.open(io.BytesIO(view.static_png)).text["Description"]
    view.mu_slider.value = 0.4  # the warning stays under the numbers as they change
    assert problem in view.text.value


def test_elbo_widget_on_a_grid_that_holds_the_posterior_is_silent_and_exact():
    """The same model as above on a grid that covers it: no warning (warnings are errors here), log p(x) exact."""
    model, x = one_d_model(2.0, 0.5), jnp.array([1.0])
    view = widgets.elbo_widget(model.log_joint(x), jnp.linspace(-1.5, 2.5, 201))
    assert "Warning" not in view.text.value
    np.testing.assert_allclose(view.log_evidence, exact_log_evidence(model, x), atol=1e-4)
