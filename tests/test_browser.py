"""The latent explorer in a real browser: Voila serves it, headless Debian Chromium moves a slider.

Served notebook: a small one written to ``tmp_path`` that builds one explorer widget on a
small untrained VAE (8x8 images, no data files, no training), rather than lesson 8 itself:
it starts in seconds and tests exactly the browser path (kernel -> widget -> image) that
lesson 8's widgets share. Lesson 8 itself runs under nbval. Select with ``-m browser``.
The browser helpers live in ``support/browser.py``, shared with ``benchmarks/bench_explorer.py``.
"""

import pytest

from support.browser import (
    ARTIFACTS,
    IMAGE,
    READOUT,
    launch_chromium,
    missing_tools,
    start_voila,
    stop_server,
    type_into_readout,
    write_notebook,
)

EXPLORER_NOTEBOOK = """\
import numpy as np
from flax import nnx
from vae_lite import explorer, networks

model = networks.VAE(64, (32,), latent_dim=4, rngs=nnx.Rngs(0))
x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
view = explorer.latent_sliders(model, x, (8, 8), num_sliders=2)
view.widget
"""


@pytest.fixture
def served_explorer(tmp_path):
    reason = missing_tools("voila")
    if reason:
        pytest.skip(reason)
    proc, url = start_voila(write_notebook(tmp_path, EXPLORER_NOTEBOOK))
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.mark.browser
def test_slider_readout_changes_the_image_in_chromium(served_explorer):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(served_explorer, timeout=120_000)
            page.wait_for_selector(IMAGE, timeout=120_000)
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
