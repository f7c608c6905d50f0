"""Build the course website (``make site``): the committed, executed lessons as offline HTML pages.

Steps, each of which can fail the build with a message that names the file and the fix:

1. *Stage* the Sphinx sources in ``build/site-src/``: this folder's pages, the eight lessons
   (``notebooks/*.ipynb``, never executed here) prepared for reading (see :func:`prepare_notebook`),
   the lesson map from each lesson's first cell, the README's notation table and instructors' guide,
   and one API page per public ``vae_lite`` module.
2. *Vendor* every script the pages load (MathJax, require.js, the Jupyter widgets' HTML manager,
   which renders the widget state the notebooks store without a kernel) from the npm registry into
   ``build/npm-cache/`` (checked against pinned sha512 digests; fetched once) and from there into
   the site's ``_static/npm/``: a page never loads anything from a CDN.
3. Run ``sphinx-build -W --keep-going`` into ``site/``, then check that every internal link and
   image of the built pages resolves to a file of the site (:func:`broken_links`).

Usage: ``python site_src/build_site.py [--out site]``.
"""

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

SITE_SRC = Path(__file__).resolve().parent
sys.path.insert(0, str(SITE_SRC))

from site_checks import broken_links  # noqa: E402

ROOT = SITE_SRC.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"  # the staged sources, Sphinx's own output and doctrees (``work`` of :func:`build`)
NPM_CACHE = BUILD / "npm-cache"  # the npm packages, fetched once
NPM_REGISTRY = "https://registry.npmjs.org"

# The public modules whose docstrings make the API reference: the core modules, then the lessons'
# (tests/test_site.py checks that every public module of vae_lite is here).
API_MODULES = ["distributions", "networks", "training", "checkpoints", "zoo", "data", "plotting", "widgets",
               "grading", "classifier",
               "factorization", "sampling", "fixed_codes", "posterior", "naive_mc", "elbo", "reparam",
               "beta_sweep", "inference", "gaps", "explorer"]

# npm packages the pages load: (name, version, sha512 integrity from the registry, what to copy where).
# MathJax 3's CommonHTML bundle finds its fonts and extensions beside itself; the speech-rule
# engine (sre) and the SVG outputs are left out (3.9 MB that no page asks for).
VENDOR = [
    ("mathjax", "3.2.2",
     "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
     {"es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js", "es5/input/": "mathjax/input/",
      "es5/output/chtml/": "mathjax/output/chtml/", "es5/output/chtml.js": "mathjax/output/chtml.js",
      "es5/ui/": "mathjax/ui/", "es5/a11y/": "mathjax/a11y/", "es5/adaptors/": "mathjax/adaptors/",
      "LICENSE": "mathjax/LICENSE"}),
    ("requirejs", "2.3.8",
     "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
     {"require.js": "require.js"}),
    ("@jupyter-widgets/html-manager", "1.0.14",
     "sha512-wglgQQ+VMj+MBKkTttdeoMtOah/H2A1w5GU1OAVXmDQqZYTK6C+oHZjQMxcNezIpiqUjC1YHKOo5XdP3ENvBng==",
     {"dist/embed-amd.js": "@jupyter-widgets/html-manager/dist/embed-amd.js",
      "dist/embed.js.LICENSE.txt": "@jupyter-widgets/html-manager/dist/LICENSE.txt",
      # the Font Awesome files the manager's CSS refers to, next to it
      **{f"dist/*.{ext}": "@jupyter-widgets/html-manager/dist/" for ext in ("woff2", "woff", "ttf", "eot", "svg")}}),
]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SAVE_COMMAND = ("env -u VAE_LITE_DATA -u VAE_LITE_DATASET VAE_LITE_TRAINING=forbid "
                ".venv/bin/python benchmarks/run_notebooks.py --cold --write {path}")


class SiteError(RuntimeError):
    """The site cannot be built from the sources as they are; the message names the file and the fix."""


# ---------------------------------------------------------------- vendored scripts


def _npm_tarball(name, version, integrity):
    """The package's .tgz bytes, from ``build/npm-cache/`` or the npm registry, checked against ``integrity``."""
    base = name.split("/")[-1]
    cached = NPM_CACHE / f"{name.replace('/', '+')}-{version}.tgz"
    algorithm, _, digest = integrity.partition("-")
    want = base64.b64decode(digest)
    if cached.exists() and hashlib.new(algorithm, cached.read_bytes()).digest() == want:
        return cached.read_bytes()
    url = f"{NPM_REGISTRY}/{name}/-/{base}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise SiteError(f"could not fetch {name}@{version} from {url} ({err}); the site vendors it once into "
                        f"{cached.parent} (build-time only). Fix: connect to the npm registry once, or copy "
                        f"{cached.name} there.") from err
    if hashlib.new(algorithm, data).digest() != want:
        raise SiteError(f"{url}: the download does not match the pinned {algorithm} digest; not used")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


def vendor(static_dir):
    """Copy the pages' scripts, fonts and styles from the pinned npm packages into ``static_dir/npm``."""
    target = static_dir / "npm"
    wanted = {}
    for name, version, integrity, files in VENDOR:
        with tarfile.open(fileobj=io.BytesIO(_npm_tarball(name, version, integrity)), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                inner = member.name.split("/", 1)[1]  # drop the tarball's "package/"
                for pattern, dest in files.items():
                    if pattern.endswith("/") and inner.startswith(pattern):
                        out = dest + inner[len(pattern):]
                    elif "*" in pattern and Path(inner).match(pattern) and inner.count("/") == pattern.count("/"):
                        out = dest + Path(inner).name
                    elif inner == pattern:
                        out = dest
                    else:
                        continue
                    wanted[out] = tar.extractfile(member).read()
                    break
    for rel, data in wanted.items():
        write_if_changed(target / rel, data)
    return target


# ---------------------------------------------------------------- notebooks


def write_if_changed(path, data):
    """Write ``data`` (str or bytes) to ``path`` unless it holds exactly that (keeps Sphinx's rebuilds incremental)."""
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def check_widget_state(nb, path):
    """Refuse a notebook that displays a widget whose state it does not store (the page would show nothing)."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id") not in state:
                rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                raise SiteError(
                    f"{rel}: cell {index} displays widget {view.get('model_id')} but the notebook stores no state "
                    f"for it, so the site would show nothing there. Fix: execute the lesson and save it with its "
                    f"widget state: {SAVE_COMMAND.format(path=rel)} (in JupyterLab: Settings > Save Widget State "
                    f"Automatically, then run all cells and save).")


def _widget_refs(value):
    """The model ids a widget state value refers to (``"IPY_MODEL_<id>"`` strings, in lists and dicts too)."""
    if isinstance(value, str):
        return [value[len("IPY_MODEL_"):]] if value.startswith("IPY_MODEL_") else []
    if isinstance(value, list):
        return [ref for item in value for ref in _widget_refs(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _widget_refs(item)]
    return []


def _reachable(state, roots):
    """The model ids reachable from ``roots`` through the references in their states."""
    seen, todo = set(), list(roots)
    while todo:
        model = todo.pop()
        if model in seen or model not in state:
            continue
        seen.add(model)
        todo += _widget_refs(state[model].get("state", {}))
    return seen


def runs_without_kernel(state, model_id):
    """Whether the widget ``model_id`` responds to its controls in a page with no Python kernel.

    True where its controls drive its picture in the browser: a ``jslink`` (a LinkModel between two of
    its models), a ``Stack`` of precomputed views, or an anywidget's own JavaScript (``_esm``).
    """
    tree = _reachable(state, [model_id])
    for model in tree:
        entry = state[model]
        if entry.get("model_name") == "StackModel" or "_esm" in entry.get("state", {}):
            return True
    for entry in state.values():
        if entry.get("model_name") in ("LinkModel", "DirectionalLinkModel"):
            ends = _widget_refs(entry.get("state", {}))
            if ends and all(end in tree for end in ends):
                return True
    return False


def static_copies(nb):
    """Show a widget that needs a kernel as its labelled static copy; keep only the state still shown.

    A vae-lite widget's output carries, beside its widget view, a PNG of its picture and a text
    naming its slider values and readouts (``widgets.View``'s static copy). Without a kernel its
    sliders would move and its picture would not, so the page shows the static copy instead (the
    picture, with its slider values and readouts drawn under it; the text is also its alt text); widgets that run in the browser, and widgets without a static copy
    (progress bars), stay live. The stored widget state is cut to the models still displayed.
    Returns the number of widgets replaced.
    """
    meta = nb.get("metadata", {})
    state = meta.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced, live = 0, []
    for cell in nb["cells"]:
        outputs, alts = [], []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
            elif "image/png" in data and not runs_without_kernel(state, view.get("model_id")):
                replaced += 1
                outputs.append({"output_type": "display_data", "metadata": {}, "data": {"image/png": data["image/png"]}})
                label = " ".join(_source({"source": data.get("text/plain", "")}).split())
                if label:  # the picture carries its label; the same text is its alt text (one image per cell)
                    alts.append(label)
            else:
                live.append(view.get("model_id"))
                outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
        images = [o for o in outputs if any(m.startswith("image/") for m in o.get("data", {}))]
        if len(alts) == 1 and len(images) == 1:
            cell.setdefault("metadata", {}).setdefault("mystnb", {})["image"] = {"alt": alts[0]}
    if state:
        keep = _reachable(state, live)
        # a jslink is its own model, referred to by no view: keep those between models still shown
        keep |= {k for k, v in state.items() if v.get("model_name") in ("LinkModel", "DirectionalLinkModel")
                 and _widget_refs(v.get("state", {})) and set(_widget_refs(v.get("state", {}))) <= keep}
        if keep:
            meta["widgets"][WIDGET_STATE]["state"] = {k: v for k, v in state.items() if k in keep}
        else:
            del meta["widgets"]
    return replaced


def strip_hidden_tests(source, where):
    """``source`` without its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` blocks (markers included)."""
    kept, hiding = [], False
    for line in source.splitlines(keepends=True):
        marker = line.strip()
        if marker == HIDDEN_BEGIN:
            if hiding:
                raise SiteError(f"{where}: {HIDDEN_BEGIN} twice without {HIDDEN_END} between")
            hiding = True
        elif marker == HIDDEN_END:
            if not hiding:
                raise SiteError(f"{where}: {HIDDEN_END} without {HIDDEN_BEGIN} before it")
            hiding = False
        elif not hiding:
            kept.append(line)
    if hiding:
        raise SiteError(f"{where}: {HIDDEN_BEGIN} is never closed by {HIDDEN_END}; the hidden tests would show")
    return "".join(kept).rstrip("\n")


def prepare_notebook(nb, path, download_name):
    """The lesson as its page shows it; ``nb`` (an nbformat 4 dict) is changed in place and returned.

    Solution cells (code the lesson folds away, ``metadata.jupyter.source_hidden``) are folded
    behind a "Show solution" toggle (myst-nb's ``hide-input`` tag), the checks that follow them
    behind "Show the check"; hidden tests are removed from the source; model answers to written
    questions (folded markdown cells) go into a ``<details>`` block. A widget that needs a kernel is
    shown as its labelled static copy (:func:`static_copies`). A line under the title links the
    notebook for download.
    """
    check_widget_state(nb, path)
    static_copies(nb)
    for index, cell in enumerate(nb["cells"]):
        where = f"{path.name}, cell {index}"
        meta = cell.setdefault("metadata", {})
        source = _source(cell)
        if HIDDEN_BEGIN in source or HIDDEN_END in source:
            source = strip_hidden_tests(source, where)
        folded = meta.get("jupyter", {}).get("source_hidden", False)
        grader = meta.get("nbgrader", {})
        if cell["cell_type"] == "code" and folded:
            tags = meta.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
            if grader.get("solution"):
                prompt = ("Show solution", "Hide solution")
            elif grader.get("grade"):
                prompt = ("Show the check", "Hide the check")
            else:
                prompt = ("Show code", "Hide code")
            meta.setdefault("mystnb", {}).update(code_prompt_show=prompt[0], code_prompt_hide=prompt[1])
        elif cell["cell_type"] == "markdown" and folded:
            summary = "Show the model answer" if grader.get("solution") else "Show more"
            source = (f'<details class="vae-folded">\n<summary>{summary}</summary>\n\n{source}\n\n</details>')
        cell["source"] = source
    # the copy Sphinx keeps of each page's source (html_copy_source), which the theme's download button offers too
    link = (f'*Download this lesson as a notebook: <a class="reference download" '
            f'href="../_sources/lessons/{download_name}" download>{download_name}</a> '
            f"(to run it: `make lessons`, see [how to run the course](../index.md#running-the-lessons)).*")
    nb["cells"].insert(1, {"cell_type": "markdown", "id": "vae-site-download", "metadata": {}, "source": link})
    return nb


def lesson_summary(nb, path):
    """(title, goals markdown, minutes the committed run took) from a lesson's first cell and its timings."""
    first = _source(nb["cells"][0])
    title = re.search(r"^#\s+(.+)$", first, re.M)
    if title is None:
        raise SiteError(f"{path.name}: its first cell has no '# Lesson N — title' heading; the lesson map needs one")
    goals = re.search(r"\*\*Learning goals\.\*\*.*?\n\n?((?:[ \t]*(?:\d+\.|[*-]) .*\n?(?:[ \t]+\S.*\n?)*)+)",
                      first, re.S)
    if goals is None:
        raise SiteError(f"{path.name}: its first cell has no '**Learning goals.**' followed by a list; "
                        f"the lesson map on the landing page shows them. Fix: add them to the first cell.")
    stamps = [c["metadata"].get("execution", {}) for c in nb["cells"] if c["cell_type"] == "code"]
    stamps = [(s.get("iopub.execute_input"), s.get("shell.execute_reply")) for s in stamps]
    stamps = [s for s in stamps if all(s)]
    minutes = None
    if stamps:
        from datetime import datetime
        start = datetime.fromisoformat(stamps[0][0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(stamps[-1][1].replace("Z", "+00:00"))
        minutes = (end - start).total_seconds() / 60
    return title.group(1).strip(), goals.group(1).rstrip(), minutes


# ---------------------------------------------------------------- README parts


def readme_section(heading, stop_level=2):
    """The README's text under ``heading`` (a ``## `` line) up to the next heading of ``stop_level`` or higher."""
    lines = (ROOT / "README.md").read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## ") and heading in line)
    except StopIteration:
        raise SiteError(f"README.md has no '## {heading}' section; the site's page for it needs one") from None
    end = next((i for i in range(start + 1, len(lines))
                if re.match(r"#{1,%d} " % stop_level, lines[i])), len(lines))
    # the page's own title is the section's heading, so its sub-sections move up one level
    body = "\n".join(re.sub(r"^#(#+ )", r"\1", line) for line in lines[start + 1:end]).strip() + "\n"
    # repository paths written as links would not resolve on the site: keep their text
    return re.sub(r"\[([^\]]+)\]\((?!https?://|#)[^)]+\)", r"\1", body)


# ---------------------------------------------------------------- staging and build


def stage(target):
    """Assemble the Sphinx sources in ``target``; returns the list of lesson notebooks used."""
    for item in SITE_SRC.iterdir():
        if item.name in ("build_site.py", "site_checks.py", "__pycache__"):
            continue
        if item.is_dir():
            for f in item.rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    write_if_changed(target / f.relative_to(SITE_SRC), f.read_bytes())
        else:
            write_if_changed(target / item.name, item.read_bytes())
    lessons = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not lessons:
        raise SiteError(f"no lessons (NN_name.ipynb) in {NOTEBOOKS}")
    rows = []
    for path in lessons:
        nb = json.loads(path.read_text())
        title, goals, minutes = lesson_summary(nb, path)
        prepare_notebook(nb, path, path.name)
        write_if_changed(target / "lessons" / path.name, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        run = (f" Running it takes about {minutes:.1f} min of computing (the saved run: MNIST, the shipped"
               f" models, from a cold start)." if minutes else "")
        rows.append(f"### [{title}](lessons/{path.stem}.ipynb)\n\n`{path.name}`.{run}"
                    f" After it you can\n\n{goals}\n")
    generated = target / "_generated"
    write_if_changed(generated / "lesson_map.md", "\n".join(rows))
    write_if_changed(generated / "notation.md", readme_section("Notation"))
    write_if_changed(generated / "instructors.md", readme_section("For instructors", stop_level=2))
    write_if_changed(generated / "lesson_toctree.md",
                     "```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Lessons\n\n"
                     + "\n".join(f"lessons/{p.stem}" for p in lessons) + "\n```\n")
    for module in API_MODULES:
        write_if_changed(target / "api" / f"{module}.rst",
                         f"``vae_lite.{module}``\n{'=' * (len(module) + 13)}\n\n"
                         f".. automodule:: vae_lite.{module}\n   :members:\n   :show-inheritance:\n")
    write_if_changed(generated / "api_toctree.md",
                     "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(f"{m}" for m in API_MODULES) + "\n```\n")
    return lessons


def build(out, quiet=True, work=None):
    """Stage, vendor and build the site into ``out``; returns the seconds it took. Raises SiteError.

    ``work`` (default ``build/``) holds the staged sources, Sphinx's output and its doctrees.
    """
    start = time.perf_counter()
    work = Path(work or BUILD)
    sources, html = work / "site-src", work / "site-html"
    for stale in (sources, html):  # a lesson or file removed since the last build must not linger
        if stale.exists():
            shutil.rmtree(stale)
    stage(sources)
    vendor(sources / "_static")
    # -E: every page is read again, so a warning of an unchanged page still fails the build.
    # myst-nb writes output images beside the output folder (../jupyter_execute), so Sphinx writes
    # into work/site-html and the finished site is copied to ``out``.
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-j", "1",
           "-d", str(work / "site-doctrees"), str(sources), str(html)]
    if quiet:
        cmd.insert(3, "-q")
    result = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if result.returncode:
        raise SiteError(f"sphinx-build failed (exit {result.returncode}): the warnings above name each file")
    broken = broken_links(html)
    if broken:
        listing = "\n  ".join(broken[:30])
        raise SiteError(f"{len(broken)} internal link(s) or image(s) of the built site point nowhere:\n  {listing}")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "site"), help="output folder (default: site/)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    try:
        seconds = build(Path(args.out), quiet=not args.verbose)
    except SiteError as err:
        print(f"make site: {err}", file=sys.stderr)
        return 1
    print(f"site built in {seconds:.1f} s: open {Path(args.out) / 'index.html'} through a local server, "
          f"e.g. python -m http.server -d {args.out} (then http://127.0.0.1:8000/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
