"""The latent explorer in a real browser: Voila serves it, headless Debian Chromium moves a slider.

Served notebook: a small one written to ``tmp_path`` that builds one explorer widget on a
small untrained VAE (8x8 images, no data files, no training), rather than lesson 7 itself:
it starts in seconds and tests exactly the browser path (kernel -> widget -> image) that
lesson 7's widgets share. Lesson 7 itself runs under nbval. Select with ``-m browser``.
The helpers are also used by ``benchmarks/bench_explorer.py`` for the round-trip timing.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # git-ignored
IMAGE = ".widget-image"
READOUT = ".widget-readout"

EXPLORER_NOTEBOOK = """\
import numpy as np
from flax import nnx
from vae_lite import explorer, networks

model = networks.VAE(64, (32,), latent_dim=4, rngs=nnx.Rngs(0))
x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
view = explorer.latent_sliders(model, x, (8, 8), num_sliders=2)
view.widget
"""


def write_notebook(folder, source=EXPLORER_NOTEBOOK):
    """Write a one-cell notebook with ``source`` to ``folder/explorer_test.ipynb``; returns its path."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(folder) / "explorer_test.ipynb"
    nbformat.write(nb, path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_voila(notebook, log_path=None, timeout=120):
    """Start Voila on a free localhost port (own process group); returns ``(process, url)``.

    The server's output goes to ``log_path`` (default: ``voila.log`` beside the notebook).
    """
    port = free_port()
    log = open(log_path or Path(notebook).parent / "voila.log", "w")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "voila", Path(notebook).name, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--show_tracebacks=True"]
    proc = subprocess.Popen(cmd, cwd=Path(notebook).parent, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    proc.log_file = log
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Voila exited with code {proc.returncode}; see {log.name}")
        try:  # the port accepts connections once the server is listening
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    stop_voila(proc)
    raise TimeoutError(f"Voila did not answer on {url} within {timeout} s")


def stop_voila(proc):
    """Stop the Voila server and its kernel (the process group this test started)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log_file.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def image_src(page):
    return page.eval_on_selector(f"{IMAGE}", "img => img.src")


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


@pytest.fixture
def served_explorer(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) is needed for the browser test")
    if shutil.which("voila") is None and pytest.importorskip("voila") is None:
        pytest.skip("voila is not installed")
    proc, url = start_voila(write_notebook(tmp_path))
    try:
        yield url
    finally:
        stop_voila(proc)


@pytest.mark.browser
def test_slider_readout_changes_the_image_in_chromium(served_explorer):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(served_explorer, timeout=120_000)
            page.wait_for_selector(f"{IMAGE}", timeout=120_000)
            page.wait_for_function("sel => document.querySelector(sel).complete", arg=IMAGE)
            assert page.locator(READOUT).count() == 2
            before = page.locator(IMAGE).screenshot()
            seconds = type_into_readout(page, 0, "2.5")
            after = page.locator(IMAGE).screenshot()
            page.screenshot(path=ARTIFACTS / "latent_explorer_chromium.png", full_page=True)
            assert page.locator(READOUT).nth(0).inner_text().strip() == "2.50"
            assert after != before, "the decoded image did not change after the slider moved"
            print(f"slider edit -> new image in Chromium: {1000 * seconds:.0f} ms")
            # out of range: the slider clamps to its limit (3) and the image follows
            type_into_readout(page, 0, "99")
            assert page.locator(READOUT).nth(0).inner_text().strip() == "3.00"
            assert page.locator(IMAGE).screenshot() != after
        finally:
            browser.close()
