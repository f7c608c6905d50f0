"""The browser helpers under their old name, for the browser tests that still import ``_browser``
(``test_jupyterlab.py``, ``test_site.py``); they live in ``support/browser.py``, shared with the
benchmarks. New code imports ``support.browser``."""

from support.browser import (  # noqa: F401
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE,
    READOUT,
    free_port,
    image_src,
    launch_chromium,
    missing_tools,
    start_server,
    start_voila,
    stop_server,
    type_into_readout,
    write_notebook,
)
