"""Checks over a built site's HTML and CSS files, without a browser or a network.

Used by ``build_site.py`` (a broken internal link fails ``make site``) and by ``tests/test_site.py``.
"""

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# What a page loads (must be local) and what it links to (must resolve when local).
_LOADS = {("script", "src"), ("link", "href"), ("img", "src"), ("source", "src"), ("iframe", "src"),
          ("video", "src"), ("audio", "src"), ("embed", "src")}
_LINKS = {("a", "href")}
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.loads, self.links, self.ids, self.styles = [], [], set(), []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for (t, attr) in _LOADS:
            if tag == t and attrs.get(attr):
                rel = (attrs.get("rel") or "").lower()
                # <link rel="index|search|next|prev|canonical"> are navigation, not loads
                if tag == "link" and not any(r in rel for r in ("stylesheet", "preload", "icon", "modulepreload")):
                    self.links.append(attrs[attr])
                else:
                    self.loads.append(attrs[attr])
        for (t, attr) in _LINKS:
            if tag == t and attrs.get(attr):
                self.links.append(attrs[attr])
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def pages(site):
    """The site's HTML pages (not the theme's template fragments under ``_static/``, nor copied sources)."""
    site = Path(site)
    return sorted(p for p in site.rglob("*.html")
                  if p.relative_to(site).parts[0] not in ("_static", "_sources", "_downloads"))


def parse_page(path):
    """The references of one HTML page: ``(loads, links, ids, inline styles)``."""
    parser = _Refs()
    parser.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    return parser.loads, parser.links, parser.ids, parser.styles


def css_urls(text):
    """Every ``url(...)`` and ``@import`` target in CSS ``text`` (comments removed first)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return [m.group(2) or m.group(4) for m in _CSS_URL.finditer(text)]


def is_external(url):
    """True for a URL that leaves the site: a scheme with a host (http, https, ws, ftp) or ``//host``."""
    parts = urlsplit(url.strip())
    return bool(parts.netloc) or parts.scheme not in ("", "data", "blob", "about", "javascript", "mailto")


def external_loads(site):
    """``[(file, url)]``: every script, style sheet, font or image a page or a CSS file of ``site`` loads from outside."""
    site = Path(site)
    found = []
    for page in pages(site):
        loads, _, _, styles = parse_page(page)
        found += [(str(page.relative_to(site)), u) for u in loads if is_external(u)]
        for style in styles:
            found += [(str(page.relative_to(site)), u) for u in css_urls(style) if is_external(u)]
    for sheet in site.rglob("*.css"):
        found += [(str(sheet.relative_to(site)), u)
                  for u in css_urls(sheet.read_text(encoding="utf-8", errors="replace")) if is_external(u)]
    return found


def _resolve(site, page, url):
    """The file ``url`` (relative to ``page``) names in ``site``, and its fragment; ``None`` for non-file URLs."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None
    if not parts.path:
        return page, unquote(parts.fragment)
    target = (Path("/") / unquote(parts.path)) if parts.path.startswith("/") else page.parent / unquote(parts.path)
    target = Path(site, *target.parts[1:]) if parts.path.startswith("/") else target
    if parts.path.endswith("/"):
        target = target / "index.html"
    return target.resolve(), unquote(parts.fragment)


def broken_links(site):
    """Every internal link, image, script or style of ``site``'s pages (and CSS ``url()``s) that points nowhere.

    A link's ``#fragment`` must name an element id of the page it points to. Returns strings
    ``"page: url (why)"``.
    """
    site = Path(site).resolve()
    ids_cache, broken = {}, []

    def ids_of(path):
        if path not in ids_cache:
            ids_cache[path] = parse_page(path)[2]
        return ids_cache[path]

    for page in pages(site):
        loads, links, _, styles = parse_page(page)
        rel = page.relative_to(site)
        for url in loads + links:
            resolved = _resolve(site, page, url)
            if resolved is None:
                continue
            target, fragment = resolved
            if not target.is_file():
                broken.append(f"{rel}: {url} (no such file)")
            elif fragment and target.suffix == ".html" and fragment not in ids_of(target):
                broken.append(f"{rel}: {url} (no element with id {fragment!r})")
        for style in styles:
            for url in css_urls(style):
                resolved = _resolve(site, page, url)
                if resolved and resolved[0] != page and not resolved[0].is_file():
                    broken.append(f"{rel}: {url} (no such file)")
    for sheet in sorted(site.rglob("*.css")):
        for url in css_urls(sheet.read_text(encoding="utf-8", errors="replace")):
            resolved = _resolve(site, sheet, url)
            if resolved and resolved[0] != sheet and not resolved[0].is_file():
                broken.append(f"{sheet.relative_to(site)}: {url} (no such file)")
    return broken
