"""The bundle package's import graph, read from the source with ``ast`` (nothing is imported).

Used by tests/test_architecture.py (layers, cycles, private names, imports inside functions) and by the benchmark's
``shares`` step (the Python that ``configs/inference.yaml`` runs, counted in lines against the config's).

    from tools import imports
    modules = imports.package_modules(bundle_root)           # {"scripts.lib.fileio": Path, ...}
    imports.graph(modules)                                    # {module: {package modules it imports}}
    imports.inference_path(bundle_root)                       # the modules configs/inference.yaml runs
    imports.line_counts(bundle_root)                          # their lines against the config's

Modules are named as Python names them (``scripts.lib.fileio``; a package by its ``__init__.py``: ``scripts.lib``).
An import counts wherever it is written: at module level or inside a function (``Import.in_function``).
"""

from __future__ import annotations

import ast
import pathlib
import re
from typing import NamedTuple

PACKAGE = "scripts"
INFERENCE_CONFIG = "configs/inference.yaml"

#: The package's layers, bottom to top (``scripts/__init__.py`` explains them): a module may import from its own
#: layer and the layers below it. A module's layer is that of the longest prefix listed here.
LAYERS = {
    "scripts": 0,
    "scripts.lib": 1,
    "scripts.components": 2,
    "scripts.commands": 3,
    "scripts.deploy_app": 3,
    "scripts.__main__": 3,
}


class Import(NamedTuple):
    """One imported module of an import statement: ``import a.b`` gives ``module`` "a.b" and no ``names``;
    ``from a import b, c`` gives ``module`` "a" and ``names`` ["b", "c"] (relative imports made absolute)."""

    node: ast.AST
    module: str
    names: list[str]
    in_function: bool


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    """The dotted name of the Python file ``path`` under ``root`` (``scripts/lib/__init__.py`` -> ``scripts.lib``)."""
    parts = list(pathlib.Path(path).relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root, package: str = PACKAGE) -> dict[str, pathlib.Path]:
    """``{dotted name: path}`` of every ``.py`` file of ``root/package``, sorted by path."""
    root = pathlib.Path(root).resolve()
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def resolve(name: str, modules) -> str | None:
    """The module of ``modules`` that ``name`` (a module, or ``module.attribute...``) denotes, or None outside."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, modules) -> list[Import]:
    """Every import in ``module`` (a key of ``modules``), in the order of the source."""
    path = modules[module]
    tree = ast.parse(pathlib.Path(path).read_text(encoding="utf-8"))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(child, alias.name, [], in_function))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if pathlib.Path(path).name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                found.append(Import(child, base, [a.name for a in child.names], in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def targets(base: str, names: list[str], modules) -> list[str]:
    """The modules of ``modules`` that one import statement (``from base import names``) depends on."""
    out = []
    for name in names or [""]:
        target = resolve(f"{base}.{name}" if name else base, modules)
        if target is not None:
            out.append(target)
    return out


def graph(modules) -> dict[str, set[str]]:
    """``{module: {the other modules of ``modules`` it imports}}``, in-function imports included."""
    out = {}
    for module in modules:
        deps = set()
        for imp in imports_of(module, modules):
            deps.update(t for t in targets(imp.module, imp.names, modules) if t != module)
        out[module] = deps
    return out


def layer(module: str, layers=None) -> int:
    """The layer of ``module`` (``LAYERS`` by default); KeyError when no prefix of it is listed."""
    layers = LAYERS if layers is None else layers
    for prefix in sorted(layers, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return layers[prefix]
    raise KeyError(f"{module}: in no layer; add its folder to LAYERS")


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph ``deps`` as ``[a, b, ..., a]``, or None (depth-first, in sorted order)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(deps.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(deps):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


# ----------------------------------------------------------------------------------------------------------------------
# the inference path: the package modules a config runs


def yaml_comments(text: str):
    """``(line number, column of the #)`` of every YAML comment: a ``#`` at the start of a line or after a blank,
    outside a quoted scalar (``train#dataloader#sampler`` and ``"%a#b"`` are keys and references, not comments)."""
    for number, line in enumerate(text.splitlines(), start=1):
        quote = None
        for i, char in enumerate(line):
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"" and (i == 0 or line[i - 1] in " :[{,"):
                quote = char
            elif char == "#" and (i == 0 or line[i - 1].isspace()):
                yield number, i
                break


def strip_yaml_comments(text: str) -> str:
    """``text`` without its YAML comments (:func:`yaml_comments`)."""
    lines = text.splitlines()
    for number, column in yaml_comments(text):
        lines[number - 1] = lines[number - 1][:column]
    return "\n".join(lines)


def config_names(text: str, package: str = PACKAGE) -> list[str]:
    """Every dotted name ``package.<...>`` in the config text ``text`` (comments left out), sorted, once each."""
    pattern = rf"(?<![\w.]){re.escape(package)}(?:\.[A-Za-z_]\w*)+"
    return sorted(set(re.findall(pattern, strip_yaml_comments(text))))


def _with_parents(module: str, modules) -> set[str]:
    """``module`` and the packages above it that exist in ``modules`` (Python runs their ``__init__`` first)."""
    out = {module}
    while "." in module:
        module = module.rpartition(".")[0]
        if module in modules:
            out.add(module)
    return out


def inference_path(bundle_root, config: str = INFERENCE_CONFIG) -> list[str]:
    """The package modules that ``config`` (relative to ``bundle_root``) runs: those its ``scripts.<...>`` names
    denote, and everything they import from the package, transitively (in-function imports included), with the
    packages above each one (importing ``scripts.lib.fileio`` runs ``scripts/lib/__init__.py``). Sorted."""
    root = pathlib.Path(bundle_root).resolve()
    modules = package_modules(root)
    text = (root / config).read_text(encoding="utf-8")
    named = {resolve(name, modules) for name in config_names(text)} - {None}
    deps = graph(modules)
    seen, todo = set(), sorted(named)
    while todo:
        module = todo.pop()
        for m in _with_parents(module, modules) - seen:
            seen.add(m)
            todo.extend(deps[m])
    return sorted(seen)


def count_lines(path) -> int:
    """Raw lines of a text file (blank lines, comments and docstrings included)."""
    return len(pathlib.Path(path).read_text(encoding="utf-8").splitlines())


def docstrings(tree: ast.AST) -> list[ast.Expr]:
    """The docstring statements of a module, its classes and its functions."""
    found = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
                found.append(first)
    return found


def count_code_lines(path) -> int:
    """Lines of code, as ``cloc`` counts them: not blank, not a comment, and (Python) not in a docstring."""
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8")
    skip = (
        {n for doc in docstrings(ast.parse(text)) for n in range(doc.lineno, doc.end_lineno + 1)}
        if path.suffix == ".py"
        else set()
    )
    return sum(
        1
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in skip
    )


def line_counts(bundle_root, config: str = INFERENCE_CONFIG) -> dict:
    """The Python of :func:`inference_path` against the config, in raw lines and in lines of code
    (:func:`count_code_lines`): ``{"config", "config_lines", "config_code_lines", "modules": {module: {"path",
    "lines", "code_lines"}}, "python_lines", "python_code_lines", "ratio", "code_ratio"}``; a ratio is python /
    config."""
    root = pathlib.Path(bundle_root).resolve()
    modules = package_modules(root)
    rows = {
        m: {
            "path": modules[m].relative_to(root).as_posix(),
            "lines": count_lines(modules[m]),
            "code_lines": count_code_lines(modules[m]),
        }
        for m in inference_path(root, config)
    }
    config_lines, config_code = count_lines(root / config), count_code_lines(root / config)
    python_lines = sum(r["lines"] for r in rows.values())
    python_code = sum(r["code_lines"] for r in rows.values())
    return {
        "config": config,
        "config_lines": config_lines,
        "config_code_lines": config_code,
        "modules": rows,
        "python_lines": python_lines,
        "python_code_lines": python_code,
        "ratio": python_lines / config_lines if config_lines else None,
        "code_ratio": python_code / config_code if config_code else None,
    }


def main() -> None:
    """``python -m tools.imports``: the line counts of the inference path."""
    counts = line_counts(pathlib.Path(__file__).resolve().parents[1])
    print("lines   code  module")
    for module, row in counts["modules"].items():
        print(f"{row['lines']:5d}  {row['code_lines']:5d}  {module}")
    print(
        f"{counts['python_lines']:5d}  {counts['python_code_lines']:5d}  Python in {len(counts['modules'])} modules, "
        f"against {counts['config_lines']} lines ({counts['config_code_lines']} of code) of {counts['config']}: "
        f"{counts['ratio']:.1f} to 1 in lines, {counts['code_ratio']:.1f} to 1 in lines of code"
    )


if __name__ == "__main__":
    main()
