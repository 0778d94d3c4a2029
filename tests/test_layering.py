"""The house rules of issue 15, checked on the source tree.

(a) no file under ppl_models/ imports guides (a model never knows its guide);
(b) nothing in the four packages reads, imports or executes anything under scripts/;
(c) every module of the four packages imports alone, in a shuffled order, with none of the packages
    imported before it (one subprocess, the packages cleared from ``sys.modules`` before each; slow,
    ~10 s) and, in the fast suite, the graph of module-level imports between them has no cycle;
(d) every script is at most 120 non-blank, non-comment lines;
(e) no blanket ``warnings.filterwarnings("ignore")`` / ``simplefilter("ignore")`` in a script or a
    package: only specific messages or categories are silenced;
(f) no test reaches into a script for anything but its command line (``main``, ``make_parser``):
    the names a script defines itself are not used by the tests;
(g) generic machinery knows no paper (issue 24): no module of ``inference`` outside
    ``inference.papers`` and ``inference.reproduce`` imports either of them, at module level or inside
    a function, nor names one in a string (``importlib.import_module("inference.papers.x")``); and no
    paper module imports ``inference.reproduce`` (the pages stand above the papers).
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
PACKAGES = ("ppl_data", "ppl_models", "guides", "inference")
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
MAX_SCRIPT_LINES = 120


def package_files():
    return sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))


def modules() -> list[str]:
    out = []
    for f in package_files():
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved against ``package``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _package_of(f: Path) -> str:
    parts = list(f.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts if parts[-1] == "__init__" else parts[:-1])


def test_models_never_import_guides():
    bad = [f"{f.relative_to(ROOT)}: {m}" for f in sorted((ROOT / "ppl_models").rglob("*.py"))
           for m in imported_modules(ast.parse(f.read_text()), _package_of(f))
           if m == "guides" or m.startswith("guides.")]
    assert not bad, "ppl_models/ must not import guides/:\n" + "\n".join(bad)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def script_references(tree: ast.AST, package: str) -> list[str]:
    """Imports of ``scripts``, path strings under scripts/, and loading a file as a module."""
    found = [f"import {m}" for m in imported_modules(tree, package)
             if m == "scripts" or m.startswith("scripts.")]
    docs = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value.strip()
            if text == "scripts" or text.startswith(("scripts/", "./scripts/")):
                found.append(f"path {text!r}")
        elif isinstance(node, ast.Attribute) and node.attr in ("spec_from_file_location", "run_path"):
            found.append(node.attr)
        elif isinstance(node, ast.Name) and node.id in ("exec", "execfile"):
            found.append(node.id)
    return found


def test_packages_never_touch_scripts():
    bad = [f"{f.relative_to(ROOT)}: {ref}" for f in package_files()
           for ref in script_references(ast.parse(f.read_text()), _package_of(f))]
    assert not bad, "the packages must not import, read or run scripts/:\n" + "\n".join(bad)


def test_script_reference_check_catches_the_old_sweep():
    old = ('ROOT = Path(__file__).parents[1]\n'
           'def load_script(name):\n'
           '    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")\n')
    assert sorted(script_references(ast.parse(old), "inference")) == ["path 'scripts'", "spec_from_file_location"]
    assert script_references(ast.parse('"""Runs what scripts/train.py runs."""\nx = 1\n'), "inference") == []
    assert sorted(script_references(ast.parse("from scripts import train\n"), "inference")) == [
        "import scripts", "import scripts.train"]


IMPORT_EACH = r"""
import importlib, json, random, sys, traceback, warnings
warnings.simplefilter("ignore")  # this check is about import errors, not about warnings
packages, mods, seed = json.loads(sys.argv[1])
random.Random(seed).shuffle(mods)
failed = {}
for name in mods:
    for m in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except BaseException as err:  # noqa: BLE001
        failed[name] = "".join(traceback.format_exception_only(type(err), err)).strip()
print(json.dumps({"order": mods, "failed": failed}))
"""


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports at module level (not inside functions)."""
    mods = set(modules())
    graph = {}
    for f in package_files():
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        top = ast.Module(body=[n for n in ast.parse(f.read_text()).body
                               if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))],
                         type_ignores=[])
        # "from pkg import x": the module pkg.x when there is one, else pkg itself
        graph[name] = {m if m in mods else m.rpartition(".")[0]
                       for m in imported_modules(top, _package_of(f))} & mods - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_module_imports_form_no_cycle():
    graph = import_graph()
    assert graph["inference.catalog"] >= {"inference.vitae_pair", "inference.elbos"}
    assert "inference.catalog" in graph["inference.papers.vitae"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


UPPER_LAYERS = {"inference.papers": 1, "inference.reproduce": 2}  # generic modules are layer 0


def layer(module: str) -> int:
    """0 for generic machinery, 1 for a paper module, 2 for the pages (``inference.reproduce``)."""
    return max((rank for top, rank in UPPER_LAYERS.items()
                if module == top or module.startswith(top + ".")), default=0)


def upward_imports(tree: ast.AST, package: str, own_layer: int) -> list[str]:
    """Every import in ``tree`` (module level and inside functions alike: ``ast.walk`` sees both) of a
    module in a layer above ``own_layer``, and every string naming one (a dynamic import)."""
    found = [f"import {m}" for m in sorted(imported_modules(tree, package)) if layer(m) > own_layer]
    docs = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value.strip()
            if text.startswith("inference.") and " " not in text and layer(text) > own_layer:
                found.append(f"string {text!r}")
    return found


def test_generic_modules_never_import_papers():
    bad = []
    for f in sorted((ROOT / "inference").rglob("*.py")):
        package = _package_of(f)
        module = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        bad += [f"{f.relative_to(ROOT)}: {ref}"
                for ref in upward_imports(ast.parse(f.read_text()), package, layer(module))]
    assert not bad, "imports must point down: generic <- papers <- reproduce:\n" + "\n".join(bad)


def test_upward_import_check_sees_function_level_and_dynamic_imports():
    lazy = ("def f():\n    from .papers.dpvae import low_posterior_samples\n"
            "def g():\n    import inference.reproduce.driver\n"
            "def h():\n    return importlib.import_module('inference.papers.vitae')\n")
    assert upward_imports(ast.parse(lazy), "inference", 0) == [
        "import inference.papers.dpvae", "import inference.papers.dpvae.low_posterior_samples",
        "import inference.reproduce.driver", "string 'inference.papers.vitae'"]
    assert upward_imports(ast.parse("from ..catalog import build\nfrom . import msvae\n"),
                          "inference.papers", 1) == []
    assert upward_imports(ast.parse("from ..reproduce import driver\n"), "inference.papers", 1) == [
        "import inference.reproduce", "import inference.reproduce.driver"]


@pytest.mark.slow
def test_every_module_imports_alone_in_any_order():
    mods = modules()
    assert {"inference.catalog", "inference.runs", "inference.report", "inference.sweep.driver"} <= set(mods)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    seed = int(os.environ.get("LAYERING_SEED", "0"))
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, json.dumps([PACKAGES, mods, seed])],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["order"]) == sorted(mods)
    assert not result["failed"], "\n".join(f"{k}: {v}" for k, v in result["failed"].items())


def logic_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_are_thin(script):
    n = logic_lines(script)
    assert n <= MAX_SCRIPT_LINES, f"{script.name}: {n} non-blank, non-comment lines (at most {MAX_SCRIPT_LINES})"


def blanket_warning_filters(tree: ast.AST) -> list[int]:
    """Lines of ``filterwarnings("ignore")`` / ``simplefilter("ignore")`` with nothing that narrows them."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
                and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("filterwarnings", "simplefilter")
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "ignore"
                and len(node.args) == 1
                and not {k.arg for k in node.keywords} & {"message", "category", "module"}):
            out.append(node.lineno)
    return out


def test_no_blanket_warning_filters():
    bad = [f"{f.relative_to(ROOT)}:{line}" for f in [*SCRIPTS, *package_files()]
           for line in blanket_warning_filters(ast.parse(f.read_text()))]
    assert not bad, "silence specific warnings only:\n" + "\n".join(bad)
    assert blanket_warning_filters(ast.parse('import warnings\nwarnings.filterwarnings("ignore")\n')) == [2]
    assert blanket_warning_filters(ast.parse('warnings.filterwarnings("ignore", message="x")\n')) == []


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_tests_use_scripts_only_through_their_command_line():
    library = set()
    for f in package_files():
        library |= _defined_names(ast.parse(f.read_text()))
    own = {}  # name -> script, for names only a script defines
    for s in SCRIPTS:
        for name in _defined_names(ast.parse(s.read_text())) - library - {"main", "make_parser"}:
            own.setdefault(name, s.name)
    bad = []
    for t in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(t.read_text())
        imported = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
        for node in ast.walk(tree):  # x.name where x is not an imported module: maybe a loaded script
            if (isinstance(node, ast.Attribute) and node.attr in own
                    and not (isinstance(node.value, ast.Name) and node.value.id in imported)):
                bad.append(f"{t.name}:{node.lineno} uses {own[node.attr]}'s {node.attr}")
    assert not bad, "library logic belongs in the packages, not in scripts:\n" + "\n".join(bad)
