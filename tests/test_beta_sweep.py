"""Lesson 6's β slider (``vae_lite.beta_sweep``): the numbers against float64 NumPy and quadrature, the widget
on arrays made here (no trained model), :func:`sweep` on linear VAEs whose outputs NumPy computes exactly."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from scipy import integrate, stats
from traitlets import TraitError

from vae_lite import beta_sweep, classifier, networks


def test_dimension_summary_is_the_closed_form_per_dimension_and_matches_quadrature():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(50, 4)).astype(np.float32)
    log_var = rng.uniform(-3, 1, (50, 4)).astype(np.float32)
    got = beta_sweep.dimension_summary(jnp.asarray(mu), jnp.asarray(log_var))
    m, v = mu.astype(np.float64), log_var.astype(np.float64)
    np.testing.assert_allclose(got.sigma, np.exp(0.5 * v).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got.kl, (0.5 * (m**2 + np.exp(v) - 1 - v)).mean(axis=0), rtol=1e-12)
    # one entry by quadrature: KL(N(mu, s^2) || N(0, 1)) = int q log(q / p)
    q = stats.norm(m[3, 2], np.exp(0.5 * v[3, 2]))
    kl_32, _ = integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - stats.norm.logpdf(t)), -30, 30, points=[m[3, 2]])
    one = beta_sweep.dimension_summary(mu[3:4], log_var[3:4])
    assert one.kl[2] == pytest.approx(kl_32, rel=1e-6)


def test_dimension_summary_refuses_bad_input():
    z = np.zeros((3, 2), np.float32)
    for args, message in [((z, z[:, :1]), "same shape"), ((z[0], z[0]), "num_images, latent_dim"),
                          ((z[:0], z[:0]), "at least one image"), ((z + np.nan, z), "mu holds NaN"),
                          ((z, z + 200), "outside"), ((z.astype(int), z), "floating-point")]:
        with pytest.raises(ValueError, match=message):
            beta_sweep.dimension_summary(*args)


def made_sweep(num_betas=3, d=5, recognised=True):
    """A Sweep of arrays drawn here: what the widget shows, without any model."""
    rng = np.random.default_rng(1)
    betas = np.array([0.0, 0.5, 2.0, 4.0])[:num_betas]
    pixels = 16
    kl = rng.uniform(0.01, 3.0, (num_betas, d))
    kl[-1, :2] = 0.02  # two switched-off dimensions at the largest beta
    return beta_sweep.Sweep(
        betas=betas, image_shape=(4, 4), originals=(rng.random((3, pixels)) < 0.5).astype(np.float32),
        reconstructions=rng.random((num_betas, 3, pixels)), samples=rng.random((num_betas, 4, pixels)),
        sigma=rng.uniform(0.05, 1.0, (num_betas, d)), kl=kl, reconstruction=-rng.uniform(50, 100, num_betas),
        recognised=rng.uniform(0, 1, num_betas) if recognised else np.full(num_betas, np.nan),
        recognised_stderr=np.full(num_betas, 0.01 if recognised else np.nan))


def test_the_picture_and_the_readouts_follow_the_slider():
    s = made_sweep()
    w = beta_sweep.beta_widget(s, index=0)
    first, pictures = w.png, {w.png}
    for i in (1, 2):
        w.slider.value = i
        pictures.add(w.png)
        r = w.readout
        # the readouts against the arrays, computed here
        assert r["beta"] == s.betas[i] and r["kl"] == pytest.approx(s.kl[i].sum())
        assert r["reconstruction"] == pytest.approx(s.reconstruction[i])
        assert r["elbo"] == pytest.approx(s.reconstruction[i] - s.kl[i].sum())
        assert r["mean_sigma"] == pytest.approx(s.sigma[i].mean())
        assert r["switched_off"] == int(np.sum(s.kl[i] < 0.1)) and r["recognised"] == pytest.approx(s.recognised[i])
        assert f"{s.kl[i].sum():.1f}" in w.text.value and f"{s.recognised[i]:.3f}" in w.text.value
    assert len(pictures) == 3  # each beta its own picture
    assert w.readout["switched_off"] == 2
    w.slider.value = 0
    assert w.png == first  # moving back shows the first picture again
    image = Image.open(io.BytesIO(w.png))
    assert image.size[0] > 600 and image.size[1] > 250
    caption = "\n".join(w.caption())
    assert "beta (KL weight) = 0, of 0, 0.5, 2" in caption and "reconstruction term" in caption and "β" not in caption
    assert w.static_png[:4] == b"\x89PNG"


def test_select_refuses_a_beta_the_sweep_did_not_train_and_keeps_the_picture():
    w = beta_sweep.beta_widget(made_sweep())
    assert w.beta == 2.0 and w.index == 2  # the default: the largest beta
    shown = w.png
    for bad in (1.0, float("nan"), float("inf"), -1, "x", None):
        assert w.select(bad) is False
        assert "not in the sweep" in w.message.value and "0, 0.5, 2" in w.message.value
        assert w.beta == 2.0 and w.png == shown
    assert w.select(0.5) is True and w.beta == 0.5 and w.message.value == ""
    assert w.png != shown
    with pytest.raises(TraitError, match="Invalid selection"):  # ipywidgets refuses an index outside the options
        w.slider.value = 7
    assert w.beta == 0.5 and "β = 0.5" in w.text.value  # the widget still works
    w.slider.value = 0
    assert w.beta == 0.0


def test_a_sweep_without_a_judge_has_no_recognised_readout():
    w = beta_sweep.beta_widget(made_sweep(recognised=False), index=1)
    assert np.isnan(w.readout["recognised"]) and "recognised" not in w.text.value


def test_the_widget_refuses_arrays_that_do_not_fit_together():
    s = made_sweep()
    bad = [
        (s._replace(betas=np.array([0.0, 2.0, 1.0])), "increasing"),
        (s._replace(betas=np.array([0.0, np.nan, 1.0])), "finite"),
        (s._replace(samples=s.samples[:2]), r"Sweep.samples must have shape \(3, 4, 16\)"),
        (s._replace(reconstructions=s.reconstructions[:, :2]), "Sweep.reconstructions"),
        (s._replace(kl=s.kl[:, :3]), r"Sweep.kl must have shape \(3, 5\)"),
        (s._replace(image_shape=(3, 3)), "Sweep.originals must have shape"),
        (s._replace(sigma=s.sigma * np.inf), "Sweep.sigma holds an infinite value"),
        (s._replace(samples=s.samples * 255), r"\[0, 1\]"),
        (s._replace(kl=-s.kl), "cannot be negative"),
        (s._replace(recognised=np.array([0.1, np.inf, 0.2])), "Sweep.recognised holds"),
    ]
    for sweep, message in bad:
        with pytest.raises(ValueError, match=message):
            beta_sweep.beta_widget(sweep)
    for index, message in ((3, r"index=3 is out of range: there are 3 betas in the sweep \(0 to 2\)"),
                           (-1, "index must be an integer >= 0"), (1.0, "write index=1"), (True, "index must be an integer")):
        with pytest.raises(ValueError, match=message):
            beta_sweep.beta_widget(s, index=index)
    with pytest.raises(ValueError, match="takes a beta_sweep.Sweep"):
        beta_sweep.beta_widget(tuple(s))


def linear_vae(seed, pixels=9, d=3, log_var=-20.0):
    """A VAE without hidden layers: mu = x A + a, log_var constant, logits = z B + b; weights returned for NumPy."""
    rng = np.random.default_rng(seed)
    model = networks.VAE(pixels, hidden=(), latent_dim=d, rngs=nnx.Rngs(0))
    a, bias = rng.normal(size=(pixels, d)) * 0.5, rng.normal(size=d)
    b, c = rng.normal(size=(d, pixels)), rng.normal(size=pixels)
    enc, dec = model.encoder.net.layers[0], model.decoder.net.layers[0]
    enc.kernel[...] = jnp.asarray(np.concatenate([a, np.zeros((pixels, d))], axis=1), jnp.float32)
    enc.bias[...] = jnp.asarray(np.concatenate([bias, np.full(d, log_var)]), jnp.float32)
    dec.kernel[...], dec.bias[...] = jnp.asarray(b, jnp.float32), jnp.asarray(c, jnp.float32)
    return model, (a, bias, b, c)


def test_sweep_computes_what_numpy_computes_from_the_same_weights():
    rng = np.random.default_rng(2)
    x = (rng.random((40, 9)) < 0.5).astype(np.float32)
    z = rng.normal(size=(30, 3)).astype(np.float32)
    models = {0.0: linear_vae(0), 1.0: linear_vae(1, log_var=0.0)}
    s = beta_sweep.sweep({b: m for b, (m, _) in models.items()}, jnp.asarray(x), jnp.asarray(z),
                         key=jax.random.key(0), num_images=5, num_samples=4)
    assert s.image_shape == (3, 3) and s.originals.shape == (5, 9)
    np.testing.assert_array_equal(s.originals, x[:5])
    sigmoid = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    for i, (beta, (_, (a, bias, b, c))) in enumerate(models.items()):
        mu = x @ a + bias
        log_var = -20.0 if beta == 0.0 else 0.0
        np.testing.assert_allclose(s.sigma[i], np.exp(0.5 * log_var), rtol=1e-5)
        np.testing.assert_allclose(s.kl[i], (0.5 * (mu**2 + np.exp(log_var) - 1 - log_var)).mean(axis=0),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s.samples[i], sigmoid(z[:4] @ b + c), atol=2e-4)  # the same z
        if beta == 0.0:  # sigma = e^-10: the sample is the mean, so the reconstruction term is exact
            logits = mu @ b + c
            recon = np.sum(x * logits - np.logaddexp(0, logits), axis=1).mean()
            assert s.reconstruction[i] == pytest.approx(recon, rel=1e-4)
            np.testing.assert_allclose(s.reconstructions[i], sigmoid(logits[:5]), atol=2e-4)
        else:  # sigma = 1: the pictured reconstructions decode a sample, not the mean
            assert np.abs(s.reconstructions[i] - sigmoid((mu @ b + c)[:5])).max() > 0.01
    assert np.all(np.isnan(s.recognised))


def test_sweep_judges_every_prior_sample_with_the_classifier():
    rng = np.random.default_rng(3)
    model, _ = linear_vae(0, pixels=64)
    judge = classifier.Classifier(64, hidden=(8,), rngs=nnx.Rngs(1))
    z = rng.normal(size=(50, 3)).astype(np.float32)
    s = beta_sweep.sweep({1.0: model}, jnp.asarray((rng.random((6, 64)) < 0.5).astype(np.float32)), jnp.asarray(z),
                         key=jax.random.key(0), num_images=2, num_samples=3, judge=judge)
    logits = np.asarray(judge(jax.nn.sigmoid(model.decoder(jnp.asarray(z)))), np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    share = np.mean(probs.max(1) / probs.sum(1) >= 0.9)  # all 50 samples, not only the 3 pictured
    assert s.recognised[0] == pytest.approx(share) and s.recognised_stderr[0] == pytest.approx(
        np.sqrt(share * (1 - share) / 50))


def test_sweep_refuses_bad_input():
    model, _ = linear_vae(0)
    x, z, key = jnp.zeros((8, 9)), jnp.zeros((8, 3)), jax.random.key(0)
    cases = [
        (lambda: beta_sweep.sweep({}, x, z, key=key), "non-empty mapping"),
        (lambda: beta_sweep.sweep([model], x, z, key=key), "non-empty mapping"),
        (lambda: beta_sweep.sweep({1.0: model, 0.5: model}, x, z, key=key), "must increase"),
        (lambda: beta_sweep.sweep({-1.0: model}, x, z, key=key), "finite number >= 0"),
        (lambda: beta_sweep.sweep({float("nan"): model}, x, z, key=key), "each beta must be one finite number, got nan"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z, key=0), "JAX random key"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z, key=key, num_images=9), "num_images=9 is too large: x holds 8 images"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z[:, :2], key=key), "z's last axis must be 3, got 2"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z[0], key=key), r"z must be a 2-D array, got shape \(3,\)"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z, key=key, num_samples=9), "num_samples=9 is too large: z holds 8 draws"),
        (lambda: beta_sweep.sweep({1.0: model}, x, z * np.nan, key=key), "z holds NaN"),
        (lambda: beta_sweep.sweep({1.0: model}, x[0], z, key=key), r"x must be a 2-D array.*num_images, pixels"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
