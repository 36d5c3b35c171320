"""The layer rules of docs/architecture.md, read from the imports (ast) of every module of the package.

Each package (and top-level module) has a layer; a module may import its own package and lower layers only.
Command modules (``cli``, ``__main__``, and the top-level ``cli`` and ``demo``) sit above every layer: they
parse arguments and call down; so does a module's ``if __name__ == "__main__":`` block. Imports inside
functions count (a lazy import is still a dependency); ``if TYPE_CHECKING:`` imports count too. Exceptions
are listed below, each with its reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gridverify

PACKAGE = Path(gridverify.__file__).parent

# lower number = lower layer; a package may import only packages of a lower layer (same-layer packages are
# independent of each other, so the package graph has no cycle)
LAYERS: dict[str, int] = {
    "const": 0,  # numerical constants
    "deadline": 0,  # one deadline per command, process helpers
    "ops": 1,  # the closed primitive set: one OpDef per op
    "ir": 2,  # the graph and its front ends (sympy, torch, ONNX), built from the op registry
    "bounds": 3,  # IBP, CROWN, alpha-CROWN, forward mode, the LP relaxation
    "grid": 3,  # GridData, the constraint families, the ACOPF constraints in sympy; the pandapower adapter
    "bab": 4,  # branch and bound, the falsifier, the verdict rule
    "specs": 5,  # load regions, VNN-LIB properties, the Certificate (checked by bab's verdict rule)
    "surrogate": 6,  # neural surrogates, cases, training
    "verify": 7,  # the driver: a case's surrogate against its constraints, into a Certificate
    "vnncomp": 7,  # the driver of one VNN-COMP instance
    "reports": 8,  # report.md and figures of a certificate
    "study": 9,  # many jobs, resumably
}
COMMANDS = {"gridverify.cli", "gridverify.demo"}  # and every module named cli or __main__

# (importing module, imported package or module): why it is allowed for now (none today)
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("gridverify", *path.relative_to(PACKAGE).with_suffix("").parts)
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def _imports(module: str, path: Path) -> set[str]:
    """Every gridverify module ``module`` imports (``from pkg import sub`` names the submodule)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _library_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if _is_module(sub) else base)
    return {m for m in found if m == "gridverify" or m.startswith("gridverify.")}


def _library_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of a module but those under ``if __name__ == "__main__":``: that block runs only as
    ``python -m module`` and is command code, like a command module (above every layer)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not _is_main_block(node):
            yield node
            stack.extend(ast.iter_child_nodes(node))


def _is_main_block(node: ast.AST) -> bool:
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in sides) and any(
        isinstance(n, ast.Constant) and n.value == "__main__" for n in sides
    )


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_command(module: str) -> bool:
    return module in COMMANDS or module.rsplit(".", 1)[-1] in ("cli", "__main__")


def test_every_package_has_a_layer() -> None:
    found = {_layer_of(m) for m, _ in _modules()} - {""}
    assert found - {c.split(".")[1] for c in COMMANDS} <= set(LAYERS), found - set(LAYERS)


def test_no_module_imports_upward_or_sideways() -> None:
    bad = []
    for module, path in _modules():
        if _is_command(module) or module == "gridverify":
            continue
        own = _layer_of(module)
        for target in _imports(module, path):
            other = _layer_of(target)
            if other == own or (module, target) in EXCEPTIONS or (module, other) in EXCEPTIONS:
                continue
            if other not in LAYERS or LAYERS[other] >= LAYERS[own]:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the layers (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle_between_modules() -> None:
    graph = {m: {t for t in _imports(m, p) if t != m and (m, t) not in EXCEPTIONS} for m, p in _modules()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if _is_package_of(t, m):
                continue  # a module reading names its own package's __init__ re-exports from a sibling
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_exception_is_still_needed() -> None:
    imports = {m: _imports(m, p) for m, p in _modules()}
    stale = [f"{m} -> {t}" for m, t in EXCEPTIONS if t not in imports.get(m, ())]
    assert not stale, "exceptions no import needs any more (remove them):\n" + "\n".join(stale)


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_pandapower_is_imported_under_grid_only() -> None:
    users = set()
    for module, path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        if any(n == "pandapower" or n.startswith("pandapower.") for n in names):
            users.add(module)
    assert users, "no module imports pandapower: is the test still reading the package?"
    outside = sorted(m for m in users if _layer_of(m) != "grid")
    assert not outside, "pandapower imported outside grid/ (docs/architecture.md): " + ", ".join(outside)


def test_the_family_list_is_written_once():
    """Only `gridverify.grid.families` lists constraint families: no other module holds a literal tuple, list
    or set of three or more family names (the others read `FAMILIES`, `NAMES`, `of_element`)."""
    from gridverify.grid.families import NAMES

    lists = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 3:
                names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len(names) == len(node.elts) and set(names) <= set(NAMES):
                    lists.append(f"{module}:{node.lineno}")
    assert lists == [], "family names listed outside grid/families.py: " + ", ".join(lists)
