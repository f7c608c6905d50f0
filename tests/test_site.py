"""The course website (``make site``): built offline from the committed lessons, read in headless Chromium.

The site is built once for this file (``site_src/build_site.py``, the same function ``make site``
runs, with Sphinx's warnings as errors) into a temporary folder. Checked without a browser: no page
or style sheet loads anything from outside the site, every internal link and image resolves, the
solutions are folded and the hidden tests are gone, each lesson links its notebook. Checked in
Debian's Chromium (``-m browser``), with every request that leaves the loopback interface blocked
and counted: every page renders its maths with the site's own MathJax, every image loads, every
widget renders from its saved state without an error; screenshots go to ``test-artifacts/``.
The checkers themselves are tested on small hand-made sites with known faults.
"""

import importlib.util
import json
import re
import sys
import time
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "site_src"))

import build_site  # noqa: E402
from site_checks import broken_links, external_loads, pages  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
VIEW_SCRIPT = 'script[type="application/vnd.jupyter.widget-view+json"]'


def _needs_sphinx():
    for module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[site]' (make setup installs it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _needs_sphinx()
    folder = tmp_path_factory.mktemp("site")
    seconds = build_site.build(folder / "site", work=folder / "work")  # build/ is left to `make site`
    print(f"site built in {seconds:.1f} s")
    return folder / "site"


def _notebook(path):
    return json.loads(Path(path).read_text())


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _folded(nb, cell_type, solution):
    """The cells of ``cell_type`` the lesson folds away (``source_hidden``) that are (not) nbgrader solutions."""
    return [c for c in nb["cells"] if c["cell_type"] == cell_type
            and c.get("metadata", {}).get("jupyter", {}).get("source_hidden")
            and bool(c["metadata"].get("nbgrader", {}).get("solution")) == solution]


# ---------------------------------------------------------------- the checkers, on known faults


def test_external_load_checker_finds_each_kind_and_ignores_links(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/require.min.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/font.css">'
        '<style>@import url("https://fonts.googleapis.com/css?family=Roboto");</style>'
        '<script src="_static/local.js"></script><link rel="next" href="https://example.org/next.html"></head>'
        '<body><a href="https://nbgrader.readthedocs.io">nbgrader</a><img src="data:image/png;base64,AAAA">'
        '<div style="background: url(http://img.example.org/bg.png)"></div></body></html>')
    (tmp_path / "_static" / "local.js").write_text("")
    (tmp_path / "_static" / "theme.css").write_text(
        "/* @import url('https://commented.example.org/x.css'); */\n"
        "@font-face { src: url(https://fonts.example.org/x.woff2) format('woff2'), url(local.woff2); }\n")
    found = sorted(url for _, url in external_loads(tmp_path))
    assert found == sorted(["https://cdn.example.org/require.min.js", "//fonts.example.org/font.css",
                            "https://fonts.googleapis.com/css?family=Roboto", "http://img.example.org/bg.png",
                            "https://fonts.example.org/x.woff2"])


def test_link_checker_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "lessons").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="lessons/a.html#goals">ok</a><a href="lessons/a.html#nowhere">bad anchor</a>'
        '<a href="lessons/missing.html">missing</a><img src="_images/missing.png"><a href="#top">ok</a>'
        '<p id="top"></p><a href="https://example.org/">outside: not checked here</a>')
    (tmp_path / "lessons" / "a.html").write_text('<h2 id="goals">Goals</h2><a href="../index.html#top">up</a>')
    broken = broken_links(tmp_path)
    assert sorted(broken) == sorted(["index.html: lessons/a.html#nowhere (no element with id 'nowhere')",
                                     "index.html: lessons/missing.html (no such file)",
                                     "index.html: _images/missing.png (no such file)"])


def test_hidden_tests_are_cut_with_their_markers():
    source = "check(f)\n### BEGIN HIDDEN TESTS\nassert secret(f)\n### END HIDDEN TESTS\nprint('done')\n"
    assert build_site.strip_hidden_tests(source, "x") == "check(f)\nprint('done')"
    with pytest.raises(build_site.SiteError, match="never closed"):
        build_site.strip_hidden_tests("### BEGIN HIDDEN TESTS\nassert secret(f)\n", "lesson.ipynb, cell 3")
    with pytest.raises(build_site.SiteError, match="without ### BEGIN HIDDEN TESTS"):
        build_site.strip_hidden_tests("### END HIDDEN TESTS\n", "lesson.ipynb, cell 3")


def _with_widget_views():
    for path in LESSONS:
        nb = _notebook(path)
        if any(o.get("data", {}).get(build_site.WIDGET_VIEW) for c in nb["cells"] for o in c.get("outputs", [])):
            return path, nb
    pytest.skip("no lesson displays a widget")


def test_a_lesson_saved_without_its_widget_state_fails_the_build(tmp_path, monkeypatch, capsys):
    path, nb = _with_widget_views()
    del nb["metadata"]["widgets"]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / path.name).write_text(json.dumps(nb))
    monkeypatch.setattr(build_site, "NOTEBOOKS", folder)
    monkeypatch.setattr(build_site, "BUILD", tmp_path / "build")
    assert build_site.main(["--out", str(tmp_path / "site")]) == 1
    message = capsys.readouterr().err
    assert path.name in message and "stores no state" in message
    assert "Save Widget State" in message and "run_notebooks.py" in message  # the fix
    assert not (tmp_path / "site").exists()


def test_kernel_widgets_become_their_static_copy_and_browser_widgets_stay():
    """A widget whose picture Python draws shows its PNG and label; one held together by jslink stays live."""
    def ref(i):
        return f"IPY_MODEL_{i}"

    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": [ref("slider"), ref("image")], "layout": ref("lay")}},
        "slider": {"model_name": "FloatSliderModel", "state": {"value": 0.5}},
        "image": {"model_name": "ImageModel", "state": {}},
        "lay": {"model_name": "LayoutModel", "state": {}},
        "box2": {"model_name": "VBoxModel", "state": {"children": [ref("play"), ref("slider2")]}},
        "play": {"model_name": "PlayModel", "state": {}},
        "slider2": {"model_name": "IntSliderModel", "state": {}},
        "link": {"model_name": "LinkModel", "state": {"source": [ref("play"), "value"], "target": [ref("slider2"), "value"]}},
        "unused": {"model_name": "LayoutModel", "state": {}},
    }
    view = build_site.WIDGET_VIEW
    nb = {"metadata": {"widgets": {build_site.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}},
          "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
              {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
               "data": {view: {"model_id": "box"}, "image/png": "iVBORw0KGgo=", "text/plain": ["Static copy:\n", "mu = 0.50"]}},
              {"output_type": "display_data", "metadata": {},
               "data": {view: {"model_id": "box2"}, "image/png": "iVBORw0KGgo=", "text/plain": "linked"}}]}]}
    assert build_site.static_copies(nb) == 1
    first, live = nb["cells"][0]["outputs"]
    assert first["data"] == {"image/png": "iVBORw0KGgo="}
    assert live["data"][view] == {"model_id": "box2"}
    kept = nb["metadata"]["widgets"][build_site.WIDGET_STATE]["state"]
    assert set(kept) == {"box2", "play", "slider2", "link"}  # the jslink too, though no view refers to it
    assert build_site.runs_without_kernel(state, "box2") and not build_site.runs_without_kernel(state, "box")
    # two images in the cell: which one the label describes is not for a cell-wide alt text to say
    assert "mystnb" not in nb["cells"][0]["metadata"]
    nb["cells"][0]["outputs"] = [{"output_type": "execute_result", "metadata": {}, "execution_count": 1,
                                  "data": {view: {"model_id": "box"}, "image/png": "iVBORw0KGgo=",
                                           "text/plain": ["Static copy:\n", "mu = 0.50"]}}]
    nb["metadata"]["widgets"] = {build_site.WIDGET_STATE: {"state": state}}
    assert build_site.static_copies(nb) == 1
    assert nb["cells"][0]["metadata"]["mystnb"]["image"] == {"alt": "Static copy: mu = 0.50"}


def test_the_api_reference_lists_every_public_module():
    public = {p.stem for p in (ROOT / "vae_lite").glob("*.py") if not p.stem.startswith("_")}
    assert set(build_site.API_MODULES) == public
    assert len(build_site.API_MODULES) == len(public)  # none twice


# ---------------------------------------------------------------- the built site, without a browser


@pytest.mark.slow
def test_the_site_loads_nothing_from_outside(site):
    assert external_loads(site) == []
    for rel in ("_static/npm/mathjax/tex-mml-chtml.js", "_static/npm/require.js",
                "_static/npm/@jupyter-widgets/html-manager/dist/embed-amd.js"):
        assert (site / rel).is_file(), f"{rel} is not in the site"
    lesson = (site / "lessons" / f"{LESSONS[0].stem}.html").read_text()
    assert re.search(r'<script[^>]+src="\.\./_static/npm/mathjax/tex-mml-chtml\.js', lesson)


@pytest.mark.slow
def test_every_internal_link_and_image_resolves(site):
    assert broken_links(site) == []
    names = {p.relative_to(site).as_posix() for p in pages(site)}
    expected = {"index.html", "notation.html", "instructors.html", "api/index.html"}
    expected |= {f"lessons/{p.stem}.html" for p in LESSONS}
    expected |= {f"api/{m}.html" for m in build_site.API_MODULES}
    assert expected <= names, f"pages missing: {sorted(expected - names)}"


@pytest.mark.slow
def test_solutions_are_folded_and_hidden_tests_left_out(site):
    from bs4 import BeautifulSoup

    for path in LESSONS:
        nb = _notebook(path)
        soup = BeautifulSoup((site / "lessons" / f"{path.stem}.html").read_text(), "html.parser")
        folded_code = soup.select("details.hide.above-input")
        prompts = [d.select_one("summary").get_text(" ", strip=True) for d in folded_code]
        solutions = _folded(nb, "code", solution=True)
        assert sum("Show solution" in p for p in prompts) == len(solutions), path.name
        text = unescape(soup.get_text())
        hidden, shown = [], []
        for cell in nb["cells"]:
            parts = re.split(f"{build_site.HIDDEN_BEGIN}|{build_site.HIDDEN_END}", _source(cell))
            hidden += parts[1::2]  # between a BEGIN and its END
            shown += parts[0::2]
        shown = "\n".join(shown)
        # the hidden tests' own lines (those that appear nowhere else in the lesson) are not on the page
        lines = {line.strip() for block in hidden for line in block.splitlines()
                 if len(line.strip()) > 20 and line.strip() not in shown}
        assert lines or not hidden, f"{path.name}: hidden tests with no line of their own"
        for line in lines:
            assert line not in text, f"{path.name}: hidden test shown: {line}"
        assert "HIDDEN TESTS" not in text, path.name
        # every solution's own lines are on the page, inside a fold
        folded_text = " ".join(d.get_text() for d in folded_code)
        for cell in solutions:
            body = _source(cell).split("### BEGIN SOLUTION", 1)[-1].split("### END SOLUTION", 1)[0]
            for line in (x.strip() for x in body.splitlines() if x.strip()):
                assert line in folded_text, f"{path.name}: solution line not folded: {line}"
        answers = soup.select("details.vae-folded")
        assert len(answers) == len(_folded(nb, "markdown", solution=True)), path.name
        assert all(a.select_one("summary").get_text(strip=True) == "Show the model answer" for a in answers)


@pytest.mark.slow
def test_the_landing_page_maps_every_lesson_with_its_goals(site):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((site / "index.html").read_text(), "html.parser").find("article")  # not the sidebar
    for path in LESSONS:
        first = _source(_notebook(path)["cells"][0]).splitlines()
        title = next(line[2:].strip() for line in first if line.startswith("# "))
        start = next(i for i, line in enumerate(first) if "**Learning goals.**" in line)
        goals = [line for line in first[start:] if re.match(r" {0,3}(\d+\.|[*-]) ", line)]
        link = soup.find("a", href=f"lessons/{path.stem}.html")
        assert link is not None and link.get_text(strip=True) == title, path.name
        items = link.find_parent("section").select("ol > li, ul > li")
        assert len(items) == len(goals), f"{path.name}: {len(items)} goals on the page, {len(goals)} in the lesson"
    text = " ".join(soup.get_text().split())
    assert "make lessons" in text and "python -m http.server -d site" in text


@pytest.mark.slow
def test_each_lesson_page_links_its_notebook(site):
    from bs4 import BeautifulSoup

    for path in LESSONS:
        page = site / "lessons" / f"{path.stem}.html"
        soup = BeautifulSoup(page.read_text(), "html.parser")
        hrefs = [a["href"] for a in soup.select("a[href]") if urlsplit(a["href"]).path.endswith(path.name)]
        assert hrefs, f"{page.name} has no link to {path.name}"
        for href in hrefs:
            target = (page.parent / urlsplit(href).path).resolve()
            copy = _notebook(target)
            committed = _notebook(path)
            assert [c["cell_type"] for c in copy["cells"] if c["cell_type"] == "code"] == \
                   [c["cell_type"] for c in committed["cells"] if c["cell_type"] == "code"]
            assert build_site.HIDDEN_BEGIN not in target.read_text()


# ---------------------------------------------------------------- the built site in Chromium


class _Guard:
    """Blocks and counts every request that leaves the loopback interface; records failures and errors."""

    def __init__(self):
        self.external, self.failed, self.errors = [], [], []

    def route(self, route):
        url = urlsplit(route.request.url)
        if url.scheme in ("file", "data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def watch(self, page):
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        # a request cut short by leaving the page (net::ERR_ABORTED) is not a fault; a missing file answers 404
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and self.failed.append(f"failed {r.url}: {r.failure}"))
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))


def _read_page(page, url, name, screenshot):
    """Open ``url``, wait for MathJax and the widgets, and check what a reader sees."""
    page.goto(url, wait_until="load", timeout=60_000)
    has_math = page.locator(".math").count() > 0
    if has_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
        page.evaluate("() => MathJax.startup.promise")
        assert page.locator("mjx-container").count() > 0, f"{name}: MathJax rendered nothing"
        errors = page.eval_on_selector_all("mjx-merror", "els => els.map(e => e.getAttribute('data-mjx-error'))")
        assert errors == [], f"{name}: TeX that MathJax could not read: {errors[:5]}"
    views = page.locator(VIEW_SCRIPT).count()
    if views:  # each saved widget view is rendered by the HTML manager just before its script tag
        page.wait_for_function(
            """sel => [...document.querySelectorAll(sel)].every(s => {
                   const p = s.previousElementSibling;
                   return p && p.classList.contains('widget-subarea') && p.querySelector('.jupyter-widgets'); })""",
            arg=VIEW_SCRIPT, timeout=30_000)
    page.evaluate("() => document.fonts.ready.then(() => true)")  # MathJax's and the theme's fonts
    assert page.locator(".jupyter-widgets-error-widget").count() == 0, f"{name}: a widget shows an error"
    text = page.evaluate("() => document.body.innerText")
    assert "$$" not in text and "\\(" not in text and "\\[" not in text, f"{name}: raw TeX in the text"
    broken = page.evaluate(
        "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
    assert broken == [], f"{name}: images that did not load: {broken}"
    if screenshot:  # the first widget, or else the first static copy of one (its label under its picture)
        if views:
            page.locator(".widget-subarea").first.scroll_into_view_if_needed()
        else:
            page.evaluate("""() => { const label = [...document.querySelectorAll('.cell_output pre')]
                .find(p => p.innerText.startsWith('Static copy of the widget'));
                if (label) label.scrollIntoView({block: 'end'}); }""")
        page.screenshot(path=screenshot)
    return {"maths": page.locator("mjx-container").count(), "images": page.evaluate("() => document.images.length"),
            "widgets": views}


def _move_kernel_free_sliders(page, screenshot):
    """Move the first slider of every live widget on the page open in ``page`` by one step (ArrowRight).

    On the site only widgets that run without a kernel stay live (``build_site.static_copies``), so
    each one's visible picture must change with no Python behind it. Returns ``[(before, after)]``,
    the visible images' sources (their last characters) of each widget around the move.
    """
    areas = page.locator(".widget-subarea:has(.noUi-handle)")
    moves = []
    for k in range(areas.count()):
        area = areas.nth(k)
        visible = "a => [...a.querySelectorAll('img')].filter(i => i.offsetParent !== null).map(i => i.src.slice(-48))"
        area.scroll_into_view_if_needed()
        before = area.evaluate(visible)
        area.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        deadline = time.monotonic() + 10
        after = area.evaluate(visible)
        while after == before and time.monotonic() < deadline:
            time.sleep(0.05)
            after = area.evaluate(visible)
        moves.append((before, after))
        if k == 0:
            page.screenshot(path=screenshot)
    return moves


@pytest.mark.browser
@pytest.mark.slow
def test_every_page_renders_offline_in_chromium(site, tmp_path):
    from playwright.sync_api import sync_playwright

    from support.browser import (
        ARTIFACTS,
        free_port,
        launch_chromium,
        missing_tools,
        start_server,
        stop_server,
    )

    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    server = start_server([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(site)],
                          tmp_path, None, tmp_path / "http.log")
    base = f"http://127.0.0.1:{port}/"
    guard = _Guard()
    start = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                context.route("**/*", guard.route)
                page = context.new_page()
                guard.watch(page)
                deadline = time.monotonic() + 30
                while True:  # the server is up once it answers
                    try:
                        page.goto(base, timeout=5_000)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.3)
                counts = {}
                others = ["index", "notation", "instructors", "api/index", f"api/{build_site.API_MODULES[0]}"]
                for name in [f"lessons/{p.stem}" for p in LESSONS] + others:
                    shot = ARTIFACTS / f"site_{name.replace('/', '_')}.png"
                    counts[name] = _read_page(page, base + name + ".html", name, shot)
                # the sliders of the widgets that run without a kernel move their pictures (lesson 8's walks)
                moves = {}
                for lesson in ("04_elbo", "07_mean_field_vs_amortized", "08_latent_explorer"):
                    _read_page(page, base + f"lessons/{lesson}.html", lesson, None)
                    moves[lesson] = _move_kernel_free_sliders(page, ARTIFACTS / f"site_lessons_{lesson}_slider_moved.png")
                # the same lesson opened from the file system, without a server
                widget_lessons = [n for n, c in counts.items() if c["widgets"]] or [f"lessons/{LESSONS[0].stem}"]
                for name in widget_lessons[:1]:
                    counts["file://" + name] = _read_page(page, (site / f"{name}.html").as_uri(), "file://" + name,
                                                          ARTIFACTS / "site_file_url.png")
                # control: the guard does see a page reaching outside (and blocks it)
                seen, failed = len(guard.external), len(guard.failed)
                probe = tmp_path / "probe.html"
                probe.write_text('<img src="https://cdn.example.org/probe.png">')
                page.goto(probe.as_uri(), wait_until="load")
                control = guard.external[seen:]
                del guard.external[seen:], guard.failed[failed:]  # the blocked request also fails
            finally:
                browser.close()
    finally:
        stop_server(server)
    assert control == ["https://cdn.example.org/probe.png"], control
    seconds = time.perf_counter() - start
    print(f"{len(counts)} pages read in Chromium in {seconds:.1f} s; external requests blocked: {len(guard.external)}")
    for name, c in counts.items():
        print(f"  {name}: {c['maths']} formulas, {c['images']} images, {c['widgets']} live widgets")
    assert guard.external == [], f"{len(guard.external)} requests left the machine: {guard.external[:5]}"
    assert guard.failed == [], f"requests that failed: {guard.failed[:10]}"
    assert guard.errors == [], f"script errors: {guard.errors[:5]}"
    # lesson 4's ELBO frames, the gap picture, lesson 8's three walks
    expected = {"04_elbo": 1, "07_mean_field_vs_amortized": 1, "08_latent_explorer": 3}
    assert {lesson: len(m) for lesson, m in moves.items()} == expected, moves
    for lesson, widget_moves in moves.items():
        for before, after in widget_moves:
            assert before and after != before, f"{lesson}: a kernel-free slider moved but its picture stayed: {before}"
    lesson_maths = [c["maths"] for n, c in counts.items() if n.startswith("lessons/")]
    assert all(m > 0 for m in lesson_maths), counts
