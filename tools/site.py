"""Build the workbook's static site (``make site``): ``build/site/index.html``.

``python tools/site.py [--out build/site]`` lays out a Sphinx project in ``build/site-src/``
and builds it with myst-nb (docs/README.md says why Sphinx + myst-nb):

* ``index``: README.md (the notebook map, the two commands, how to read the site), less its
  notation table, which becomes the ``notation`` page; README.md stays the single source;
* ``notebooks/NN_*``: every notebook, rendered from its stored outputs (never executed);
  cells tagged ``solution`` are folded behind a "Show the reference solution" toggle, and an
  explorer shows the static figure stored beside its widget;
* ``glossary`` and ``conf.py`` from docs/;
* ``api/``: one page per vitools module or subpackage, from the docstrings (autodoc).

Sphinx's warnings go to ``build/site-warnings.txt``.
"""
from __future__ import annotations

import argparse
import copy
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # the vitools of this checkout, for the API pages
SOLUTION_TAG = "solution"
NOTATION = "Notation"


def readme_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """README.md as (title line and intro, [(heading, body)] for each ``## `` section)."""
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    head, rest = parts[0], parts[1:]
    return head, [(rest[i].strip(), rest[i + 1]) for i in range(0, len(rest), 2)]


def site_links(markdown: str, docs: set[str]) -> str:
    """Keep relative links to pages of the site; others (files of the repository) become code."""
    def fix(match):
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path = target.split("#")[0]
        if path in docs:
            return match.group(0)
        return text if text.startswith("`") else f"`{text}`"
    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", fix, markdown)


def fold_solutions(nb):
    """A copy of ``nb`` whose solution cells are folded behind a toggle."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and SOLUTION_TAG in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "hide-cell"]
            cell.metadata["mystnb"] = {"code_prompt_show": "Show the reference solution",
                                       "code_prompt_hide": "Hide the reference solution"}
    return nb


def api_pages(package: str = "vitools") -> dict[str, list[str]]:
    """{page name: [modules]}: a page per top-level module or subpackage of ``package``."""
    module = __import__(package)
    pages: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        top = info.name.split(".")[1]
        pages.setdefault(top, []).append(info.name)
    return dict(sorted(pages.items()))


def write_sources(src: Path) -> list[str]:
    """Lay out the Sphinx project in ``src``; returns the notebook document names."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "docs", src, ignore=shutil.ignore_patterns("README.md", "__pycache__"))
    (src / "notebooks").mkdir()
    notebooks = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nbformat.write(fold_solutions(nbformat.read(path, as_version=4)), src / "notebooks" / path.name)
        notebooks.append(f"notebooks/{path.stem}")
    docs = {f"{n}.ipynb" for n in notebooks} | {"notation.md", "glossary.md", "api/index.md"}

    head, sections = readme_sections((ROOT / "README.md").read_text())
    notation = [body for heading, body in sections if heading == NOTATION]
    if not notation:
        raise ValueError(f"README.md has no '## {NOTATION}' section for the site's notation page")
    (src / "notation.md").write_text(
        f"# {NOTATION}\n\nShared by every notebook (from README.md).\n{site_links(notation[0], docs)}")
    body = head + "".join(f"## {h}\n{b}" for h, b in sections if h != NOTATION)
    body += "\nThe notation shared by every notebook is on the [notation page](notation.md); the workbook's terms " \
            "are in the [glossary](glossary.md); the package's functions are in the [API reference](api/index.md).\n"
    toctrees = ("\n```{toctree}\n:hidden:\n:caption: Notebooks\n\n" + "\n".join(notebooks) + "\n```\n"
                "\n```{toctree}\n:hidden:\n:caption: Reference\n\nnotation\nglossary\napi/index\n```\n")
    (src / "index.md").write_text(site_links(body, docs) + toctrees)

    api = src / "api"
    api.mkdir()
    pages = api_pages()
    (api / "index.md").write_text(
        "# API reference\n\nThe `vitools` package, from its docstrings: one page per module or "
        "subpackage.\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(pages) + "\n```\n")
    for page, modules in pages.items():     # reST, which autodoc writes
        title = f"``vitools.{page}``"
        blocks = "\n".join(f".. automodule:: {m}\n   :members:\n" for m in modules)
        (api / f"{page}.rst").write_text(f"{title}\n{'=' * len(title)}\n\n{blocks}")
    return notebooks


def prune_mathjax(folder: Path) -> None:
    """Keep the parts of the offline MathJax the pages load (tex-chtml and what it loads on
    demand: TeX extensions, CHTML fonts, menu, accessibility); drop the other bundles (~20 MB)."""
    if not folder.is_dir():
        return
    for path in folder.glob("*.js"):
        if path.name != "tex-chtml.js":
            path.unlink()
    for name in ("sre", "output/svg", "output/svg.js", "input/mml", "input/mml.js", "input/asciimath",
                 "input/asciimath.js", "input/tex-full.js", "input/tex-base.js"):
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def build(out: Path, src: Path) -> float:
    """Build the html site from ``src`` into ``out``; returns the seconds it took."""
    start = time.perf_counter()
    notebooks = write_sources(src)
    if out.exists():
        shutil.rmtree(out)
    warnings = out.parent / "site-warnings.txt"
    env = {**os.environ, "VITOOLS_SITE_ROOT": str(ROOT), "OMP_NUM_THREADS": "1", "VITOOLS_DEVICE": "cpu"}
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(warnings),
                          "-d", str(out.parent / "site-doctrees"), str(src), str(out)], env=env)
    if run.returncode:
        raise SystemExit(f"sphinx failed ({run.returncode}); see {warnings}")
    prune_mathjax(out / "_static" / "mathjax")
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out / 'index.html'}: {len(notebooks)} notebooks, {size / 2**20:.1f} MiB, {seconds:.0f} s; "
          f"warnings in {warnings}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--src", type=Path, default=None, help="where to lay out the sources (default OUT-src)")
    args = parser.parse_args(argv)
    build(args.out.resolve(), (args.src or args.out.with_name(args.out.name + "-src")).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
