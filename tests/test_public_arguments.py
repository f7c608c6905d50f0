"""Every argument rule lives once, in ``vae_lite/_args.py``: no other module raises ``ValueError`` itself.

The source of each module is read (``ast``), not run: a ``raise ValueError`` outside ``_args`` is a
rule written a second time, with its own wording and its own gaps (a fractional count truncated, a
key of 0 reaching JAX's raw ``TypeError``), so the public functions that raise one themselves (or
through a private helper of their module) are listed. The modules below still do, each for the
reason given; a module not listed must have none, so a new offender fails here, and an entry whose
module no longer raises must be dropped.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "vae_lite"

NOT_YET_MOVED = {
}


def value_errors(path):
    """``[(qualified name of the enclosing function, line)]`` of each ``raise ValueError`` in a module."""
    found = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
            elif isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(exc, ast.Name) and exc.id == "ValueError":
                    found.append((".".join(scope) or "<module>", child.lineno))
                visit(child, scope)
            else:
                visit(child, scope)

    visit(ast.parse(path.read_text(), str(path)), [])
    return found


def modules():
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("_args", "__init__"))


def test_value_errors_are_found_by_the_scan(tmp_path):
    """The scan itself, on a module written here: raises in a method, a nested helper and a re-raise are found."""
    source = tmp_path / "sample.py"
    source.write_text(
        "class A:\n    def f(self, x):\n        if x:\n            raise ValueError('x')\n"
        "def g(x):\n    def check():\n        raise ValueError\n"
        "    try:\n        check()\n    except KeyError:\n        raise ValueError('y') from None\n"
        "def h(x):\n    raise TypeError('not counted')\n"
    )
    assert value_errors(source) == [("A.f", 4), ("g.check", 7), ("g", 11)]


@pytest.mark.parametrize("module", modules())
def test_argument_rules_go_through_args(module):
    offenders = value_errors(PACKAGE / f"{module}.py")
    if module in NOT_YET_MOVED:
        assert offenders, f"vae_lite/{module}.py raises no ValueError of its own any more: drop it from NOT_YET_MOVED."
        return
    listed = "\n".join(f"  vae_lite/{module}.py:{line} in {name}" for name, line in offenders)
    assert not offenders, (
        f"vae_lite/{module}.py raises ValueError itself instead of through vae_lite/_args.py:\n{listed}\n"
        "Use the _args helper for that kind of argument (count, prng_key, shape, image_batch, grid_axes, "
        "number, interval, index, ...) or add one there, worded as the others: expected, got, the fix."
    )


def test_the_allowlist_names_existing_modules():
    assert set(NOT_YET_MOVED) <= set(modules()), set(NOT_YET_MOVED) - set(modules())
