"""Sphinx configuration of the workbook's static site (``make site``; docs/README.md).

tools/site.py copies this folder, the notebooks and pages made from README.md into
``build/site-src/`` and runs Sphinx there; nothing is executed: every notebook page shows
the outputs stored in the notebook.
"""
import os
import re
import sys

sys.path.insert(0, os.environ.get("VITOOLS_SITE_ROOT", os.path.abspath("../..")))

project = "vitools: Monte Carlo gradient estimation"
author = "the vitools authors"
copyright = "the vitools authors (MIT licence)"

extensions = [
    "myst_nb",                   # notebooks and MyST Markdown pages
    "sphinx.ext.autodoc",        # the API reference from vitools' docstrings
    "sphinx.ext.napoleon",
    "sphinx-mathjax-offline",    # MathJax shipped with the site: math renders offline
]

# Pages from the stored outputs only.
nb_execution_mode = "off"
# An explorer's stored output holds the live widget's view and the static figure of its
# default state; a static site has no kernel, so it shows the figure.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False     # torch.nn.Module.forward etc. would bring torch's own cross-references

html_theme = "sphinx_book_theme"
html_title = "vitools workbook"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": True,
}
html_static_path = []
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]


# Docstrings write math as the notebooks do, $...$ inline (also across a line break) and $$...$$
# displayed; autodoc reads reST, where `q_\phi` would be a link to "q". Turn both into reST math.
_DISPLAY_MATH = re.compile(r"^(?P<indent>[ \t]*)(?P<before>[^\n]*?)\$\$(?P<body>.+?)\$\$(?P<after>[^\n]*)$", re.S | re.M)
_INLINE_MATH = re.compile(r"(?<![\\$\w`])\$(?P<body>(?:(?!\n[ \t]*\n)[^$`])+?)\$(?![\w$`])")


def _one_line(tex: str) -> str:
    return " ".join(tex.split())


def _display(match) -> str:
    indent, before, after = match["indent"], match["before"].rstrip(), match["after"].strip()
    block = f"\n\n{indent}.. math::\n\n{indent}   {_one_line(match['body'])}\n\n"
    return (f"{indent}{before}" if before else "") + block + (f"{indent}{after}" if after else "")


_TABLE_BORDER = re.compile(r"^[ \t]*=+(?: +=+)+[ \t]*$")


def _inline(text: str) -> str:
    return _INLINE_MATH.sub(lambda m: f":math:`{_one_line(m['body'])}`", text)


def _tables(lines: list[str]) -> list[str]:
    """Simple reST tables with their cells' math converted and the columns widened to fit (a
    cell grows by the role's markup, and a cell wider than its border breaks the table)."""
    out, i = [], 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        spans = [m.span() for m in re.finditer(r"=+", lines[i])]
        rows = [None if _TABLE_BORDER.match(line) else
                [_inline(line[a:(spans[k + 1][0] if k + 1 < len(spans) else None)].strip())
                 for k, (a, _) in enumerate(spans)] for line in lines[i:end]]
        widths = [max([len("=" * (b - a))] + [len(r[k]) for r in rows if r]) for k, (a, b) in enumerate(spans)]
        indent = lines[i][:spans[0][0]]
        out += [indent + "  ".join(("=" * w) if r is None else r[k].ljust(w) for k, w in enumerate(widths)).rstrip()
                for r in rows]
        i = end
    return out


def dollar_math(text: str) -> str:
    """``text`` with ``$$...$$`` as ``.. math::`` blocks (at the indentation of their line) and
    ``$...$`` as ``:math:`` roles (simple tables re-laid out to fit); a ``$`` inside code
    (backticks) or after a backslash is left."""
    return _inline("\n".join(_tables(_DISPLAY_MATH.sub(_display, text).split("\n"))))


def _dollar_math(app, what, name, obj, options, lines):
    lines[:] = dollar_math("\n".join(lines)).split("\n")


def setup(app):
    app.connect("autodoc-process-docstring", _dollar_math)
