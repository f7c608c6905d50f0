"""Argument checks shared by every vae-lite module (private): one rule per kind of argument.

Each failure is a ``ValueError`` that names the argument, what was expected, what came,
and the fix. Shape checks run at trace time, so they also guard compiled functions; value
checks (ranges, NaN) look only at concrete arrays and are skipped inside ``jax.jit``.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

LOG_VAR_LIMIT = 80.0  # |log_var| beyond this over- or underflows e^{log_var} in float32 (e^88.7 is the largest)


def count(name, value, minimum=1):
    """``value`` as an ``int`` if it is a whole number >= ``minimum`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            fix = f"write {name}={int(value)}"
        else:
            fix = f"pass a whole number, e.g. {name}={max(minimum, 1)}"
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}); {fix}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}; pass {name}={minimum} or more.")
    return int(value)


def prng_key(name, key):
    """Raise unless ``key`` is a JAX random key (``jax.random.key(0)`` or ``jax.random.PRNGKey(0)``)."""
    typed = hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = hasattr(key, "dtype") and key.dtype == jnp.uint32 and jnp.shape(key)[-1:] == (2,)
    if not (typed or legacy):
        if isinstance(key, jax.core.Tracer):
            shown = f"a traced array of dtype {key.dtype} and shape {key.shape}"
        elif np.ndim(key) == 0:
            shown = f"{type(key).__name__} {key!r}"
        else:
            shown = f"an array of shape {np.shape(key)}"
        raise ValueError(
            f"{name} must be a JAX random key, got {shown}; make one with jax.random.key(0) "
            "and split it (jax.random.split) for each use."
        )


def float_array(name, value):
    """``value`` as a floating-point JAX array; Python lists and tuples of numbers are converted."""
    if isinstance(value, (list, tuple)):
        try:
            value = jnp.asarray(value, dtype=jnp.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be an array of numbers, got a {type(value).__name__} that is not: {error}") from None
    floating(name, value)
    return value


def floating(name, a, fix=None):
    """Raise unless ``a`` holds floating-point numbers (``fix``: what to do instead, if not a cast)."""
    try:
        dtype = jnp.result_type(a)
    except TypeError:
        raise ValueError(f"{name} must be a floating-point array, got {type(a).__name__}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array, got dtype {dtype}. "
            + (fix or f"Convert it first, e.g. {name}.astype(jnp.float32).")
        )


def same_shape(name_a, a, name_b, b, fix=""):
    """Raise unless ``a`` and ``b`` have the same shape."""
    if jnp.shape(a) != jnp.shape(b):
        hint = f" {fix}" if fix else ""
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}: "
            f"{jnp.shape(a)} and {name_b}: {jnp.shape(b)}.{hint}"
        )


def compatible(name_a, a, name_b, b, fix=""):
    """Raise unless the last axes of ``a`` and ``b`` agree and their leading axes broadcast."""
    shape_a, shape_b = jnp.shape(a), jnp.shape(b)
    try:
        ok = len(shape_a) > 0 and len(shape_b) > 0 and shape_a[-1] == shape_b[-1]
        jnp.broadcast_shapes(shape_a, shape_b)
    except ValueError:
        ok = False
    if not ok:
        hint = f" {fix}" if fix else ""
        raise ValueError(
            f"{name_a} {shape_a} and {name_b} {shape_b} must share the last axis and "
            f"broadcast in the leading ones.{hint}"
        )


def last_axis(name, a, size, fix="Flatten images first: x.reshape(len(x), -1)."):
    """Raise unless ``a`` is a float array whose last axis has ``size`` entries."""
    shape = jnp.shape(a)
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got {shape}. {fix}")
    floating(name, a)


def concrete(a):
    """``a`` as a NumPy array, or ``None`` inside a JAX transformation (a tracer has no values)."""
    if isinstance(a, jax.core.Tracer):
        return None
    return np.asarray(a)


def finite(name, a, fix=""):
    """Raise if a concrete ``a`` holds NaN or infinity."""
    values = concrete(a)
    if values is not None and not np.all(np.isfinite(values)):
        bad = "NaN" if np.any(np.isnan(values)) else "an infinite value"
        raise ValueError(f"{name} holds {bad}.{' ' + fix if fix else ''}")


def _within_float32(name, a, limit, why):
    """Raise if a concrete ``a`` is NaN/inf or has an entry beyond ``±limit``; ``why(worst)`` says what overflows."""
    finite(name, a)
    values = concrete(a)
    if values is not None and values.size and np.max(np.abs(values)) > limit:
        worst = values.flat[np.argmax(np.abs(values))]
        raise ValueError(f"{name} = {worst:.4g} is outside [-{limit:g}, {limit:g}]: {why(worst)}")


def log_variance(name, log_var):
    """Raise if a concrete ``log_var`` is NaN/inf or so large that e^{log_var} leaves float32."""
    _within_float32(name, log_var, LOG_VAR_LIMIT, lambda worst: (
        f"e^{name} = variance {'over' if worst > 0 else 'under'}flows float32 and gives inf or NaN. A log-variance "
        "is the log of sigma^2 (sigma = 1 is log_var = 0); pass log(sigma^2), not sigma^2 or a huge value."))


def gaussian_q(mu, log_var, num_samples=1):
    """``(mu, log_var, num_samples)`` checked: one Gaussian q over a latent vector, S >= 1.

    Shared by the Monte Carlo estimators of lessons 4-7. Lists are converted to arrays.
    """
    mu, log_var = float_array("mu", mu), float_array("log_var", log_var)
    same_shape("mu", mu, "log_var", log_var)
    if jnp.ndim(mu) != 1:
        raise ValueError(
            f"mu must be one latent vector (latent_dim,), got shape {jnp.shape(mu)}; "
            "use jax.vmap over data points."
        )
    location("mu", mu)
    log_variance("log_var", log_var)
    return mu, log_var, count("num_samples", num_samples)


def one_value_per_sample(name, values, num_samples, what="log p(x, z)"):
    """Raise unless ``values`` (a function's outputs on ``num_samples`` latent vectors) is ``(num_samples,)``.

    Catches a log density that forgets to sum over dimensions: vmapped over S samples it
    returns ``(S, D)``, which would silently be averaged, or broadcast against ``(S,)``.
    """
    if jnp.shape(values) != (num_samples,):
        per_sample = jnp.shape(values)[1:] if jnp.ndim(values) >= 1 else jnp.shape(values)
        raise ValueError(
            f"{name} must return one number ({what}) per latent vector z, but it returns shape {per_sample} "
            f"for one z. Sum over the data dimensions, e.g. jnp.sum(..., axis=-1)."
        )


def scalar_of_latent(name, fn, latent_dim, fix):
    """Raise unless ``fn`` maps one latent vector ``(latent_dim,)`` to one number (checked by shape only)."""
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((latent_dim,), jnp.float32))
    except Exception as error:  # a function of another latent dimension fails inside its own code
        raise ValueError(
            f"{name}(z) on z of shape ({latent_dim},) failed with {type(error).__name__}: "
            f"{str(error).splitlines()[0][:200].rstrip('.')}. {fix}"
        ) from None
    if jnp.shape(out) != ():
        raise ValueError(f"{name} must return one number per z, got shape {jnp.shape(out)}. {fix}")


def function(name, fn, signature="z (latent_dim,) -> scalar"):
    """``fn`` as a ``jax.tree_util.Partial``: how every compiled vae-lite function takes a user's function.

    A ``Partial`` is a pytree: its arrays (a model's weights, a data point) enter the compiled
    program as arguments, and only the underlying Python function is part of the cache key.
    So the library's own log joints (``LinearGaussian.log_joint(x)``,
    ``posterior.decoder_log_joint(decoder, x)``), rebuilt for every data point, compile once per
    shape; a plain function or lambda is wrapped as it is and compiles once per function object.
    """
    if not callable(fn):
        raise ValueError(f"{name} must be a function {signature}, got {type(fn).__name__}.")
    return fn if isinstance(fn, Partial) else Partial(fn)


# ---------------------------------------------------------------- shapes, numbers and images


def shape(name, a, expected, fix=""):
    """Raise unless ``a`` has exactly the shape ``expected`` (a tuple)."""
    if tuple(jnp.shape(a)) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(jnp.shape(a))}.{' ' + fix if fix else ''}")


def ndim(name, a, expected, fix=""):
    """Raise unless ``a`` has ``expected`` axes (``fix`` says what to do instead)."""
    if jnp.ndim(a) != expected:
        what = {0: "a scalar", 1: "a 1-D array"}.get(expected, f"a {expected}-D array")
        raise ValueError(f"{name} must be {what}, got shape {jnp.shape(a)}.{' ' + fix if fix else ''}")


def one_image(name, x):
    """``x`` as one flat image ``(pixels,)``: a batch goes through ``jax.vmap``."""
    ndim(name, x, 1, "Pass one flat image (pixels,); use jax.vmap for a batch.")
    return jnp.asarray(x)


def image_batch(name, x):
    """Raise unless ``x`` is a batch of flat images ``(num_images, pixels)``."""
    ndim(name, x, 2, "Pass a batch of flat images (num_images, pixels): x.reshape(len(x), -1); one image as x[None].")


def image_shape(value, num_pixels):
    """``(height, width)`` as a tuple of ints whose product is the model's number of pixels."""
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (height, width), e.g. (28, 28), got {value!r}.") from None
    h, w = count("image_shape's height", h), count("image_shape's width", w)
    if h * w != num_pixels:
        guess = {784: (28, 28), 64: (8, 8)}.get(num_pixels, "(height, width)")
        raise ValueError(
            f"image_shape {(h, w)} has {h * w} pixels but the model's images have {num_pixels}; pass {guess}."
        )
    return h, w


def index(name, value, size, what="images"):
    """``value`` as an ``int`` in ``[0, size)``: which of ``size`` items."""
    value = count(name, value, minimum=0)
    if value >= size:
        raise ValueError(f"{name}={value} is out of range: there are {size} {what} (0 to {size - 1}).")
    return value


def at_most(name, value, maximum, why):
    """Raise if the number ``value`` exceeds ``maximum`` (``why`` says what it would cost or mean)."""
    if value > maximum:
        raise ValueError(f"{name}={value} is too large: {why}")


def equal(name, value, expected, fix):
    """Raise unless ``value == expected`` (a structural number: a latent dimension, a length)."""
    if value != expected:
        raise ValueError(f"{name} must be {expected}, got {value}. {fix}")


def number(name, value, *, positive=False):
    """``value`` as a finite Python ``float`` (a slider's start or limit); ``positive``: also > 0."""
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be one finite number, got {value!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be one finite number, got {value!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be one finite number, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}; e.g. {name}=3.0.")
    return value


def interval(name, value):
    """``(low, high)`` as two finite floats with ``low < high``."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (low, high), two numbers, got {value!r}.") from None
    low, high = number(f"{name}'s low", low), number(f"{name}'s high", high)
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {value!r}; pass ({high:g}, {low:g}).")
    return low, high


def code(name, z, latent_dim):
    """``z`` as a finite float32 NumPy code ``(latent_dim,)``."""
    z = np.asarray(z, np.float32)
    shape(name, z, (latent_dim,), "Pass one code (latent_dim,).")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} must be finite, got {z}.")
    return z


LOCATION_LIMIT = 1e8  # |mu| beyond this: mu^2 / 2 (in log p(z)) is ~1e16 and soon overflows float32 (3.4e38)


def location(name, mu):
    """Raise if a concrete mean ``mu`` is NaN/inf or beyond ``LOCATION_LIMIT``, where log-densities leave float32."""
    _within_float32(name, mu, LOCATION_LIMIT, lambda worst: (
        "log N(z; 0, I) = -z^2/2 of such a z overflows float32 and the result is -inf. Latent means are of order 1 "
        "under the N(0, I) prior; check that you passed the mean itself."))


# ---------------------------------------------------------------- grids

MAX_GRID_POINTS = 2**24  # about 17 million points: a 4097 x 4097 grid
SPACING_ULPS = 8  # float32 steps may differ by this many float32 resolutions (eps x the largest |value|)


def grid_axes(axes, min_points=2, names=None):
    """The axes of a regular grid as arrays, checked: 1-D, ``min_points`` or more, evenly spaced, sensible size.

    "Evenly spaced" is judged relative to float32 resolution: ``jnp.linspace(96, 104, 1001)``
    in float32 has steps that differ by a few units of float32 at 104 (1e-3 of a step), which is
    as even as float32 can be; an uneven axis differs by a sizeable fraction of a step.
    """
    if hasattr(axes, "ndim") and axes.ndim == 2 and axes.shape[0] > 8:
        raise ValueError(
            f"grid must be a list of d 1-D axes (one per latent dimension), got one array of shape {axes.shape}; "
            "pass the axes themselves, e.g. [jnp.linspace(-4, 4, 101)] * 2, not make_grid(...)'s points."
        )
    axes = [jnp.asarray(a) for a in axes]
    if not axes:
        raise ValueError("axes must hold at least one 1-D array (one per latent dimension).")
    names = names or [f"axis {i}" for i in range(len(axes))]
    for name, a in zip(names, axes, strict=True):
        if a.ndim != 1 or a.shape[0] < min_points:
            raise ValueError(f"{name} must be a 1-D array of at least {min_points} points, got shape {a.shape}.")
        floating(name, a)
        values = concrete(a)
        if values is None:
            continue
        steps = np.diff(values.astype(np.float64))
        # each float32 value is rounded by up to half a unit in the last place (ulp) at its size
        resolution = float(np.finfo(values.dtype).eps) * float(np.max(np.abs(values)))
        tolerance = max(1e-3 * abs(float(steps[0])), SPACING_ULPS * resolution)
        if not (np.all(steps > 0) and np.all(np.abs(steps - steps[0]) <= tolerance)):
            raise ValueError(
                f"{name} must be increasing and evenly spaced (quadrature weighs every point by one cell "
                f"volume), got steps from {steps.min():.4g} to {steps.max():.4g}; use jnp.linspace(low, high, n)."
            )
    size = float(np.prod([a.shape[0] for a in axes], dtype=np.float64))
    if size > MAX_GRID_POINTS:
        raise ValueError(
            f"a grid of {' x '.join(str(a.shape[0]) for a in axes)} = {size:.3g} points is too large "
            f"(at most {MAX_GRID_POINTS}); a grid costs G**d evaluations, so use fewer points or dimensions."
        )
    return axes


def binary(name, a, fix=""):
    """Raise unless a concrete ``a`` holds only 0 and 1 (binary pixels)."""
    values = concrete(a)
    if values is not None and not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{name} must be binary (0 or 1).{' ' + fix if fix else ''}")


def distinct_rows(name, a, why):
    """Raise if a concrete 2-D ``a`` repeats a row (``why`` says why each row must be its own)."""
    values = concrete(a)
    if values is not None:
        repeated = len(values) - len(np.unique(values, axis=0))
        if repeated:
            raise ValueError(f"{name} holds {repeated} repeated row(s): {why}")


def names_in(name, values, allowed, fix):
    """Raise unless every item of ``values`` is one of ``allowed`` (names of nodes, keys of a style)."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name} {unknown!r} not among {sorted(allowed)}; {fix}")


def nonempty_image_batch(name, x):
    """Raise unless ``x`` is ``(num_images, pixels)`` with at least one image."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] == 0:
        raise ValueError(
            f"{name} must be (num_images, pixels) with at least one image, got shape {shape}; "
            "pass e.g. dataset.x_train (flatten images with x.reshape(len(x), -1))."
        )


# ---------------------------------------------------------------- ranges, orders and structure


def at_least(name, value, minimum, why):
    """Raise if the number ``value`` is below ``minimum`` (``why`` says what needs that many)."""
    if value < minimum:
        raise ValueError(f"{name}={value} is too small (at least {minimum}): {why}")


def in_range(name, a, low, high, fix="", *, closed=True):
    """Raise unless every concrete value of ``a`` lies in ``[low, high]`` (``closed``) or ``(low, high)``.

    NaN lies in no range. Bounds may be infinite: ``(0, inf)`` open is "positive", ``[0, inf]``
    "non-negative", ``[0, 1]`` a pixel intensity, ``(0, 1)`` a probability that is neither 0 nor 1.
    """
    values = concrete(a)
    if values is None:
        return
    values = np.asarray(values, np.float64)
    inside = (values >= low) & (values <= high) if closed else (values > low) & (values < high)
    if not np.all(inside):
        left, right = ("[", "]") if closed else ("(", ")")
        outside = values[~inside]
        shown = f"{outside.flat[0]:.4g}" if values.ndim else f"{values.item()!r}"
        where = "" if values.ndim == 0 else f" ({outside.size} of {values.size} values outside, e.g. {shown})"
        got = f", got {shown}" if values.ndim == 0 else where
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}{right}{got}.{' ' + fix if fix else ''}")


def increasing(name, values, fix=""):
    """Raise unless ``values`` (numbers) are non-empty and strictly increasing."""
    values = list(values)
    if not values or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"{name} must be a non-empty, strictly increasing list, got {values}.{' ' + fix if fix else ''}")


def divisor(name, value, total, fix):
    """Raise unless the whole number ``value`` divides ``total`` (equal blocks of ``total`` items)."""
    if total % value:
        raise ValueError(f"{name}={value} must divide {total} into equal blocks, but {total} % {value} = "
                         f"{total % value}. {fix}")


def flag(name, value):
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def given(name, value, fix):
    """Raise if ``value`` is ``None`` (an argument needed in this case)."""
    if value is None:
        raise ValueError(f"{name} is needed here, got None. {fix}")


def together(name_a, a, name_b, b, fix=""):
    """Raise unless ``a`` and ``b`` are both given or both ``None`` (two halves of one argument)."""
    if (a is None) != (b is None):
        missing, present = (name_a, name_b) if a is None else (name_b, name_a)
        raise ValueError(f"{name_a} and {name_b} go together: got {present} without {missing}. "
                         f"Pass both, or neither.{' ' + fix if fix else ''}")


def pair(name, value, what):
    """``value`` as a tuple of its two items (``what`` names them, e.g. ``"(mu, log_var)"``)."""
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a pair {what}, got {type(value).__name__}.") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be a pair {what}, got {len(items)} item(s).")
    return items


def instance(name, value, kinds, fix):
    """Raise unless ``value`` is an instance of ``kinds`` (a class or a tuple of classes)."""
    if not isinstance(value, kinds):
        wanted = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise ValueError(f"{name} must be a {wanted}, got {type(value).__name__}. {fix}")


def nonempty_mapping(name, value, fix):
    """Raise unless ``value`` is a mapping (has ``items``) with at least one entry."""
    if not hasattr(value, "items") or len(value) == 0:
        shown = f"an empty {type(value).__name__}" if hasattr(value, "items") else f"a {type(value).__name__}"
        raise ValueError(f"{name} must be a non-empty mapping, got {shown}. {fix}")


def class_labels(name, labels, num, num_classes=None):
    """``labels`` as an int64 array ``(num,)`` of class indices ``0, 1, ...`` (below ``num_classes`` if given)."""
    values = np.asarray(labels)
    if values.shape != (num,) or values.dtype == bool or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"{name} must be ({num},) integer class labels (one per image or code), got shape {values.shape} and "
            f"dtype {values.dtype}; pass e.g. ds.y_test[:{num}]."
        )
    top = "" if num_classes is None else f" and < {num_classes}"
    if num and (values.min() < 0 or (num_classes is not None and values.max() >= num_classes)):
        bad = values.min() if values.min() < 0 else values.max()
        raise ValueError(f"{name} must be class indices >= 0{top}, got {bad}.")
    return values.astype(np.int64)


def cholesky_factor(name, chol):
    """Raise unless a concrete ``chol (..., d, d)`` is finite and lower-triangular with a positive diagonal.

    Such an L is the Cholesky factor of the covariance L L^T, and log det(L L^T) = 2 sum log diag L.
    """
    finite(name, chol)
    values = concrete(chol)
    if values is not None and (np.any(np.triu(values, 1) != 0) or np.any(np.diagonal(values, 0, -2, -1) <= 0)):
        raise ValueError(
            f"{name} must be lower-triangular with a positive diagonal (a Cholesky factor L of the covariance "
            "L L^T); got nonzero entries above the diagonal or a diagonal entry <= 0. Factor a covariance with "
            "jnp.linalg.cholesky(cov), or build L from its diagonal's logs and its strictly lower part."
        )


def one_of(name, value, valid, fix=""):
    """Raise unless ``value`` is one of the names ``valid`` (a data set, a model kind, a mode)."""
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not a valid value; valid values are {', '.join(map(str, valid))}."
                         f"{' ' + fix if fix else ''}")


def has_dtype(name, a, expected, fix=""):
    """Raise unless ``a`` has the NumPy dtype ``expected`` (e.g. uint8 grey levels)."""
    if np.asarray(a).dtype != np.dtype(expected):
        raise ValueError(f"{name} must have dtype {np.dtype(expected)}, got {np.asarray(a).dtype}."
                         f"{' ' + fix if fix else ''}")


def none_of(what, items, fix):
    """Raise if ``items`` (the offending ones, by name) is not empty: ``what`` they are and the fix."""
    if items:
        raise ValueError(f"{what} ({', '.join(map(str, items[:3]))}{', ...' if len(items) > 3 else ''}). {fix}")
