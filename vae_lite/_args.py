"""Argument checks shared by every vae-lite module (private): one rule per kind of argument.

Each failure is a ``ValueError`` that names the argument, what was expected, what came,
and the fix. Shape checks run at trace time, so they also guard compiled functions; value
checks (ranges, NaN) look only at concrete arrays and are skipped inside ``jax.jit``.
"""

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


def floating(name, a):
    """Raise unless ``a`` holds floating-point numbers."""
    try:
        dtype = jnp.result_type(a)
    except TypeError:
        raise ValueError(f"{name} must be a floating-point array, got {type(a).__name__}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array, got dtype {dtype}. "
            f"Convert it first, e.g. {name}.astype(jnp.float32)."
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


def log_variance(name, log_var):
    """Raise if a concrete ``log_var`` is NaN/inf or so large that e^{log_var} leaves float32."""
    finite(name, log_var)
    values = concrete(log_var)
    if values is not None and values.size and np.max(np.abs(values)) > LOG_VAR_LIMIT:
        worst = values.flat[np.argmax(np.abs(values))]
        raise ValueError(
            f"{name} = {worst:.4g} is outside [-{LOG_VAR_LIMIT:g}, {LOG_VAR_LIMIT:g}]: e^{name} = variance "
            f"{'over' if worst > 0 else 'under'}flows float32 and gives NaN. A log-variance is the log of "
            "sigma^2 (sigma = 1 is log_var = 0); pass log(sigma^2), not sigma^2 or a huge value."
        )


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
    finite("mu", mu)
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
