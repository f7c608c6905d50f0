"""Lessons 03, 04, 06, 07 and 08 in JupyterLab in a real browser: run-all gives no errors, the widgets render and respond.

The Voila test (``test_browser.py``) drives one widget in Voila; nbval runs the lessons without a browser.
Neither sees what a student sees after ``make lessons``: JupyterLab's own front end, whose widget manager
has to find every widget model the kernel creates (a mismatch between ipywidgets and jupyterlab_widgets
shows up only there, as "Error displaying widget: model not found"). So this test

* starts ``jupyter lab`` from the project's venv as ``make lessons`` does (loopback, no token) on a free
  port, serving a temporary copy of lessons 03, 04, 06, 07 and 08 with their outputs and saved widget state cleared
  (JupyterLab autosaves, so the committed notebooks are never touched, and every output comes from this run);
* opens each lesson in headless Debian Chromium through Playwright and runs it with JupyterLab's own
  menu command, Run > Run All Cells, waiting until no cell is left at ``[*]``;
* saves the notebook from JupyterLab and reads it back with nbformat: every code cell has an execution
  count and no output is an error;
* checks the page: no "Error displaying widget", "model not found" or traceback, and every widget output
  of the saved notebook is rendered as a live widget;
* types a new value into one slider's readout of the lesson's widget and checks that its picture (and, in
  lessons 03, 04, 06 and 07, the estimates, ELBO / KL, beta or gaps readout) changes.

The kernels use the bundled 8x8 digits (``VAE_LITE_DATASET=digits``) and an empty model cache, so the
lessons train their models on the spot in seconds. Screenshots go to ``test-artifacts/``. The server, its
kernels (which run in sessions of their own) and Chromium are stopped at the end. Select with ``-m browser``.
The server and browser helpers are shared with ``test_browser.py`` and the benchmarks through ``support/browser.py``.
"""

import contextlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from support.browser import (
    ARTIFACTS,
    IMAGE,
    READOUT,
    free_port,
    launch_chromium,
    missing_tools,
    start_server,
    stop_server,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RUN_TIMEOUT_S = 300  # a lesson takes up to about a minute on digits on 2 cores; leave room for a busy machine
WIDGET_FAILURES = ("Error displaying widget", "model not found", "Traceback")
# JupyterLab user settings for the test's own settings folder: render every cell (no windowing), so the
# page holds all prompts and outputs; no news or update checks (no network here, and no toasts).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        '{"fetchNews": "false", "checkForUpdates": false}',
}


@dataclass(frozen=True)
class Lesson:
    notebook: str
    widget_code: str  # code that identifies the cell whose widget gets a slider moved
    typed: bool = True  # the slider's readout takes a typed value; else (a selection slider) its handle is moved by a key


LESSONS = {
    "03_intractable_posterior": Lesson("03_intractable_posterior.ipynb", "naive_mc.naive_widget(", typed=False),
    "04_elbo": Lesson("04_elbo.ipynb", "elbo_widget("),
    "06_training_a_vae": Lesson("06_training_a_vae.ipynb", "beta_sweep.beta_widget(", typed=False),
    "07_mean_field_vs_amortized": Lesson("07_mean_field_vs_amortized.ipynb", "gaps.gap_widget("),
    "08_latent_explorer": Lesson("08_latent_explorer.ipynb", "explorer.latent_sliders("),
}


# ---------------------------------------------------------------- the server


def copy_lessons(folder):
    """Copy the lessons to ``folder`` with outputs, execution counts and saved widget state cleared."""
    for lesson in LESSONS.values():
        nb = nbformat.read(NOTEBOOKS / lesson.notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, folder / lesson.notebook)


def write_lab_settings(folder):
    for name, text in LAB_SETTINGS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def start_lab(root, state, log_path, timeout=120):
    """Start ``jupyter lab`` serving ``root`` on a free loopback port, no token; returns ``(process, url)``.

    The kernels inherit the server's environment: digits, an empty model cache in ``state``, JAX on the CPU.
    JupyterLab's settings, workspaces and runtime files also live in ``state``.
    """
    port = free_port()
    env = {**os.environ, "VAE_LITE_DATASET": "digits", "VAE_LITE_CACHE": str(state / "cache"),
           "JAX_PLATFORMS": "cpu", "JUPYTER_RUNTIME_DIR": str(state / "runtime")}
    write_lab_settings(state / "settings")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--IdentityProvider.token=", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={state / 'settings'}",
           f"--LabApp.workspaces_dir={state / 'workspaces'}"]
    if os.geteuid() == 0:  # CI containers run as root, which jupyter refuses without this flag
        cmd.append("--allow-root")
    proc = start_server(cmd, root, env, log_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.log_file.close()
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5):
                return proc, url
        except urllib.error.HTTPError as err:
            err.close()  # an answer, but not yet "ready"
        except OSError:
            pass
        time.sleep(0.5)
    stop_lab(proc)
    raise TimeoutError(f"jupyter lab did not answer on {url} within {timeout} s; see {log_path}")


def stop_lab(proc):
    """Stop the server's process group, then any kernel that survived it (kernels get their own session)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    stop_server(proc, timeout=30)  # jupyter shuts its kernels down on SIGTERM
    _, alive = psutil.wait_procs(children, timeout=15)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=15)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(url, root)`` of a JupyterLab serving copies of the lessons; one server for the module."""
    reason = missing_tools("psutil")  # psutil stops the kernels
    if reason:
        pytest.skip(reason)
    root, state = tmp_path_factory.mktemp("lessons"), tmp_path_factory.mktemp("jupyterlab")
    copy_lessons(root)
    proc, url = start_lab(root, state, state / "jupyterlab.log")
    try:
        yield url, root
    finally:
        stop_lab(proc)


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


# ---------------------------------------------------------------- JupyterLab in the page


def open_notebook(browser, url, name):
    """Open ``name`` in a fresh page (``?reset``: no restored tabs) and wait until its kernel is idle."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/lab/tree/{name}?reset", timeout=120_000)
    panel = notebook_panel(page)
    panel.wait_for(timeout=120_000)
    # the status bar reads "Python 3 (ipykernel) | Idle" once the kernel has started and connected
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=120_000)
    return page


def notebook_panel(page):
    return page.locator(".jp-NotebookPanel:visible")


def prompts(page):
    return notebook_panel(page).locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()


def run_all_cells(page, timeout_s=RUN_TIMEOUT_S):
    """Run > Run All Cells from JupyterLab's menu bar; wait until no cell is queued or running (``[*]``)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                 has_text=re.compile(r"^Run All Cells$")).click()
    cells = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt"
    page.wait_for_function(  # started: some prompt left "[ ]:"
        "sel => [...document.querySelectorAll(sel)].some(p => !/\\[ \\]/.test(p.innerText))",
        arg=cells, timeout=60_000)
    try:
        page.wait_for_function(  # finished (or stopped at an error): no "[*]:" left
            "sel => [...document.querySelectorAll(sel)].every(p => !p.innerText.includes('*'))",
            arg=cells, timeout=timeout_s * 1000, polling=500)
    except Exception as err:  # playwright's TimeoutError
        raise AssertionError(f"run-all did not finish in {timeout_s} s; prompts: {prompts(page)}") from err


def save_notebook(page, path):
    """Save the notebook with Ctrl+S and read it back from ``path`` once the tab is no longer dirty."""
    notebook_panel(page).locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")  # command mode, so Ctrl+S goes to the notebook
    page.keyboard.press("Control+s")
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", state="detached", timeout=60_000)
    return nbformat.read(path, as_version=4)


def error_report(nb):
    """One line per error output of the saved notebook: cell index, exception and the line that raised."""
    lines = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(output.traceback))
                # the first "---->" marks the line of the cell that raised
                raised = [line for line in traceback.splitlines() if re.match(r"-+> ", line)][:1]
                lines.append(f"cell {index}: {output.ename}: {output.evalue} (at {' '.join(raised)!r})")
    return lines


def shut_down_kernels(page):
    """Shut down every kernel (``DELETE /api/sessions/...``), from the page: it has the XSRF cookie."""
    page.evaluate("""async () => {
        const xsrf = document.cookie.match(/_xsrf=([^;]+)/);
        const headers = xsrf ? {"X-XSRFToken": decodeURIComponent(xsrf[1])} : {};
        const sessions = await (await fetch("/api/sessions")).json();
        for (const s of sessions) await fetch(`/api/sessions/${s.id}`, {method: "DELETE", headers});
    }""")


def widget_output(page, code):
    """The rendered output of the first code cell containing ``code`` that shows an image widget."""
    cell = notebook_panel(page).locator(".jp-CodeCell", has_text=code).first
    return cell.locator(".jp-OutputArea-output", has=page.locator(IMAGE)).first


def move_slider(page, output, index=0, typed=True):
    """Move the ``index``-th slider of ``output``: type a new value into its readout and press Enter, or
    (``typed=False``, a selection slider whose readout is not editable) focus its handle and press ArrowRight.

    Returns ``(old value, new value, seconds)`` as shown in the readout, and the time from the key press
    until the new picture is shown.
    """
    readout = output.locator(READOUT).nth(index)
    image = output.locator(IMAGE).first
    readout.scroll_into_view_if_needed()
    old_value, old_src = readout.inner_text().strip(), image.get_attribute("src")
    if typed:
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("1.00" if old_value != "1.00" else "-1.00")
        key = "Enter"
    else:
        output.locator(".noUi-handle").nth(index).focus()
        key = "ArrowRight"
    start = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function("([img, old]) => img.src !== old && img.complete",
                           arg=[image.element_handle(), old_src], timeout=30_000, polling=10)
    round_trip = time.perf_counter() - start  # browser -> kernel -> new picture shown: reported, not asserted
    return old_value, readout.inner_text().strip(), round_trip


# ---------------------------------------------------------------- the test


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", list(LESSONS))
def test_lesson_runs_in_jupyterlab_and_its_widget_responds(lab, browser, name):
    from playwright.sync_api import expect

    url, root = lab
    lesson = LESSONS[name]
    ARTIFACTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    page = open_notebook(browser, url, lesson.notebook)
    try:
        run_all_cells(page)
        seconds = time.perf_counter() - start
        nb = save_notebook(page, root / lesson.notebook)
        page.screenshot(path=ARTIFACTS / f"jupyterlab_{name}_run_all.png")

        errors = error_report(nb)
        assert not errors, f"{lesson.notebook} raised in JupyterLab:\n" + "\n".join(errors)
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        not_run = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
        assert not not_run, f"cells {not_run} of {lesson.notebook} did not run; prompts: {prompts(page)}"

        text = notebook_panel(page).inner_text()
        shown = [failure for failure in WIDGET_FAILURES if failure in text]
        assert not shown, f"{lesson.notebook} shows {shown} in JupyterLab"
        widget_views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                           for c in code_cells for o in c.outputs)
        assert widget_views > 0, f"{lesson.notebook} displayed no widget"
        expect(notebook_panel(page).locator(".jp-OutputArea-output:has(.jupyter-widgets)"),
               f"every widget output of {lesson.notebook} is rendered as a live widget"
               ).to_have_count(widget_views, timeout=30_000)

        output = widget_output(page, lesson.widget_code)
        labels = output.locator(".widget-html").all_inner_texts()
        old_png = output.locator(IMAGE).first.screenshot()
        old_value, new_value, round_trip = move_slider(page, output, typed=lesson.typed)
        page.screenshot(path=ARTIFACTS / f"jupyterlab_{name}_slider.png")
        assert new_value != old_value, f"the slider readout stayed at {old_value}"
        assert output.locator(IMAGE).first.screenshot() != old_png, "the picture did not change"
        if labels:  # lesson 04: log p(x) = ELBO + KL, recomputed for the new q; lesson 07: the ELBO after K steps
            assert output.locator(".widget-html").all_inner_texts() != labels, "the readout did not change"
        print(f"\n{lesson.notebook}: opened and run in JupyterLab in {seconds:.0f} s; "
              f"{widget_views} widgets rendered; slider {old_value} -> {new_value}, picture updated "
              f"{1e3 * round_trip:.0f} ms after the key press")
    finally:
        with contextlib.suppress(Exception):  # frees the lesson's memory for the next; stop_lab would anyway
            shut_down_kernels(page)
        page.close()
