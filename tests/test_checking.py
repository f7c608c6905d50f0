"""Tests for vae_lite._checking, the machinery of the visible checks, through real checks: whatever
the student's function or the object it returns raises (SystemExit, KeyboardInterrupt, an
exception that cannot be printed, a broken ``__len__``) is one teaching AssertionError, while
the check's own time limit still stops it; and :func:`library_answers` names real functions."""

import importlib
import os

import jax.numpy as jnp
import pytest
from _checks import fails_with  # tests/_checks.py

from vae_lite import _checking, grading


def kl(mu, log_var):
    return 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1 - log_var)




def returning(value):
    return lambda *args: value


class Raising:
    """A result whose conversion to an array raises ``error``."""

    def __init__(self, error):
        self.error = error

    def __array__(self, dtype=None, copy=None):
        raise self.error


# ------------------------------------------------------------ what the student's function returns
@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_a_result_whose_conversion_ends_the_program_is_one_failed_check(error):
    fails_with(grading.check_kl_normal_std, returning(Raising(error)), "check_kl_normal_std: ",
               "could not be read as an array", f"raised {type(error).__name__}", "hint: return a jax.numpy array")


def test_os_exit_in_a_results_conversion_does_not_end_the_kernel(monkeypatch):
    def reached(status=0):
        raise RuntimeError("os._exit reached the process")

    monkeypatch.setattr(os, "_exit", reached)

    class Leaving:
        def __array__(self, dtype=None, copy=None):
            os._exit(0)

    fails_with(grading.check_kl_normal_std, returning(Leaving()), "could not be read as an array",
               "_ExitCalled: os._exit(0)")
    assert os._exit is reached


class Pair(tuple):
    def __len__(self):
        raise RuntimeError("no length")


def test_a_tuple_whose_len_raises_is_reported():
    # its length is unknown: no "of N items" between the type and "expected"
    fails_with(grading.check_kl_normal_std, returning(Pair((1.0, 2.0))), "the result is a Pair, expected one array")
    fails_with(grading.check_grid_normalization, returning(Pair((1.0, 2.0))),
               "expected a tuple (log_posterior, log_evidence), got a Pair whose items could not be read",
               "RuntimeError: no length")


def test_a_check_still_stops_a_result_whose_conversion_never_ends(monkeypatch):
    monkeypatch.setattr(_checking, "TIME_LIMIT_S", 0.3)

    class Endless:
        def __array__(self, dtype=None, copy=None):
            while True:
                pass

    message = fails_with(grading.check_kl_normal_std, returning(Endless()), "the check took longer than 0 s in all")
    assert "could not be read" not in message, message


# ------------------------------------------------------------ what the student's function raises
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


class UnprintableAssertion(AssertionError):
    def __str__(self):
        raise SystemExit("no text")


@pytest.mark.parametrize("error", [Unprintable, UnprintableAssertion])
def test_an_exception_that_cannot_be_printed_is_described(error):
    def broken(mu, log_var):
        raise error()

    fails_with(grading.check_kl_normal_std, broken, f"your function raised {error.__name__} at line",
               "(raise error())", f"<unprintable {error.__name__}>")


def test_the_students_own_assert_is_reported_with_its_line():
    def asserting(mu, log_var):
        assert mu.ndim == 2, "mu must be a batch"
        return kl(mu, log_var)

    fails_with(grading.check_kl_normal_std, asserting, "raised AssertionError at line",
               "(assert mu.ndim == 2", "mu must be a batch")


def test_a_function_whose_attributes_raise_is_still_checked():
    """The scan for the library's answer reads the function's attributes: one that raises is just not the library."""

    class Callable:
        def __call__(self, mu, log_var):
            return kl(mu, log_var)

        def __getattr__(self, name):
            raise SystemExit(f"no {name}")

    assert "passed" in grading.check_kl_normal_std(Callable())


def test_fmt_shows_an_unrenderable_value_by_its_type():
    class Opaque:
        def __array__(self, dtype=None, copy=None):
            raise KeyboardInterrupt()

    assert _checking.fmt(Opaque()) == "<Opaque>"
    assert _checking.describe(Unprintable()) == "Unprintable: <unprintable Unprintable>"
    assert _checking.describe(SystemExit()) == "SystemExit"


# ------------------------------------------------------------ the catalogue's machinery
def test_library_answers_name_functions_of_the_library():
    assert _checking.library_answers(grading.check_kl_normal_std) == ("distributions.kl_normal_std",)
    assert _checking.library_answers(grading.check_score_function_loo) == ()
    checks = [getattr(grading, name) for name in dir(grading) if name.startswith("check_")]
    answers = [dotted for check in checks for dotted in _checking.library_answers(check)]
    assert len(answers) >= 15
    for dotted in answers:
        module, name = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(f"vae_lite.{module}"), name)), dotted


def test_grading_still_offers_call_and_the_time_limit():
    assert grading.call is _checking.call and grading.TIME_LIMIT_S == _checking.TIME_LIMIT_S
