"""Helpers for driving the widgets in a real browser: servers on loopback, headless Chromium.

Shared by the browser tests (``tests/test_browser.py``: Voila; ``tests/test_jupyterlab.py``:
JupyterLab; ``tests/test_site.py``: the course website) and by ``benchmarks/bench_explorer.py``
(the slider round-trip timing). Nothing here needs pytest: a missing tool is reported by
:func:`missing_tools`, and the caller decides to skip.

The browser is the system's Debian Chromium (``/usr/bin/chromium``) driven by Playwright,
so no ``playwright install`` (and no network) is needed.
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # git-ignored
IMAGE = ".widget-image"  # CSS class of an ipywidgets Image
READOUT = ".widget-readout"  # CSS class of a slider's editable readout


def missing_tools(*modules):
    """Why a browser run cannot happen here (Chromium or a Python module missing), or ``None``.

    Args:
        modules: importable names needed besides Playwright, e.g. ``"voila"``.
    """
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    for module in ("playwright.sync_api", *modules):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return f"{module.split('.')[0]} (PyPI) is not installed; it is needed for the browser run"
    return None


def launch_chromium(playwright):
    """Headless Debian Chromium through a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def write_notebook(folder, source, name="explorer_test.ipynb"):
    """Write a one-cell notebook with ``source`` to ``folder/name``; returns its path."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(folder) / name
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------- servers


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd, cwd, env, log_path):
    """Start ``cmd`` in its own process group (so it can be stopped with its children).

    Its output goes to ``log_path``; the open log is kept as ``proc.log_file`` for :func:`stop_server`.
    """
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log_file = log
    return proc


def stop_server(proc, timeout=15):
    """SIGTERM the server's process group, SIGKILL it after ``timeout`` seconds; close its log."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log_file.close()


def start_voila(notebook, log_path=None, timeout=120):
    """Serve ``notebook`` with Voila on a free loopback port; returns ``(process, url)``.

    The server's output goes to ``log_path`` (default: ``voila.log`` beside the notebook).
    Returns once the port accepts connections.
    """
    port = free_port()
    notebook = Path(notebook)
    cmd = [sys.executable, "-m", "voila", notebook.name, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--show_tracebacks=True"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = start_server(cmd, notebook.parent, env, log_path or notebook.parent / "voila.log")
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Voila exited with code {proc.returncode}; see {proc.log_file.name}")
        try:  # the port accepts connections once the server is listening
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"Voila did not answer on {url} within {timeout} s")


# ---------------------------------------------------------------- the page


def image_src(page):
    """The ``src`` (a PNG data URL) of the page's first image widget."""
    return page.eval_on_selector(IMAGE, "img => img.src")


def type_into_readout(page, index, text):
    """Type ``text`` into the ``index``-th slider's readout and press Enter; wait for a new image.

    Returns the seconds from pressing Enter to the new image being in the page.
    """
    old = image_src(page)
    readout = page.locator(READOUT).nth(index)
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    start = time.perf_counter()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel); return img.src !== old && img.complete; }",
        arg=[IMAGE, old], timeout=30_000, polling="raf")
    return time.perf_counter() - start
