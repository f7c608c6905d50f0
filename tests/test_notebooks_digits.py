"""Every lesson runs to the end on the bundled 8x8 digits (``VAE_LITE_DATASET=digits``).

This is the series' quick mode, and the path a machine without MNIST falls back to. Each
lesson executes in a fresh kernel with the digits and JAX on the CPU, in order, sharing one
model cache that starts empty (as a student running the series in quick mode would): a
lesson trains the models no earlier lesson trained, and compiled programs are reused from
the cache's persistent compilation cache. Execution only: the outputs are not compared
(nbval checks the committed MNIST outputs); a cell that raises, a failing assert among them,
fails the test and names the cell. Select with ``-m slow``.
"""

import os
import time
from pathlib import Path
from unittest import mock

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(path.name for path in NOTEBOOKS.glob("0[1-8]_*.ipynb"))
NOTICE = "NOTICE: VAE_LITE_DATASET=digits"  # data.load("mnist") warns with it (shown on stderr) when the switch is on


def stream_text(nb):
    """Everything the notebook's code cells printed, as one string."""
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "stream"
    )


def test_all_eight_lessons_are_collected():
    assert [name[:2] for name in LESSONS] == ["01", "02", "03", "04", "05", "06", "07", "08"], LESSONS


@pytest.fixture(scope="module")
def quick_mode_cache(tmp_path_factory):
    """One empty model cache for the eight lessons of this module."""
    return tmp_path_factory.mktemp("digits-cache")


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_on_the_digits(lesson, quick_mode_cache):
    nb = nbformat.read(NOTEBOOKS / lesson, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    # the kernel inherits this environment; patch.dict restores ours afterwards
    env = {"VAE_LITE_DATASET": "digits", "JAX_PLATFORMS": "cpu", "VAE_LITE_CACHE": str(quick_mode_cache)}
    start = time.perf_counter()
    with mock.patch.dict(os.environ, env):
        client.execute()  # raises CellExecutionError, showing the failing cell and its traceback
    print(f"{lesson}: {time.perf_counter() - start:.1f} s on the digits")
    if any("data.load(" in cell.source for cell in nb.cells):  # lesson 5's estimators load no images
        assert NOTICE in stream_text(nb), f"{lesson} never printed the digits NOTICE: did the switch take effect?"
