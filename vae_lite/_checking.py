"""The machinery of the visible checks (:mod:`vae_lite.grading`, :mod:`vae_lite._checks_training`).

Everything here stands between a check and the student's function: :func:`_exercise`, the
decorator of every ``check_*`` (it rejects the library's own answer and gives the whole check
:data:`TIME_LIMIT_S`); :func:`call`, which calls the student's function; :func:`unpack` and
:func:`as_array`, which read what it returned; :func:`expect_close`, which compares that with
the reference; and :class:`Case`, whose ``fail`` writes the message.

Every failure is an ``AssertionError`` (what nbgrader counts as a failed test) whose message
says which check, which input, what was expected, what came back, and a hint. Whatever the
student's function or the object it returned raises, even ``SystemExit`` or
``KeyboardInterrupt``, or an exception that cannot be printed, becomes such a message: only
the check's own :class:`_TimeUp` passes through, which is how the time limit stops a check.

In the clean re-grade's student process, :func:`call` also arms :mod:`vae_lite._tripwires`, so
the student's function reaching the library's answer by any route fails there; in a kernel no
tripwire is installed and arming changes nothing.
"""

import contextlib
import functools
import importlib
import os
import signal
import threading
import traceback
import types
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_lite import _tripwires

TIME_LIMIT_S = 20.0
"""Seconds one check may take in all, every call of the student's function included. Below
nbgrader's default cell timeout (30 s), so the student sees this message rather than a bare
interrupt; a plain vectorised solution needs a few seconds even on a loaded 2-core machine."""

_LIBRARY = ("vae_lite", "jax", "jaxlib", "numpy", "scipy", "flax", "optax", "functools", "builtins")


# ---------------------------------------------------------------- time limit and exits
class _TimeUp(BaseException):
    """Raised by a check's alarm; a BaseException, so a student's ``except Exception`` cannot swallow it."""


class _ExitCalled(Exception):
    """What ``os._exit`` raises while a check runs, instead of ending the kernel."""


@contextlib.contextmanager
def _alarm(seconds):
    """Raise :class:`_TimeUp` in the main thread after ``seconds`` (and every 0.5 s after that)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _no_process_exit():
    """Inside, ``os._exit`` raises :class:`_ExitCalled` instead of killing the kernel (restored after)."""
    real_exit = os._exit

    def refuse(status=0):
        raise _ExitCalled(f"os._exit({status})")

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real_exit


def _slow_hint():
    return "vectorise (no Python loop over samples, pixels or grid points), or look for a loop that never ends"


# ---------------------------------------------------------------- touching the student's objects
def _attempt(function, *args):
    """``(function(*args), None)``, or ``(None, error)`` with whatever it raised.

    For every operation that may run the student's code (``__array__``, ``__len__``,
    ``__iter__``, ``__str__``, attribute look-ups): any exception counts, even ``SystemExit``
    or ``KeyboardInterrupt``, except the check's own :class:`_TimeUp`.
    """
    try:
        return function(*args), None
    except _TimeUp:
        raise
    except BaseException as error:  # noqa: BLE001 - whatever the student's object raises is described
        return None, error


def _is_sequence(value):
    """Whether ``value`` is a tuple or a list, by its actual type (no code of the student's runs)."""
    return issubclass(type(value), (tuple, list))


def _message(error):
    """The first line of ``error``'s message (at most 300 characters); ``<unprintable T>`` when reading
    it raises (an exception class may break its own ``__str__``)."""
    lines, failed = _attempt(lambda: str(error).strip().splitlines())
    if failed is not None:
        return f"<unprintable {type(error).__name__}>"
    return lines[0][:300] if lines else ""


def describe(error):
    """``"Type: first line of its message"`` (or just ``"Type"``) for any exception, even one that cannot
    be printed."""
    message = _message(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _where(error):
    """`` at line N (code)`` for the innermost frame of the student's code in ``error``'s traceback, or ''."""
    own = os.path.dirname(__file__)
    frames, _ = _attempt(lambda: traceback.extract_tb(error.__traceback__))
    frames = [f for f in frames or ()
              if not f.filename.startswith(own) and not any(f"/{m}/" in f.filename for m in _LIBRARY)
              and not f.filename.endswith("contextlib.py")]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at line {frame.lineno} ({frame.line.strip() if frame.line else frame.name})"


def call(case, fn, *args, what="your function"):
    """``fn(*args)``, or a teaching ``AssertionError`` if it raises anything, exits or runs out of time."""
    if not callable(fn):
        case.fail(f"expected a function, got {type(fn).__name__}", hint="pass the function itself, without calling it")
    try:
        with _no_process_exit(), _tripwires.armed():  # armed only in a re-grade's student process
            return fn(*args)
    except NotImplementedError:
        problem = f"{what} is not implemented yet"
        hint = "replace `raise NotImplementedError()` with your solution, run that cell, then this one"
    except _TimeUp:
        problem = f"{what} took longer than {TIME_LIMIT_S:.0f} s (the time limit of this check)"
        hint = _slow_hint()
    except (SystemExit, _ExitCalled) as error:
        problem = f"{what} tried to end the program ({describe(error)})"
        hint = "a function returns its result: remove exit(), sys.exit() or os._exit()"
    except BaseException as error:  # noqa: BLE001 - any student error, its own AssertionError included
        problem = f"{what} raised {type(error).__name__}{_where(error)}: {_message(error)}"
        hint = (
            "check the shapes of the inputs above against the docstring; "
            "print intermediate shapes to find the line that goes wrong"
        )
    case.fail(problem, hint=hint)  # outside the except block: no chained traceback


_UNTRACEABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def compiled(fn, static_argnums=()):
    """``fn`` under ``nnx.jit`` (one compiled program per input shape, where eager execution compiles
    every operation separately, about 1 MB of memory each), or ``fn`` itself for code that cannot be
    traced (NumPy on the inputs, Python branches on values), so that it fails or passes as written.
    ``static_argnums``: arguments that fix shapes (a number of samples), as for ``jax.jit``."""
    jitted = nnx.jit(fn, static_argnums=static_argnums)

    def run(*args):
        try:
            return jitted(*args)
        except _UNTRACEABLE:
            return fn(*args)

    return run


# ---------------------------------------------------------------- the decorator of every check
def _library_answer(fn, solutions):
    """The dotted name of the first of ``solutions`` (``"module.function"`` in vae_lite) that ``fn``
    is, wraps or uses, else None.

    Follows ``functools.partial``, ``__wrapped__`` (``jax.jit``), bound methods, and the
    globals, closure variables and module attributes named in the code of ``fn`` and of the
    student's own helpers it uses (not into the library, which may call itself). A student's
    object that raises while it is looked at counts as not using the library.
    """
    targets = {}
    for dotted in solutions:
        module, name = dotted.rsplit(".", 1)
        target = getattr(importlib.import_module(f"vae_lite.{module}"), name)
        while target is not None:
            targets[id(target)] = dotted
            target = getattr(target, "__wrapped__", None)
    if not targets:
        return None
    found, _ = _attempt(_reaches, fn, targets)
    return found


def _reaches(fn, targets):
    """The dotted name of the first of ``targets`` (``{id(function): dotted name}``) that ``fn`` reaches, else None."""
    seen, todo = set(), [fn]
    while todo and len(seen) < 500:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if id(obj) in targets:
            return targets[id(obj)]
        if isinstance(obj, functools.partial):
            todo += [obj.func, *obj.args, *obj.keywords.values()]
            continue
        todo += [getattr(obj, attr) for attr in ("__wrapped__", "__func__") if hasattr(obj, attr)]
        code = getattr(obj, "__code__", None)
        if not isinstance(code, types.CodeType) or str(getattr(obj, "__module__", "")).split(".")[0] in _LIBRARY:
            continue
        names, codes = set(), [code]
        while codes:
            c = codes.pop()
            names.update(c.co_names)
            codes += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        found = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        found += [obj.__globals__[n] for n in names if n in getattr(obj, "__globals__", {})]
        found += [getattr(m, n) for m in found if isinstance(m, types.ModuleType) for n in names if hasattr(m, n)]
        todo += [f for f in found if callable(f) or isinstance(f, functools.partial)]
    return None


def _filled(cell):
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True


def _exercise(*solutions):
    """Decorator of a ``check_*``: reject the library's own answer (``solutions``: ``"module.function"``
    in vae_lite), and give the whole check :data:`TIME_LIMIT_S`, during which ``os._exit`` raises."""

    def decorate(check):
        @functools.wraps(check)
        def run(fn):
            try:
                with _alarm(TIME_LIMIT_S), _no_process_exit():
                    used = _library_answer(fn, solutions)
                    if used:
                        Case(check.__name__, 0, 1).fail(
                            f"your function is, or uses, vae_lite.{used}: the library's own answer to this exercise",
                            hint="write it yourself with jax.numpy; the lesson compares your version with the library's")
                    return check(fn)
            except _TimeUp:
                pass
            Case(check.__name__, 0, 1).fail(f"the check took longer than {TIME_LIMIT_S:.0f} s in all",
                                             hint=_slow_hint())

        run.library_answers = solutions  # see library_answers
        return run

    return decorate


def library_answers(check):
    """The library's own answers to the exercise of ``check`` (a ``check_*``), which it rejects.

    Returns:
        Their dotted names ``"module.function"`` in vae_lite, as given to :func:`_exercise`
        (e.g. ``("distributions.kl_normal_std",)``); ``()`` for a check that rejects none.
    """
    return tuple(getattr(check, "library_answers", ()))


# ---------------------------------------------------------------- inputs and results
def _f32(a):
    """An input as the student's function receives it: a float32 jax array."""
    return jnp.asarray(a, dtype=jnp.float32)


def _f64(a):
    """A read-only float64 copy: a student's function cannot change a check's inputs or references."""
    copy = np.array(a, dtype=np.float64)
    copy.flags.writeable = False
    return copy


def _passed(check, total):
    return f"{check}: passed on {total} test inputs."


def fmt(value, precision=4):
    """A short, readable rendering of an input or output (arrays summarised beyond 8 entries); a
    value that cannot be rendered (its conversion or ``repr`` raises anything, e.g. a jax tracer's) is
    shown by its type."""
    text, failed = _attempt(_render, value, precision)
    return f"<{type(value).__name__}>" if failed is not None else text


def _render(value, precision):
    if callable(value) and not isinstance(value, np.ndarray):
        return str(getattr(value, "__doc__", None) or getattr(value, "__name__", "a function"))
    if isinstance(value, str):
        return value
    array = np.asarray(value)
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
    """Check that ``value`` is a tuple/list of ``len(names)`` items and return them as a tuple."""
    wanted = ", ".join(names)
    if value is None:
        case.fail("your function returned None", hint=f"did you forget `return {wanted}`?")
    items, failed = _attempt(tuple, value) if _is_sequence(value) else (None, None)
    if failed is not None:
        case.fail(f"expected a tuple ({wanted}), got a {type(value).__name__} whose items could not be read "
                  f"({describe(failed)})", hint=f"end your function with `return {wanted}`")
    if items is None or len(items) != len(names):
        n = f" of {len(items)} items" if items is not None else ""
        case.fail(f"expected a tuple ({wanted}), got {type(value).__name__}{n}",
                  hint=f"end your function with `return {wanted}`")
    return items


def as_array(case, value, shape, name="the result", shape_hints=None, nonfinite_hint=None, integer=False):
    """Convert the student's ``value`` to a float64 NumPy array of ``shape``, or fail teaching.

    ``shape_hints`` maps a wrong shape to a hint; ``nonfinite_hint`` explains NaN/inf.
    """
    if value is None:
        case.fail(f"{name} is None", hint="did you forget the `return` statement?")
    if _is_sequence(value):
        count, failed = _attempt(len, value)
        of = f" of {count} items" if failed is None else ""
        case.fail(f"{name} is a {type(value).__name__}{of}, expected one array of shape {shape}",
                  hint="return a single array (e.g. `jnp.stack(items)`), not a tuple or list")
    array, failed = _attempt(np.asarray, value)  # may run the student's __array__, or meet a jax tracer
    if failed is not None:
        case.fail(f"{name} could not be read as an array (converting the {type(value).__name__} raised "
                  f"{describe(failed)})", hint="return a jax.numpy array")
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
