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


# Docstrings write inline math as $...$ (as the notebooks do); make it reST math for autodoc.
_DOLLAR_MATH = re.compile(r"(?<![\\$\w`])\$([^$`\n]+?)\$(?![\w$`])")


def _dollar_math(app, what, name, obj, options, lines):
    lines[:] = [_DOLLAR_MATH.sub(lambda m: f":math:`{m.group(1).strip()}`", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _dollar_math)
