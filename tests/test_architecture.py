"""The package's layers, read from the source with ``ast``: imports run one way, with no cycle and no private names.

Layers, bottom to top (``scripts/__init__.py`` explains them): the base package ``scripts`` (the lazy submodule
loader and ``as_bool``), ``scripts.lib``, ``scripts.components``, then ``scripts.commands``, ``scripts.deploy_app``
and ``scripts.__main__``. A module may import from its own layer and the layers below it, never from above; the
developer tools (``tools/``) sit above the whole bundle, which never imports them.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scripts"

LAYERS = {"scripts": 0, "scripts.lib": 1, "scripts.components": 2, "scripts.commands": 3, "scripts.deploy_app": 3}
LAYERS["scripts.__main__"] = 3

#: The only packages a function may import inside its body: optional or heavy ones that most runs never need (DICOM
#: SEG, ONNX, pictures and TensorBoard logs, the ISA-L gzip reader, the Deploy SDK behind the app module).
LAZY_ALLOWED = ("highdicom", "pydicom.sr", "onnx", "onnxruntime", "matplotlib", "tensorboard", "isal")
LAZY_ALLOWED += ("scripts.deploy_app.app",)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The package module that ``name`` (a module, or ``module.attribute``) denotes, or None outside the package."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> list[tuple[ast.AST, str, list[str], bool]]:
    """Every import in ``module``: (node, imported module, imported names, inside a function)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((child, alias.name, [], in_function))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                names = [a.name for a in child.names]
                found.append((child, base, names, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def _targets(base: str, names: list[str]) -> list[str]:
    """The package modules an import statement makes this module depend on."""
    out = []
    for name in names or [""]:
        target = _resolve(f"{base}.{name}" if name else base)
        if target is not None:
            out.append(target)
    return out


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module}: in no layer; add its folder to LAYERS")


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        deps = set()
        for _, base, names, _ in _imports(module):
            deps.update(t for t in _targets(base, names) if t != module)
        graph[module] = deps
    return graph


def test_every_module_is_in_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_run_downwards_only():
    upward = []
    for module, deps in _graph().items():
        for dep in deps:
            # a package's __init__ may name its own submodules (the lazy loader does, by string, not by import)
            if _layer(dep) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})")
    assert not upward, "\n".join(upward)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    # A package imports its own __init__ first, so the edge from a submodule to its package (e.g. scripts.lib.dicom ->
    # scripts.lib for lazy_submodules) is not a cycle unless the package's __init__ imports the submodule back.
    cycle = _find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a hand-made two-module cycle is reported, an acyclic graph is not."""
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_names_of_other_modules():
    private = []
    for module in MODULES:
        for _node, base, names, _ in _imports(module):
            target = _resolve(base)
            if target is None or target == module:
                continue
            private += [f"{module} imports {base}.{n}" for n in names if n.startswith("_") and n != "__version__"]
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        aliases = {}
        for node, base, _names, _ in _imports(module):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _resolve(f"{base}.{alias.name}") == f"{base}.{alias.name}":
                        aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                private.append(f"{module} uses {aliases[node.value.id]}.{node.attr}")
    assert not private, "\n".join(private)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_inside_functions_only_for_heavy_optional_packages(module):
    lazy = []
    for node, base, _names, in_function in _imports(module):
        if not in_function:
            continue
        targets = [base] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        for target in targets:
            if not any(target == p or target.startswith(p + ".") for p in LAZY_ALLOWED):
                lazy.append(f"line {node.lineno}: {target}")
    assert not lazy, f"{module}: imports inside functions: " + "; ".join(lazy)


def test_the_bundle_never_imports_the_developer_tools():
    offending = [
        f"{module} imports {base}"
        for module in MODULES
        for _, base, _, _ in _imports(module)
        if base == "tools" or base.startswith("tools.")
    ]
    assert not offending, "\n".join(offending)
