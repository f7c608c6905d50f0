"""Machinery behind :mod:`vae_lite.grading`: read what a student's function returned and
compare it with a reference, turning every failure into a teaching message (calling the
function safely, with a time limit, is :func:`vae_lite.grading.call`).

Every failure is an ``AssertionError`` (what nbgrader counts as a failed test) whose message
says which check, which input, what was expected, what came back, and a hint. Nothing here
lets the student's exception or a conversion error escape as an unrelated traceback.
"""

from dataclasses import dataclass, field

import numpy as np


def fmt(value, precision=4):
    """A short, readable rendering of an input or output (arrays summarised beyond 8 entries)."""
    if callable(value) and not isinstance(value, np.ndarray):
        return getattr(value, "__doc__", None) or getattr(value, "__name__", "a function")
    if isinstance(value, str):
        return value
    try:
        array = np.asarray(value)
    except Exception:  # anything unprintable is shown by its type
        return f"<{type(value).__name__}>"
    if array.dtype == object:
        return repr(value)[:200]
    if array.ndim == 0:
        return f"{array.item():.{precision}g}" if array.dtype.kind == "f" else str(array.item())
    text = np.array2string(array, precision=precision, threshold=8, edgeitems=3, separator=", ")
    return text if array.size <= 8 else f"{text} (shape {array.shape})"


@dataclass
class Case:
    """One test input of one check: used to head every message."""

    check: str
    index: int
    total: int
    inputs: dict = field(default_factory=dict)

    def fail(self, problem, expected=None, got=None, hint=None):
        """Raise the teaching ``AssertionError``."""
        lines = [f"{self.check}: {problem} (test input {self.index + 1} of {self.total})."]
        if self.inputs:
            shown = ", ".join(f"{name} = {fmt(value)}" for name, value in self.inputs.items())
            lines.append(f"  input:    {shown}")
        if expected is not None:
            lines.append(f"  expected: {fmt(expected)}")
        if got is not None:
            lines.append(f"  got:      {fmt(got)}")
        if hint:
            lines.append(f"  hint: {hint}")
        raise AssertionError("\n".join(lines))


def unpack(case, value, names):
    """Check that ``value`` is a tuple/list of ``len(names)`` items and return it as a tuple."""
    if value is None:
        case.fail("your function returned None", hint=f"did you forget `return {', '.join(names)}`?")
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        n = f" of {len(value)} items" if isinstance(value, (tuple, list)) else ""
        case.fail(
            f"expected a tuple ({', '.join(names)}), got {type(value).__name__}{n}",
            hint=f"end your function with `return {', '.join(names)}`",
        )
    return tuple(value)


def as_array(case, value, shape, name="the result", shape_hints=None, nonfinite_hint=None, integer=False):
    """Convert the student's ``value`` to a float64 NumPy array of ``shape``, or fail teaching.

    ``shape_hints`` maps a wrong shape to a hint; ``nonfinite_hint`` explains NaN/inf.
    """
    if value is None:
        case.fail(f"{name} is None", hint="did you forget the `return` statement?")
    if isinstance(value, (tuple, list)):
        case.fail(
            f"{name} is a {type(value).__name__} of {len(value)} items, expected one array of shape {shape}",
            hint="return a single array (e.g. `jnp.stack(items)`), not a tuple or list",
        )
    try:
        array = np.asarray(value)
    except Exception:  # e.g. a jax tracer escaping a transform
        array = None
    if array is None:
        case.fail(f"{name} could not be read as an array ({type(value).__name__})", hint="return a jax.numpy array")
    if array.dtype.kind not in "biuf":
        case.fail(
            f"{name} has type {type(value).__name__} (dtype {array.dtype}), expected a real-valued array",
            hint="return a jax.numpy array of numbers",
        )
    if array.shape != tuple(shape):
        hint = (shape_hints or {}).get(array.shape)
        if hint is None and array.size == 1 and len(shape) == 0:
            hint = "return a scalar (shape ()), e.g. with `jnp.sum(...)` or `.squeeze()`"
        case.fail(
            f"{name} has shape {array.shape}, expected {tuple(shape)}",
            got=array if array.size <= 50 else None,
            hint=hint or "compare the shapes in the docstring with what each line of your function produces",
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = "NaN" if np.any(np.isnan(array)) else "inf"
        case.fail(
            f"{name} contains {bad}",
            got=array,
            hint=nonfinite_hint or "look for log of 0 or of a negative number, or exp of a large number",
        )
    if integer and not np.all(array == np.round(array)):
        case.fail(f"{name} must hold whole numbers", got=array)
    return array


def expect_close(case, got, expected, *, hint, variants=(), rtol=1e-4, atol=1e-4, name="the result"):
    """Pass if ``got`` matches ``expected``; otherwise fail, diagnosing with known wrong ``variants``.

    Args:
        variants: ``(description, value)`` pairs of typical wrong answers (or
            ``(description, value, atol)`` with their own tolerance); a ``value`` may be a
            function, evaluated only on failure. The closest one within tolerance gives the hint;
            a description names the mistake it detected and points to the idea, never the answer.
        hint: the hint when no variant matches: it points to the idea and where to look (the
            lesson's section, the property to check) without writing the formula or the code
            that solves the exercise (``tests/test_grading.py::test_no_hint_writes_the_answer``).
    """
    expected = np.asarray(expected, dtype=np.float64)
    if np.allclose(got, expected, rtol=rtol, atol=atol):
        return
    best = 1.0
    for description, value, *own_atol in variants:
        value = np.asarray(value() if callable(value) else value, dtype=np.float64)
        if value.shape != got.shape or not np.all(np.isfinite(value)):
            continue
        distance = np.max(np.abs(got - value) / (np.asarray(own_atol[0] if own_atol else atol) + rtol * np.abs(value)))
        if distance <= best:
            best, hint = distance, description
    case.fail(f"wrong value of {name}", expected=expected, got=got, hint=hint)
