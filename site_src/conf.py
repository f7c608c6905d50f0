"""Sphinx configuration of the course website (``make site``; sources staged by ``build_site.py``).

The lessons are the committed, executed notebooks: nothing is executed at build time. Every
script a page loads is served from the site itself (``_static/npm/``, filled by ``build_site.py``
from pinned npm packages): MathJax 3, require.js and the Jupyter widgets' HTML manager.
"""

project = "vae-lite"
author = "the vae-lite authors"
copyright = "the vae-lite authors; MNIST by LeCun, Cortes and Burges (CC BY-SA 3.0)"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_generated/**", "_build", "**.ipynb_checkpoints"]
suppress_warnings = []

# ---- notebooks: read as committed, never executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# ---- offline: every script from _static/npm (relative paths are served from _static/)
mathjax_path = "npm/mathjax/tex-mml-chtml.js"
mathjax_config_path = "_static/mathjax-config.js"  # MathJax 3's options, and MathJax 2's Hub.Queue for the widgets
nb_ipywidgets_js = {
    "npm/require.js": {},
    "widgets-assets.js": {},  # where embed-amd.js finds its Font Awesome files: beside it
    # The built-in widgets are inside embed-amd.js. Its "CDN" is the site's own copy of the npm
    # layout, relative to the pages that show widgets (the lessons, one folder down): any module
    # other than the built-in ones would be looked up there, never online.
    "npm/@jupyter-widgets/html-manager/dist/embed-amd.js": {
        "data-jupyter-widgets-cdn": "../_static/npm/", "data-jupyter-widgets-cdn-only": "true"},
}

# ---- autodoc: the public functions of vae_lite, with their docstrings (Google style)
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# ---- theme: sphinx-book-theme, its own fonts and styles (bundled in the package)
html_theme = "sphinx_book_theme"
html_title = "vae-lite"
html_static_path = ["_static"]
html_css_files = ["vae-site.css"]
html_sourcelink_suffix = ""  # the download button offers lessons/NN_name.ipynb itself
html_last_updated_fmt = None
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
napoleon_use_ivar = True  # a NamedTuple's "Attributes:" as fields: no second description of each field


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write |x| for an absolute value; reStructuredText would read a substitution."""
    import re

    lines[:] = [re.sub(r"(?<![\\|])\|(\w+)\|(?!\|)", r"\\|\1\\|", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
