"""The shape of the vitools package (DESIGN.md, "Layout" and "One protocol"), checked on its source.

* module-level imports among vitools modules form an acyclic graph that runs one way, from the
  bottom layer up;
* importing a model does not load the estimators, the implicit-reparameterization package, the
  plots or the widgets;
* every module is short enough to read in one sitting (about 350 lines: at most ``MAX_LINES``);
* no code outside vitools/estimators/ branches on an estimator's name, and no module uses
  private torch APIs (``torch._...``), except torch's own Gamma sampler and its gradient
  (``SAMPLER_KERNELS``), which ``vitools.implicit`` draws with and is measured against.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vitools"
MAX_LINES = 400
SAMPLER_KERNELS = {"torch._standard_gamma", "torch._standard_gamma_grad"}

# DESIGN.md's layer order, bottom up: a module may import its own level or below.
LEVELS = {
    "checks": 0, "config": 0,
    "targets": 1,
    "problems": 2, "problems_subset": 2, "models": 2, "implicit": 2, "smc": 2, "relaxations": 2, "data": 2, "flows": 2,
    "estimators": 3,
    "diagnostics": 4, "train": 4, "few_shot": 4,
    "plots": 5, "widgets": 5,
}
ROOT_LEVEL = max(LEVELS.values()) + 1     # the package root re-exports everything, lazily


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(tree: ast.Module):
    """Import statements at module level, including inside top-level ``if``/``try`` blocks
    (not inside functions or classes)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, (ast.With,)):
            pending += node.body


def _resolve(module: str, node) -> list[str]:
    """The vitools modules an import statement of ``module`` loads (most specific name known)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            base = package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
                 for alias in node.names]
    out = []
    for name in names:
        while name and name not in MODULES and "." in name:
            name = name.rpartition(".")[0]
        if name in MODULES and name != module:
            out.append(name)
    return out


def _graph() -> dict[str, dict[str, int]]:
    """``{module: {imported vitools module: line}}``."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = {}
        for node in _top_level_imports(tree):
            for target in _resolve(module, node):
                edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _level(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_LEVEL
    assert parts[1] in LEVELS, f"{module} has no layer in DESIGN.md's layout"
    return LEVELS[parts[1]]


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def test_the_import_graph_is_found():
    graph = _graph()
    assert len(graph) > 30
    assert "vitools.checks" in graph["vitools.targets"]
    assert "vitools.targets" in graph["vitools.estimators.base"]      # resolved from "from ..targets import"


def test_imports_form_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                cycles.append(" -> ".join(f"{a} ({_where(a, graph[a][b])})" for a, b in zip(cycle, cycle[1:])))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_follow_the_layer_order():
    graph = _graph()
    upward = [f"{_where(a, line)}: {a} (level {_level(a)}) imports {b} (level {_level(b)})"
              for a, edges in graph.items() for b, line in edges.items() if _level(b) > _level(a)]
    assert not upward, "imports against DESIGN.md's layer order:\n" + "\n".join(upward)


def test_importing_a_model_loads_no_estimator_plot_or_widget():
    code = ("import json, sys; import vitools.models.sbn; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'vitools' or m.startswith('vitools.'))))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"import vitools.models.sbn loads {len(loaded)} vitools modules: {loaded}")
    forbidden = [m for m in loaded if m.split(".")[1:2] in (["implicit"], ["widgets"], ["plots"], ["estimators"])]
    assert not forbidden, f"import vitools.models.sbn loads {forbidden}"


def test_every_module_is_short():
    lengths = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    longest = sorted(lengths.items(), key=lambda item: -item[1])[:5]
    print("longest modules:", ", ".join(f"{m} {n}" for m, n in longest))
    offenders = {str(MODULES[m].relative_to(ROOT)): n for m, n in lengths.items() if n > MAX_LINES}
    assert not offenders, f"modules over {MAX_LINES} lines: {offenders}"


# ---------------------------------------------------------------------- name branching, private torch
ESTIMATOR_NAMES = {"est", "estimator", "estimators", "self_estimator", "e"}


def _is_estimator_name(node) -> bool:
    """``est.name``, ``estimator.name``, ``self.estimator.name``, ``type(est).name``, ..."""
    if not (isinstance(node, ast.Attribute) and node.attr == "name"):
        return False
    owner = node.value
    if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "type" and owner.args:
        owner = owner.args[0]
    if isinstance(owner, ast.Attribute):
        return "est" in owner.attr.lower()
    return isinstance(owner, ast.Name) and (owner.id in ESTIMATOR_NAMES or owner.id.lower().startswith("est"))


def _name_branches(tree):
    for node in ast.walk(tree):
        operands = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
        operands += [e for n in operands if isinstance(n, (ast.Tuple, ast.List, ast.Set)) for e in n.elts]
        if any(_is_estimator_name(n) for n in operands):
            yield node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "startswith", "endswith") and _is_estimator_name(node.func.value):
            yield node.lineno
        elif isinstance(node, ast.Match) and _is_estimator_name(node.subject):
            yield node.lineno


def test_the_name_check_finds_what_it_looks_for():
    found = sorted(_name_branches(ast.parse("if est.name == 'rebar':\n    pass\nok = 'relax' in (estimator.name,)\n"
                                          "x = self.estimator.name.startswith('nvil')\n")))
    assert found == [1, 3, 4]
    assert not list(_name_branches(ast.parse("label = est.name\nif problem.name == 'x':\n    pass\n")))


def test_no_code_outside_estimators_branches_on_an_estimator_name():
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for module, path in MODULES.items() if not module.startswith("vitools.estimators")
                 for line in _name_branches(ast.parse(path.read_text()))]
    assert not offenders, "branches on an estimator's name outside vitools/estimators/:\n" + "\n".join(offenders)


def _private_torch(tree):
    aliases = {"torch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        yield node.lineno, alias.name
                    if alias.asname and alias.name == "torch":
                        aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
            parts = node.module.split(".") + [a.name for a in node.names]
            if any(part.startswith("_") for part in parts if part != "*"):
                yield node.lineno, f"from {node.module} import {', '.join(a.name for a in node.names)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                yield node.lineno, ".".join([base.id, *reversed(chain)])


def test_no_module_uses_private_torch_apis():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {what}" for module, path in MODULES.items()
                 for line, what in sorted(set(_private_torch(ast.parse(path.read_text()))))
                 if what not in SAMPLER_KERNELS]
    assert not offenders, "private torch APIs:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source,expected", [
    ("import torch\nx = torch._C._get_tracing_state()\n", True),
    ("import torch as T\nT._dynamo.reset()\n", True),
    ("from torch._C import _nn\n", True),
    ("import torch\nx = torch.distributions.utils._standard_normal\n", True),
    ("import torch\nx = torch.zeros(2)\nx.__class__\n", False),
])
def test_the_private_torch_check_finds_what_it_looks_for(source, expected):
    assert bool(list(_private_torch(ast.parse(source)))) == expected
