"""Latent explorer latency: slider change -> new image, in Python and in a real browser.

Python side: setting a slider's value runs the widget's observer synchronously (jitted
decode + PNG encoding + the image widget's update), so timing the assignment times
exactly what a slider move costs the kernel. Browser round trip: Voila serves a
one-widget notebook on the standard MNIST model, headless Debian Chromium types a value
into a slider's readout and we time Enter -> new image loaded (helpers in
``support/browser.py``, shared with the browser tests). Models come from the training cache (trained if missing).

Run: ``python benchmarks/bench_explorer.py [--quick] [--no-browser]``; ``main()`` returns
the rows (dicts ``metric, measured, target, status, note``) for ``run_all.py``.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root: support/, the helpers shared with the tests

from _report import print_table, row  # noqa: E402

from support import browser as _browser  # noqa: E402

BROWSER_NOTEBOOK = """\
from vae_lite import data, explorer, training

mnist = data.load("mnist", fallback=True)
model = training.train(progress=False).model
view = explorer.latent_sliders(model, mnist.x_test[:500], mnist.image_shape)
view.widget
"""


def timings_ms(set_value, values):
    """Milliseconds of ``set_value(v)`` for each v (after two warm-up calls)."""
    set_value(values[0])
    set_value(values[1])
    out = []
    for v in values:
        start = time.perf_counter()
        set_value(v)
        out.append(1000 * (time.perf_counter() - start))
    return np.array(out)


def stats_row(metric, ms, median_target=None, p95_target=None, note=""):
    median, p95 = np.median(ms), np.percentile(ms, 95)
    measured = f"median {median:.1f} ms, p95 {p95:.1f} ms (n={len(ms)})"
    target, ok = "", None
    if median_target is not None:
        target = f"median <= {median_target} ms" + (f", p95 <= {p95_target} ms" if p95_target else "")
        ok = bool(median <= median_target and (p95_target is None or p95 <= p95_target))
    return row(metric, measured, target, ok, note)


def python_rows(num_changes):
    import jax

    from vae_lite import data, explorer, posterior, training, widgets

    mnist = data.load("mnist", fallback=True)
    x = mnist.x_test[:500]
    model = training.train(progress=False).model
    values = list(np.linspace(-2.5, 2.5, num_changes))
    rows = []

    view = explorer.latent_sliders(model, x, mnist.image_shape)
    rows.append(
        stats_row(
            f"latent sliders ({mnist.name}, {model.num_pixels}-d decoder): slider -> new image",
            timings_ms(lambda v: setattr(view.sliders[0], "value", float(v)), values),
            20,
            50,
            "decode + PNG + widget update",
        )
    )
    z = view.z[None]
    rows.append(stats_row("  of which: jitted decode", timings_ms(lambda v: view.decode(z + v), values)))
    rows.append(
        stats_row(
            "  of which: PNG encoding", timings_ms(lambda v: widgets.to_png(view.image, view.scale), values)
        )
    )

    perturb = explorer.encode_and_perturb(model, x, mnist.image_shape, labels=mnist.y_test[:500])
    rows.append(
        stats_row(
            "encode and perturb: slider -> original | decoded",
            timings_ms(lambda v: setattr(perturb.sliders[0], "value", float(v)), values),
            20,
            50,
        )
    )
    interp = explorer.interpolation(model, x, mnist.image_shape, index_a=0, index_b=1)
    ts = list(np.linspace(0, 1, num_changes))
    rows.append(
        stats_row(
            "interpolation (linear): t -> A | z(t) | B",
            timings_ms(lambda v: setattr(interp.t, "value", float(v)), ts),
            20,
            50,
        )
    )

    model2 = training.train(latent_dim=2, progress=False).model
    grid = explorer.manifold(model2, mnist.image_shape)
    rows.append(
        stats_row(
            "2-D manifold (15x15 grid + marker): slider -> new image",
            timings_ms(lambda v: setattr(grid.sliders[0], "value", float(v)), values),
            20,
            50,
        )
    )

    rows += naive_mc_rows(model2, mnist, num_changes)

    lg = posterior.LinearGaussian.random(jax.random.key(0), 5, 1)
    x_lg = lg.sample(jax.random.key(1), 1)[1][0]
    elbo_view = widgets.elbo_widget(lg.log_joint(x_lg), np.linspace(-4, 4, 801))
    rows.append(
        stats_row(
            "lesson-4 ELBO widget (801-point grid, matplotlib blit): slider -> new plot",
            timings_ms(lambda v: setattr(elbo_view.mu_slider, "value", float(v) / 2), values),
            50,
            None,
        )
    )
    return rows


def naive_mc_rows(model2, mnist, num_changes):
    """Lesson 3's naive Monte Carlo widget on the lesson's pool: 2^15 prior samples, six test images."""
    import jax
    import jax.numpy as jnp

    from vae_lite import data, naive_mc

    x = data.binarize_fixed(mnist.x_test[:6], seed=1)
    z = jax.random.normal(jax.random.key(11), (2**15, 2))
    logits = jax.lax.map(model2.decoder, z.reshape(-1, 1024, 2))  # (32, 1024, D)
    log_lik = jnp.einsum("id,cjd->icj", x, logits) - jnp.sum(jax.nn.softplus(logits), -1)[None]
    log_lik = np.asarray(log_lik, np.float64).reshape(6, -1)
    # timing only: log p(x) taken as the whole pool's estimate (the lesson passes its quadrature)
    log_evidence = np.logaddexp.reduce(log_lik, axis=1) - np.log(log_lik.shape[1])
    start = time.perf_counter()
    naive = naive_mc.naive_estimates(log_lik, log_evidence)
    build = time.perf_counter() - start
    view = naive_mc.naive_widget(naive)
    sizes = [int(s) for s in naive.sample_sizes]
    first = []
    for i in range(1, 6):  # an image's first visit also draws its curve (kept for later visits)
        start = time.perf_counter()
        view.image_menu.value = i
        first.append(1000 * (time.perf_counter() - start))
    return [
        stats_row(
            f"lesson-3 naive MC widget (6 images, pool 2^15, S = 1 ... {sizes[-1]}): S slider -> new plot",
            timings_ms(lambda v: setattr(view.sample_slider, "value", v), [sizes[i % len(sizes)] for i in
                                                                          range(num_changes)]),
            50,
            100,
            f"naive_estimates (all S, six images) {1000 * build:.0f} ms, once",
        ),
        stats_row("  image change, an image seen before -> new plot",
                  timings_ms(lambda v: setattr(view.image_menu, "value", v), [i % 6 for i in range(num_changes)]),
                  50, 100),
        stats_row("  image change, first visit (draws its curve) -> new plot", np.array(first), 100),
    ]


@contextlib.contextmanager
def voila_page(notebook):
    """A Chromium page showing ``notebook`` (source text) served by Voila, its first image loaded;
    yields ``(page, seconds from the first request to that image)``."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        proc, url = _browser.start_voila(_browser.write_notebook(folder, notebook), timeout=300)
        try:
            with sync_playwright() as p:
                browser = _browser.launch_chromium(p)
                try:
                    page = browser.new_page()
                    start = time.perf_counter()
                    page.goto(url, timeout=300_000)
                    page.wait_for_selector(_browser.IMAGE, timeout=300_000)
                    yield page, time.perf_counter() - start
                finally:
                    browser.close()
        finally:
            _browser.stop_server(proc)


def browser_rows(num_edits):
    reason = _browser.missing_tools("voila")
    if reason:
        return [row("browser round trip", f"skipped: {reason}")]
    with voila_page(BROWSER_NOTEBOOK) as (page, first):
        values = [f"{v:.2f}" for v in np.linspace(-2.5, 2.5, num_edits)]
        _browser.type_into_readout(page, 0, "2.9")  # warm-up
        ms = np.array([1000 * _browser.type_into_readout(page, 0, v) for v in values])
    return [
        stats_row(
            "browser round trip (Voila + Chromium): readout edit -> new image",
            ms,
            300,
            None,
            "standard MNIST model; time from Enter to the new image loaded",
        ),
        row(
            "  Voila page load -> first image",
            f"{first:.1f} s",
            note="kernel start, imports, model load, compile",
        ),
    ]


NAIVE_MC_NOTEBOOK = """\
import numpy as np
from vae_lite import naive_mc

log_lik = np.random.default_rng(0).normal(-150.0, 60.0, size=(6, 2**15))  # the size of lesson 3's pool
naive = naive_mc.naive_estimates(log_lik, np.logaddexp.reduce(log_lik, axis=1) - np.log(2**15))
naive_mc.naive_widget(naive).widget
"""


def naive_mc_browser_rows(num_moves):
    """Lesson 3's widget in Voila + Chromium: the S slider's handle moved one step by the arrow keys."""
    reason = _browser.missing_tools("voila")
    if reason:
        return [row("lesson-3 naive MC widget, browser round trip", f"skipped: {reason}")]
    with voila_page(NAIVE_MC_NOTEBOOK) as (page, _):
        page.locator(".noUi-handle").first.focus()
        ms = []
        for step in range(num_moves + 1):  # S = 1 -> 4096 and back: 12 steps each way
            old = _browser.image_src(page)
            start = time.perf_counter()
            page.keyboard.press("ArrowRight" if (step // 12) % 2 == 0 else "ArrowLeft")
            page.wait_for_function(
                "([sel, old]) => { const img = document.querySelector(sel); return img.src !== old && img.complete; }",
                arg=[_browser.IMAGE, old], timeout=30_000, polling="raf")
            ms.append(1000 * (time.perf_counter() - start))
    return [stats_row("lesson-3 naive MC widget, browser round trip (Voila + Chromium): arrow key on the S slider "
                      "-> new image", np.array(ms[1:]), 300, None, "six images of 2^15 synthetic log-likelihoods")]


def main(quick=False, browser=True):
    """Measure, print the table, return the rows."""
    rows = python_rows(30 if quick else 200)
    if browser:
        rows += browser_rows(5 if quick else 30)
        rows += naive_mc_browser_rows(6 if quick else 30)
    try:
        load = ", load average %.1f / %.1f / %.1f" % os.getloadavg()
    except OSError:
        load = ""
    print_table(f"Latent explorer latency ({os.cpu_count()} CPUs{load})", rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-browser", action="store_true", help="skip the Voila + Chromium round trip")
    args = parser.parse_args()
    main(quick=args.quick, browser=not args.no_browser)
