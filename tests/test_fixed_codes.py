"""fixed_codes: a decoder fitted to chosen (code, image) pairs draws each image at its code.

References are independent of the module: Bernoulli log-probabilities from scipy in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from vae_lite import fixed_codes
from vae_lite.networks import Decoder

RNG = np.random.default_rng(0)
IMAGES = (RNG.uniform(size=(3, 64)) < 0.3).astype(np.float32)
CODES = np.array([[-2.0, -1.0], [2.0, 0.5], [0.0, 2.5]], np.float32)


def scipy_mean_log_likelihood(decoder, codes, images):
    probs = np.asarray(jax.nn.sigmoid(decoder(jnp.asarray(codes))), np.float64)
    return stats.bernoulli.logpmf(images, np.clip(probs, 1e-12, 1 - 1e-12)).sum(axis=1).mean()


@pytest.fixture(scope="module")
def fitted():
    return fixed_codes.fit_decoder_to_codes(jax.random.key(1), CODES, IMAGES, num_steps=300)


def test_each_image_is_drawn_at_its_own_code(fitted):
    probs = np.asarray(jax.nn.sigmoid(fitted.decoder(jnp.asarray(CODES))))
    assert np.array_equal(probs > 0.5, IMAGES > 0.5)  # every pixel of every image
    # the log-likelihood's maximum is 0 (probabilities exactly 0/1): within a nat of it per image
    assert scipy_mean_log_likelihood(fitted.decoder, CODES, IMAGES) > -1.0


def test_history_is_the_mean_log_likelihood_before_and_after_training(fitted):
    start = Decoder(2, (128,), 64, rngs=nnx.Rngs(params=jax.random.key(1)))  # the same initial weights
    assert fitted.log_likelihood.shape == (301,)
    assert float(fitted.log_likelihood[0]) == pytest.approx(scipy_mean_log_likelihood(start, CODES, IMAGES), abs=1e-2)
    assert float(fitted.log_likelihood[-1]) == pytest.approx(
        scipy_mean_log_likelihood(fitted.decoder, CODES, IMAGES), abs=1e-3
    )
    assert fitted.log_likelihood[-1] > fitted.log_likelihood[0] + 30  # from ~ -44 (p = 1/2) to near 0


@pytest.mark.parametrize(
    "codes, images, match",
    [
        (CODES[:2], IMAGES, "number of images"),
        (CODES, IMAGES * 0.5, "binary"),
        (np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], np.float32), IMAGES, "repeated"),
        (np.array([[np.nan, 0.0], [1.0, 1.0], [0.0, 2.0]], np.float32), IMAGES, "NaN"),
    ],
    ids=["count mismatch", "grey images", "repeated code", "NaN code"],
)
def test_bad_pairs_are_refused_with_the_fix(codes, images, match):
    with pytest.raises(ValueError, match=match):
        fixed_codes.fit_decoder_to_codes(jax.random.key(0), codes, images, num_steps=2)


def test_a_fractional_step_count_is_refused():
    with pytest.raises(ValueError, match="num_steps"):
        fixed_codes.fit_decoder_to_codes(jax.random.key(0), CODES, IMAGES, num_steps=2.5)
