"""Tripwires on the library's answers: how the clean re-grade tells, by behaviour, that a
student's function uses the library's own answer to an exercise.

``install(["distributions.kl_normal_std", ...])`` replaces each answer, everywhere the
library binds it (its module attribute, every ``vae_lite`` module that imported it by name)
and in its own code object (so a function rebuilt from ``__code__``, or the function under a
``jax.jit``, is caught too), by a *tripwire*. Outside :func:`armed` a tripwire is the answer
itself, so a student's self-check at the top of a cell ("the same as
``distributions.kl_normal_std``?") runs as in the lesson. While :func:`armed` runs (the
grader calls the student's function) any call of a tripwire is recorded and raises
:class:`LibraryAnswerUsed`; :func:`tripped` returns what was reached. Comments and strings
never count: only a call does. A library module reloaded, or an answer rebound by the
student, is found when the next armed section starts and counts as reaching that answer.

This is a re-grade's tool for a process that only grades: it changes the library's modules
for the rest of the process. The in-kernel checks keep :func:`vae_lite._checking`'s
introspection, which names the obvious alias without changing anything.
"""

import contextlib
import importlib
import pkgutil
import sys
import types

import vae_lite


class LibraryAnswerUsed(BaseException):
    """Raised by a tripwire while armed; a BaseException, so a student's ``except Exception`` cannot hide it."""


_ORIGINALS = {}  # dotted name -> the answer as the library defined it (a callable that still works)
_WIRES = {}  # dotted name -> its tripwire
_REPLACED = {}  # dotted name -> the object the library bound before install (its code now trips)
_STATE = {"armed": False, "tripped": []}


def _trip(dotted, args, kwargs):
    if _STATE["armed"]:
        if dotted not in _STATE["tripped"]:
            _STATE["tripped"].append(dotted)
        raise LibraryAnswerUsed(f"uses vae_lite.{dotted}, the library's own answer to this exercise")
    return _ORIGINALS[dotted](*args, **kwargs)


def _wire_code(dotted):
    """A code object that calls :func:`_trip` for ``dotted`` through the name the module's globals get."""
    source = f"def {dotted.rsplit('.', 1)[1]}(*args, **kwargs):\n    return __vae_lite_trip__({dotted!r}, args, kwargs)\n"
    namespace = {}
    exec(compile(source, f"<tripwire of vae_lite.{dotted}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace[dotted.rsplit(".", 1)[1]].__code__


def _library_modules():
    return [m for name, m in list(sys.modules.items())
            if isinstance(m, types.ModuleType) and (name == "vae_lite" or name.startswith("vae_lite."))]


def install(answers):
    """Put a tripwire in place of each of ``answers`` (``"module.name"`` in vae_lite); idempotent."""
    for info in pkgutil.iter_modules(vae_lite.__path__):  # every module now: a later import finds them wired
        importlib.import_module(f"vae_lite.{info.name}")
    for dotted in answers:
        if dotted in _WIRES:
            continue
        module_name, name = dotted.rsplit(".", 1)
        original = getattr(importlib.import_module(f"vae_lite.{module_name}"), name)
        if isinstance(original, type):  # a class (an nnx.Module): a subclass whose construction trips
            wire, _ORIGINALS[dotted] = _wired_class(dotted, original), original
        else:
            layers, target = [], original
            while target is not None:  # the function itself and what a jax.jit or functools.wraps wraps
                layers.append(target)
                target = getattr(target, "__wrapped__", None)
            python = [f for f in layers if isinstance(f, types.FunctionType)]
            _ORIGINALS[dotted] = _working_copy(python[-1]) if python else original
            wire = types.FunctionType(_wire_code(dotted), {"__vae_lite_trip__": _trip}, name)
            wire.__doc__, wire.__module__ = getattr(original, "__doc__", None), getattr(original, "__module__", None)
            for function in python:
                if not function.__closure__:  # a code object with free variables cannot be swapped
                    function.__globals__["__vae_lite_trip__"] = _trip
                    function.__code__ = _wire_code(dotted)
        _WIRES[dotted], _REPLACED[dotted] = wire, original
        for module in _library_modules():
            for attribute, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attribute, wire)


def _working_copy(function):
    """A new function object over ``function``'s code, unaffected when its ``__code__`` is swapped."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


def _wired_class(dotted, original):
    """A subclass of ``original`` whose construction trips while armed."""

    def __init__(self, *args, **kwargs):
        if _STATE["armed"]:
            _trip(dotted, args, kwargs)
        original.__init__(self, *args, **kwargs)

    return type(original.__name__, (original,), {"__init__": __init__, "__module__": original.__module__,
                                                 "__qualname__": original.__qualname__})


def rebind(namespace):
    """Replace, in a student's ``namespace``, every name bound to an original answer by its tripwire
    (names a lesson imported before :func:`install`)."""
    originals = {id(v): d for d, v in _REPLACED.items()}
    for key, value in list(namespace.items()):
        if id(value) in originals:
            namespace[key] = _WIRES[originals[id(value)]]


def _check_in_place():
    """Count as reached every answer whose tripwire is no longer where it was put (a reload, a rebinding)."""
    for dotted, wire in _WIRES.items():
        module_name, name = dotted.rsplit(".", 1)
        module = sys.modules.get(f"vae_lite.{module_name}")
        if module is None or getattr(module, name, None) is not wire:
            if dotted not in _STATE["tripped"]:
                _STATE["tripped"].append(dotted)


@contextlib.contextmanager
def armed():
    """While the grader runs the student's function: every tripwire reached is recorded and raises."""
    _check_in_place()
    previous, _STATE["armed"] = _STATE["armed"], True
    try:
        yield
    finally:
        _STATE["armed"] = previous


def tripped():
    """The answers reached while armed (dotted names, first reach first)."""
    return list(_STATE["tripped"])
