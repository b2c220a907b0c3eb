"""The static site (tools/site.py, ``make site``): it builds from the stored outputs, every
internal link and image resolves, and the pages carry what a reader needs: the notebook
map, each notebook with its math, figures and folded solutions, the notation table, the
glossary and the API reference."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

pytest.importorskip("myst_nb", reason="the site needs the 'site' extra: pip install -e '.[site]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("site_tool", ROOT / "tools" / "site.py")
site_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site_tool)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()
        self._anchor = None           # the link of an <a> whose content has not started yet

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if self._anchor is not None and tag == "span" and "problematic" in (attrs.get("class") or "").split():
            self.links.pop()          # docutils' marker of a reST error in a docstring (site-warnings.txt)
        self._anchor = None
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "preload"):
                self.links.append(attrs[key])
                self._anchor = attrs[key] if tag == "a" else None

    def handle_data(self, data):
        if data.strip():
            self._anchor = None


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "site.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def test_every_internal_link_and_image_resolves(site):
    pages = {p: _parse(p) for p in site.rglob("*.html") if "_static" not in p.parts}   # _static: theme templates
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(site)} -> {link}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in pages[target].ids:
                broken.append(f"{path.relative_to(site)} -> {link} (no such anchor)")
    assert not broken, "\n".join(broken[:30])
    assert len(pages) >= len(NOTEBOOKS) + 5


def test_no_page_reaches_outside_the_site(site):
    """Math, styles and scripts are served from the site itself: it reads offline."""
    outside = {link for p in site.rglob("*.html") if "_static" not in p.parts for link in _parse(p).links
               if urlsplit(link).scheme in ("http", "https") and not link.endswith((".pdf",))
               and re.search(r"\.(js|css|woff2?)(\?|$)", link)}
    assert not outside, sorted(outside)


def test_index_maps_every_notebook_and_the_reference_pages(site):
    index = _parse(site / "index.html")
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}.html" in index.links, f"index does not link {nb.stem}"
    for page in ("notation.html", "glossary.html", "api/index.html"):
        assert page in index.links


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_page_shows_math_figures_and_folded_solutions(site, path):
    html = (site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    solutions = sum("solution" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code")
    assert html.count("Show the reference solution") == solutions
    assert "mathjax/tex-chtml.js" in html and 'class="math notranslate' in html
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    stored = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert len(images) >= min(stored, 1) and len(images) >= stored // 2, (len(images), stored)
    assert "widget-view+json" not in html, "explorers show their stored figure, not a dead widget"
    assert "Traceback" not in html


def test_notation_glossary_and_api_pages(site):
    notation = (site / "notation.html").read_text(encoding="utf-8")
    assert "approximate posterior" in notation and "<table" in notation
    glossary = _parse(site / "glossary.html")
    for term in ("term-Score-function-estimator", "term-Pathwise-estimator", "term-Control-variate", "term-FIVO"):
        assert term in glossary.ids
    api = {p.stem for p in (site / "api").glob("*.html")}
    assert {"index", "config", "estimators", "diagnostics", "problems", "data"} <= api
    ids = _parse(site / "api" / "config.html").ids | _parse(site / "api" / "estimators.html").ids
    assert {"vitools.config.device", "vitools.config.threads", "vitools.estimators.get"} <= ids


def test_site_was_built_without_import_failures(site):
    warnings = (site.parent / "site-warnings.txt").read_text()
    bad = [line for line in warnings.splitlines()
           if re.search(r"failed to import|toctree|unknown document|undefined label|not readable|ERROR", line)]
    assert not bad, "\n".join(bad)


def _site_conf():
    spec = importlib.util.spec_from_file_location("site_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_docstring_math_becomes_rest_math():
    """$...$ (across a line break too) becomes :math:, $$...$$ a math block at its line's
    indentation, a simple table is widened to fit; `q_\\phi` would otherwise be a reST link."""
    dollar_math = _site_conf().dollar_math
    assert dollar_math("the $\\log q_\\phi(h) -\n\\log p$ term") == "the :math:`\\log q_\\phi(h) - \\log p` term"
    assert dollar_math("costs ``$5`` and \\$6") == "costs ``$5`` and \\$6"
    block = dollar_math("    so\n    $$a_b\n    + c$$\n    done")
    assert "\n    .. math::\n\n       a_b + c\n" in block and block.endswith("    done")
    table = dollar_math("==  ==\nx   $y$\n==  ==").split("\n")
    assert table == ["==  =========", "x   :math:`y`", "==  ========="]


def test_readme_links_outside_the_site_become_code():
    docs = {"notebooks/00_x.ipynb"}
    text = "[a](notebooks/00_x.ipynb) [b](bench/results/x.md) [`c`](data/README.md) [d](https://x.org) ![i](p.png)"
    assert site_tool.site_links(text, docs) == "[a](notebooks/00_x.ipynb) `b` `c` [d](https://x.org) ![i](p.png)"
