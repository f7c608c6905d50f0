"""widgets.Frames and the explorer's precomputed walks: pictures switched by the browser, no kernel.

The links are checked as the browser will use them (which slider trait drives which stack), each
stored picture is decoded from its PNG and compared with the decoder called directly, and the
interpolation's frames with codes interpolated here in NumPy from the encoder's means.
"""

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from vae_lite import explorer, networks, widgets

IMAGE_SHAPE = (8, 8)


@pytest.fixture(scope="module")
def model2d():
    return networks.VAE(64, (32,), latent_dim=2, rngs=nnx.Rngs(1))


def ink(png, shape):
    """The grey image a PNG of ``widgets.to_png`` shows: 0 white ... 1 black ink, in the top-left ``shape``."""
    img = Image.open(io.BytesIO(png))
    pixels = np.asarray(img.convert("L"), np.float64)
    scale = img.height // shape[0]
    return (255 - pixels[::scale, ::scale][: shape[0], : shape[1]]) / 255


def direct_decode(model, z):
    return np.asarray(jax.nn.sigmoid(model.decoder(jnp.asarray(z, jnp.float32)))).reshape(IMAGE_SHAPE)


def test_one_slider_switches_a_stack_of_the_given_pictures():
    pictures = [np.full((4, 4), v, np.float32) for v in (0.0, 0.5, 1.0)]
    view = widgets.Frames(pictures, [("level", ["none", "half", "full"])], captions=["a", "b", "c"], index=[1])
    (link,) = view.links
    assert (link.source, link.target) == ((view.sliders[0], "index"), (view.stack, "selected_index"))
    assert view.stack.selected_index == 1 and view.sliders[0].label == "half"
    for frame, picture, caption in zip(view.stack.children, pictures, "abc", strict=True):
        image, text = frame.children
        np.testing.assert_allclose(ink(image.value, (4, 4)), picture, atol=1.5 / 254)
        assert text.value == caption
    view.sliders[0].index = 2
    assert view.png == view.stack.children[2].children[0].value and view.caption()[-1] == "c"


def test_two_sliders_switch_a_stack_of_stacks():
    pictures = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1).repeat(3, 2).repeat(3, 3) / 5
    view = widgets.Frames(pictures, [("a", ["0", "1"]), ("b", ["x", "y", "z"])], index=(1, 2))
    assert len(view.links) == 1 + 2  # the first slider picks the row, the second moves every row's stack
    assert view.links[0].source == (view.sliders[0], "index") and view.links[0].target == (view.stack, "selected_index")
    assert all(link.source == (view.sliders[1], "index") for link in view.links[1:])
    assert [link.target[0] for link in view.links[1:]] == view.inner
    assert view.stack.selected_index == 1 and all(s.selected_index == 2 for s in view.inner)
    for i in range(2):
        for j in range(3):
            got = ink(view.inner[i].children[j].value, (3, 3))  # no captions: each frame is its image
            np.testing.assert_allclose(got, pictures[i, j], atol=1.5 / 254)


@pytest.mark.parametrize(
    "frames, sliders, kwargs, match",
    [
        (np.zeros((2, 2, 2, 2, 4, 4)), [("a", "01"), ("b", "01"), ("c", "01")], {}, "one or two sliders"),
        (np.zeros((3, 4, 4)), [("a", ["0", "1"])], {}, "frames must have shape"),
        (np.zeros((2, 4, 4)), [("a", ["0", "1"])], {"captions": ["only one"]}, "captions must have shape"),
        (np.zeros((2, 4, 4)), [("a", ["0", "1"])], {"index": [2]}, "out of range"),
        (np.zeros((40, 30, 2, 2)), [("a", list(range(40))), ("b", list(range(30)))], {}, "too large"),
    ],
    ids=["three sliders", "one frame short", "captions short", "index outside", "too many frames"],
)
def test_frames_refuses_what_it_cannot_show(frames, sliders, kwargs, match):
    with pytest.raises(ValueError, match=match):
        widgets.Frames(frames, sliders, **kwargs)


def test_manifold_frames_show_the_decode_at_each_grid_code(model2d):
    view = explorer.manifold_frames(model2d, IMAGE_SHAPE, num_points=5)
    q = [math.sqrt(2) * _erfinv(2 * (i + 0.5) / 5 - 1) for i in range(5)]  # Normal quantiles, equal prior mass
    assert view.position == (2, 2)
    for i0, i1 in [(0, 0), (0, 4), (3, 1), (4, 4)]:
        got = ink(view.inner[i0].children[i1].value, IMAGE_SHAPE)
        np.testing.assert_allclose(got, direct_decode(model2d, [[q[i0], q[i1]]]), atol=1.5 / 254)
        assert (view.sliders[0].options[i0][0], view.sliders[1].options[i1][0]) == (f"{q[i0]:+.2f}", f"{q[i1]:+.2f}")


def test_interpolation_frames_follow_the_straight_and_the_great_circle_path(model2d):
    x = np.random.default_rng(0).random((4, 64)).astype(np.float32)
    view = explorer.interpolation_frames(model2d, jnp.asarray(x), IMAGE_SHAPE, index_a=1, index_b=3, num_steps=5)
    mu, _ = model2d.encoder(jnp.asarray(x[[1, 3]]))
    a, b = np.asarray(mu, np.float64)
    for k, t in enumerate(np.linspace(0, 1, 5)):
        middle = ink(view.inner[0].children[k].value, (8, 3 * 8 + 2))[:, 9:17]
        np.testing.assert_allclose(middle, direct_decode(model2d, [(1 - t) * a + t * b]), atol=1.5 / 254)
    omega = math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))
    t = 0.25
    spherical = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    middle = ink(view.inner[1].children[1].value, (8, 26))[:, 9:17]
    np.testing.assert_allclose(middle, direct_decode(model2d, [spherical]), atol=2.5 / 254)


def test_the_walks_refuse_a_model_or_size_they_cannot_show(model2d):
    with pytest.raises(ValueError, match="latent_dim"):
        explorer.manifold_frames(networks.VAE(64, (8,), latent_dim=3, rngs=nnx.Rngs(0)), IMAGE_SHAPE)
    with pytest.raises(ValueError, match="num_points"):
        explorer.manifold_frames(model2d, IMAGE_SHAPE, num_points=40)
    with pytest.raises(ValueError, match="index_b"):
        explorer.interpolation_frames(model2d, np.zeros((2, 64), np.float32), IMAGE_SHAPE, index_b=2)


def _erfinv(y):
    """Inverse error function by bisection on math.erf (independent of the library's quantiles)."""
    lo, hi = -6.0, 6.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < y else (lo, mid)
    return (lo + hi) / 2


def test_dimension_frames_change_one_dimension_of_the_image_code(model2d):
    model = networks.VAE(64, (32,), latent_dim=4, rngs=nnx.Rngs(2))
    x = np.random.default_rng(1).random((6, 64)).astype(np.float32)
    view = explorer.dimension_frames(model, jnp.asarray(x), IMAGE_SHAPE, index=2, num_dims=3, num_values=5, limit=2.0)
    mu, log_var = (np.asarray(a, np.float64) for a in model.encoder(jnp.asarray(x)))
    kl = np.mean(0.5 * (mu**2 + np.exp(log_var) - 1 - log_var), axis=0)  # average KL per dimension, by hand
    order = np.argsort(-kl, kind="stable")
    assert [label for label, _ in view.sliders[0].options] == [f"z[{j}] ({kl[j]:.2f} nats)" for j in order[:3]]
    for k in range(3):
        for v, value in enumerate(np.linspace(-2, 2, 5)):
            code = mu[2].copy()
            code[order[k]] = value
            changed = ink(view.inner[k].children[v].value, (8, 26))[:, 18:26]
            np.testing.assert_allclose(changed, direct_decode(model, [code]), atol=1.5 / 254)
    np.testing.assert_allclose(ink(view.inner[0].children[0].value, (8, 26))[:, 9:17], direct_decode(model, [mu[2]]),
                               atol=1.5 / 254)
    with pytest.raises(ValueError, match="num_dims"):
        explorer.dimension_frames(model, jnp.asarray(x), IMAGE_SHAPE, num_dims=5)


def test_elbo_frames_hold_the_quadrature_identity_for_every_q():
    from vae_lite import posterior

    model = posterior.LinearGaussian.random(jax.random.key(3), data_dim=3, latent_dim=1, sigma=0.8)
    x = model.sample(jax.random.key(4), 1)[1][0]
    axis = jnp.linspace(-6.0, 6.0, 241)
    mus, log_vars = np.linspace(-1, 1, 3), np.linspace(-2, 0, 2)
    view = widgets.elbo_frames(model.log_joint(x), axis, mus=mus, log_vars=log_vars, start=(0.9, -0.1))
    assert view.position == (2, 1)
    exact = float(model.log_evidence(x))  # log p(x) in closed form
    mean, cov = (np.asarray(a, np.float64) for a in model.posterior(x))
    for i, mu in enumerate(mus):
        for j, log_var in enumerate(log_vars):
            text = view.captions[i, j]
            log_px, elbo, kl = (float(t.split()[0]) for t in
                                (text.split("log p(x) = ")[1], text.split("ELBO ")[1], text.split("p(z|x)) ")[1]))
            var = math.exp(log_var)  # KL between two 1-D Gaussians, in closed form
            closed_kl = 0.5 * (math.log(cov[0, 0] / var) + (var + (mu - mean[0]) ** 2) / cov[0, 0] - 1)
            assert log_px == pytest.approx(exact, abs=2e-3) and kl == pytest.approx(closed_kl, abs=5e-3)
            assert elbo == pytest.approx(exact - closed_kl, abs=5e-3)
    assert len({png for png in view.pngs.ravel()}) == 6
    with pytest.raises(ValueError, match="at most 21"):
        widgets.elbo_frames(model.log_joint(x), axis, mus=np.linspace(-1, 1, 22), log_vars=[0.0])
