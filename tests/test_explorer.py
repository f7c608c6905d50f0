"""Tests for vae_lite.explorer (lesson 8): every widget driven from Python, against direct decodes and closed forms."""

import base64
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from vae_lite import explorer, networks

IMAGE_SHAPE = (8, 8)


@pytest.fixture(scope="module")
def model():
    """A small untrained VAE on 8x8 images: its decoder still maps different codes to different images."""
    return networks.VAE(64, (32,), latent_dim=4, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def model2d():
    return networks.VAE(64, (32,), latent_dim=2, rngs=nnx.Rngs(1))


@pytest.fixture(scope="module")
def images():
    x = np.random.default_rng(0).random((30, 64)).astype(np.float32)
    labels = np.arange(30) % 3
    return x, labels


def direct_decode(model, z):
    """Reference: the NNX decoder called eagerly, probabilities as an ``IMAGE_SHAPE`` image."""
    return np.asarray(jax.nn.sigmoid(model.decoder(jnp.asarray(z, jnp.float32)))).reshape(IMAGE_SHAPE)


def png_pixels(png, mode="L"):
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


# ---------------------------------------------------------------- pure helpers


def test_interpolate_endpoints_and_midpoint():
    z0, z1 = jnp.array([0.0, 2.0]), jnp.array([4.0, -2.0])
    path = explorer.interpolate(z0, z1, jnp.array([0.0, 0.25, 1.0]))
    assert path.shape == (3, 2)
    np.testing.assert_allclose(path, [[0, 2], [1, 1], [4, -2]], atol=1e-6)


def test_slerp_keeps_radius_and_endpoints():
    z0, z1 = jnp.array([3.0, 0.0]), jnp.array([0.0, 3.0])
    t = jnp.linspace(0, 1, 5)
    path = explorer.slerp(z0, z1, t)
    np.testing.assert_allclose(jnp.linalg.norm(path, axis=-1), 3.0, atol=1e-5)
    np.testing.assert_allclose(path[0], z0, atol=1e-5)
    np.testing.assert_allclose(path[-1], z1, atol=1e-5)
    # halfway along the quarter circle: angle 45 degrees
    np.testing.assert_allclose(path[2], 3 * np.array([np.sqrt(0.5), np.sqrt(0.5)]), atol=1e-5)
    # parallel codes fall back to the straight line (no division by sin 0)
    np.testing.assert_allclose(explorer.slerp(z0, 2 * z0, t), explorer.interpolate(z0, 2 * z0, t), atol=1e-5)


def test_inverse_cdf_grid_against_scipy_free_reference():
    q = explorer.inverse_cdf_grid(4)
    # Phi(q_i) = (i + 1/2) / 4, checked with the error function
    cdf = 0.5 * (1 + jax.scipy.special.erf(q / np.sqrt(2)))
    np.testing.assert_allclose(cdf, [0.125, 0.375, 0.625, 0.875], atol=1e-6)
    np.testing.assert_allclose(q, -q[::-1], atol=1e-6)


def test_compile_decode_matches_eager_decoder(model):
    decode = explorer.compile_decode(model.decoder)
    z = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(decode(z), jax.nn.sigmoid(model.decoder(z)), atol=1e-6)


def test_dimension_order_by_average_kl(model, images):
    order, kl = explorer.dimension_order(model, images[0])
    mu, log_var = model.encoder(images[0])
    reference = np.mean(0.5 * (mu**2 + np.exp(log_var) - 1 - log_var), axis=0)
    np.testing.assert_allclose(kl, reference, rtol=1e-5, atol=1e-6)
    assert list(order) == list(np.argsort(-reference))


# ---------------------------------------------------------------- latent sliders


def test_latent_sliders_decode_the_slider_code(model, images):
    view = explorer.latent_sliders(model, images[0], IMAGE_SHAPE, num_sliders=2)
    order, _ = explorer.dimension_order(model, images[0])
    assert view.dims == list(order[:2])
    np.testing.assert_array_equal(view.z, 0.0)
    before_png, before = view.png, view.image.copy()
    view.sliders[0].value = 1.5
    expected = np.zeros(4, np.float32)
    expected[order[0]] = 1.5
    np.testing.assert_allclose(view.z, expected)
    assert view.png != before_png and not np.allclose(view.image, before)
    np.testing.assert_allclose(view.image, direct_decode(model, expected), atol=1e-6)
    # the PNG shows the same image (ink = 1 - brightness), upscaled
    shown = png_pixels(view.png)[:: view.scale, :: view.scale]
    np.testing.assert_allclose(shown, np.round(255 * (1 - view.image)), atol=1)


def test_out_of_range_values_are_clamped_and_nan_rejected(model, images):
    view = explorer.latent_sliders(model, images[0], IMAGE_SHAPE, num_sliders=2, limit=3.0)
    view.sliders[1].value = 10.0
    assert view.sliders[1].value == 3.0
    np.testing.assert_allclose(view.image, direct_decode(model, view.z), atol=1e-6)
    view.sliders[1].value = float("nan")
    assert view.sliders[1].value == 3.0
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        view.set_code(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        view.set_code(np.full(4, np.inf))


def test_set_code_moves_all_sliders_and_fixed_dims(model, images):
    view = explorer.latent_sliders(model, images[0], IMAGE_SHAPE, num_sliders=2)
    z = np.array([0.5, -1.0, 2.0, -0.25], np.float32)
    view.set_code(z)
    np.testing.assert_allclose(view.z, z)
    np.testing.assert_allclose(view.image, direct_decode(model, z), atol=1e-6)


# ---------------------------------------------------------------- encode and perturb


def test_encode_and_perturb_starts_at_posterior_mean(model, images):
    x, labels = images
    view = explorer.encode_and_perturb(model, x, IMAGE_SHAPE, labels=labels, index=3, num_sliders=3)
    mu = np.asarray(model.encoder(x[3])[0])
    np.testing.assert_allclose(view.z, mu, atol=1e-5)
    np.testing.assert_allclose(view.original, x[3].reshape(IMAGE_SHAPE))
    np.testing.assert_allclose(view.image, direct_decode(model, view.z), atol=1e-6)
    # picking another image re-encodes; perturbing one slider changes only that dimension
    view.picker.value = 7
    np.testing.assert_allclose(view.z, np.asarray(model.encoder(x[7])[0]), atol=1e-5)
    before = view.image.copy()
    dim = view.dims[0]
    view.sliders[0].value = view.sliders[0].value + 1.0
    expected = np.asarray(model.encoder(x[7])[0]).copy()
    expected[dim] += 1.0
    np.testing.assert_allclose(view.z, expected, atol=1e-5)
    assert not np.allclose(view.image, before)
    np.testing.assert_allclose(view.image, direct_decode(model, expected), atol=1e-6)
    # the digit dropdown jumps to the first image with that label
    view.digit.value = int(np.flatnonzero(labels == 2)[0])
    assert view.picker.value == 2
    # out-of-range index: the bounded text box clamps it
    view.picker.value = 1000
    assert view.picker.value == len(x) - 1


# ---------------------------------------------------------------- interpolation


def test_interpolation_slider_follows_both_paths(model, images):
    x, _ = images
    view = explorer.interpolation(model, x, IMAGE_SHAPE, index_a=0, index_b=5)
    mu_a, mu_b = np.asarray(model.encoder(x[0])[0]), np.asarray(model.encoder(x[5])[0])
    view.t.value = 0.0
    np.testing.assert_allclose(view.z, mu_a, atol=1e-5)
    np.testing.assert_allclose(view.image, direct_decode(model, mu_a), atol=1e-6)
    before = view.image.copy()
    view.t.value = 0.3
    np.testing.assert_allclose(view.z, 0.7 * mu_a + 0.3 * mu_b, atol=1e-5)
    assert not np.allclose(view.image, before)
    np.testing.assert_allclose(view.image, direct_decode(model, view.z), atol=1e-6)
    view.path.value = "spherical"
    np.testing.assert_allclose(view.z, explorer.slerp(mu_a, mu_b, jnp.array([0.3]))[0], atol=1e-5)
    np.testing.assert_allclose(view.image, direct_decode(model, view.z), atol=1e-6)
    view.t.value = 1.7
    assert view.t.value == 1.0
    np.testing.assert_allclose(view.z, mu_b, atol=1e-4)


# ---------------------------------------------------------------- manifold


def test_manifold_grid_and_marker(model2d):
    view = explorer.manifold(model2d, IMAGE_SHAPE, num_points=5)
    q = np.asarray(explorer.inverse_cdf_grid(5))
    # tile (row 0, column 4) is the code (q[4], q[4]): top row is the largest z[1]
    np.testing.assert_allclose(view.grid_image[:8, 32:40], direct_decode(model2d, [q[4], q[4]]), atol=1e-6)
    np.testing.assert_allclose(view.grid_image[32:40, :8], direct_decode(model2d, [q[0], q[0]]), atol=1e-6)
    # the marker at a grid code sits at that tile's centre
    view.sliders[0].value, view.sliders[1].value = float(q[1]), float(q[3])
    col, row = view.marker_position()
    np.testing.assert_allclose([col, row], [1.5 * 8, 1.5 * 8], atol=1e-3)
    np.testing.assert_allclose(view.image, direct_decode(model2d, view.z), atol=1e-6)
    before = view.png
    view.sliders[0].value = -2.0
    assert view.png != before
    np.testing.assert_allclose(view.image, direct_decode(model2d, [-2.0, q[3]]), atol=1e-6)
    shown = png_pixels(view.png, "RGB")
    assert (shown[..., 0] > shown[..., 1] + 100).any()  # the red marker is drawn


def test_manifold_needs_a_2d_model(model):
    with pytest.raises(ValueError, match="latent_dim=2"):
        explorer.manifold(model, IMAGE_SHAPE)


def test_widget_object_displays_live_and_static(model, images):
    view = explorer.latent_sliders(model, images[0], IMAGE_SHAPE, num_sliders=1)
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == view.static_png


def static_caption(view):
    """The text a saved notebook's static PNG of ``view`` carries (its PNG description)."""
    return Image.open(io.BytesIO(view.static_png)).text["Description"]


def test_static_copies_state_their_slider_values(model, model2d, images):
    x, labels = images
    sliders = explorer.latent_sliders(model, x, IMAGE_SHAPE, num_sliders=3)
    sliders.sliders[1].value = -1.25
    caption = static_caption(sliders)
    for j, s in zip(sliders.dims, sliders.sliders, strict=True):
        assert f"z[{j}] (" in caption and f" nats) = {s.value:.2f}" in caption
    assert "= -1.25" in caption

    perturb = explorer.encode_and_perturb(model, x, IMAGE_SHAPE, labels=labels, index=4)
    perturb.digit.value = int(np.flatnonzero(labels == 2)[0])
    caption = static_caption(perturb)
    assert f"test image = {perturb.picker.value}" in caption and "or digit = first 2" in caption
    assert all(f"= {s.value:.2f}" in caption for s in perturb.sliders)

    between = explorer.interpolation(model, x, IMAGE_SHAPE, index_a=0, index_b=1)
    between.t.value, between.path.value = 0.3, "spherical"
    assert "t = 0.30" in static_caption(between) and "path = spherical" in static_caption(between)

    grid = explorer.manifold(model2d, IMAGE_SHAPE, num_points=5)
    grid.sliders[0].value = 1.5
    assert "z[0] = 1.50, z[1] = 0.00" in static_caption(grid)


# ---------------------------------------------------------------- issue 22: careless arguments


@pytest.mark.parametrize("path", [explorer.interpolate, explorer.slerp])
def test_one_number_t_gives_one_code(path):
    """interpolate(z0, z1, 0.5) once raised a raw IndexError; it is the formula read with NumPy broadcasting."""
    z0, z1 = jnp.array([3.0, 0.0]), jnp.array([0.0, 3.0])
    one = path(z0, z1, 0.25)
    assert one.shape == (2,)
    np.testing.assert_allclose(one, path(z0, z1, jnp.array([0.25]))[0], atol=1e-6)
    if path is explorer.interpolate:
        np.testing.assert_allclose(one, [2.25, 0.75], atol=1e-6)
    else:  # a quarter of the way along the quarter circle of radius 3: angle 22.5 degrees
        np.testing.assert_allclose(one, 3 * np.array([np.cos(np.pi / 8), np.sin(np.pi / 8)]), atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: explorer.interpolate(jnp.zeros(2), jnp.zeros(3), 0.5), r"z0 and z1 must have the same shape"),
    (lambda: explorer.interpolate(jnp.zeros((2, 2)), jnp.zeros((2, 2)), 0.5), r"z0 must be a 1-D array"),
    (lambda: explorer.slerp(jnp.zeros(2), jnp.ones(2), jnp.zeros((2, 2))), r"t must be a 1-D array"),
])  # fmt: skip
def test_interpolation_shapes_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("limit", [float("nan"), -3.0, 0.0, float("inf"), "3"])
def test_a_slider_limit_must_be_a_positive_number(model, model2d, images, limit):
    """latent_sliders(limit=nan) and limit=-3 once gave a raw TraitError (max < min)."""
    with pytest.raises(ValueError, match="limit must be"):
        explorer.latent_sliders(model, images[0], IMAGE_SHAPE, num_sliders=2, limit=limit)
    with pytest.raises(ValueError, match="limit must be"):
        explorer.encode_and_perturb(model, images[0], IMAGE_SHAPE, num_sliders=2, limit=limit)
    with pytest.raises(ValueError, match="limit must be"):
        explorer.manifold(model2d, IMAGE_SHAPE, num_points=3, limit=limit)
