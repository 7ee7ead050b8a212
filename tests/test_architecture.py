"""The package's layers, read from the source with ``ast``: imports run one way, with no cycle and no private names.

Layers, bottom to top (``scripts/__init__.py`` explains them): the base package ``scripts`` (the lazy submodule
loader and ``as_bool``), ``scripts.lib``, ``scripts.components``, then ``scripts.commands``, ``scripts.deploy_app``
and ``scripts.__main__``. A module may import from its own layer and the layers below it, never from above; the
developer tools (``tools/``) sit above the whole bundle, which never imports them. The import graph is
``tools/imports.py``'s (``LAYERS`` there).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from tools import imports

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The only packages a function may import inside its body: optional or heavy ones that most runs never need (DICOM
#: SEG, ONNX, pictures and TensorBoard logs, the ISA-L gzip reader, the Deploy SDK behind the app module).
LAZY_ALLOWED = ("highdicom", "pydicom.sr", "onnx", "onnxruntime", "matplotlib", "tensorboard", "isal")
LAZY_ALLOWED += ("scripts.deploy_app.app",)

MODULES = imports.package_modules(ROOT)


def test_every_module_is_in_a_layer():
    for module in MODULES:
        imports.layer(module)


def test_imports_run_downwards_only():
    upward = []
    for module, deps in imports.graph(MODULES).items():
        for dep in deps:
            # a package's __init__ may name its own submodules (the lazy loader does, by string, not by import)
            if imports.layer(dep) > imports.layer(module):
                upward.append(f"{module} (layer {imports.layer(module)}) imports {dep} (layer {imports.layer(dep)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    # A package imports its own __init__ first, so the edge from a submodule to its package (e.g. scripts.lib.dicom ->
    # scripts.lib for lazy_submodules) is not a cycle unless the package's __init__ imports the submodule back.
    cycle = imports.find_cycle(imports.graph(MODULES))
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a hand-made two-module cycle is reported, an acyclic graph is not."""
    assert imports.find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert imports.find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_names_of_other_modules():
    private = []
    for module in MODULES:
        for _node, base, names, _ in imports.imports_of(module, MODULES):
            target = imports.resolve(base, MODULES)
            if target is None or target == module:
                continue
            private += [f"{module} imports {base}.{n}" for n in names if n.startswith("_") and n != "__version__"]
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        aliases = {}
        for node, base, _names, _ in imports.imports_of(module, MODULES):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if imports.resolve(f"{base}.{alias.name}", MODULES) == f"{base}.{alias.name}":
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
    for node, base, _names, in_function in imports.imports_of(module, MODULES):
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
        for _, base, _, _ in imports.imports_of(module, MODULES)
        if base == "tools" or base.startswith("tools.")
    ]
    assert not offending, "\n".join(offending)


def test_inference_path_follows_the_config_and_its_imports():
    """The modules configs/inference.yaml runs: those it names, what they import (also inside functions), and the
    packages above them; not the commands, nor the libraries only they use."""
    path = imports.inference_path(ROOT)
    assert {"scripts", "scripts.components", "scripts.components.inputs", "scripts.lib.errors"} <= set(path)
    assert "scripts.lib.fileio" in path  # imported by inputs, not named by the config
    assert "scripts.lib.visualize" not in path and not [m for m in path if m.startswith("scripts.commands")]
    assert path == sorted(path) and set(path) <= set(MODULES)
    counts = imports.line_counts(ROOT)
    assert list(counts["modules"]) == path and counts["config_lines"] == imports.count_lines(
        ROOT / "configs/inference.yaml"
    )
    assert counts["python_lines"] == sum(r["lines"] for r in counts["modules"].values())
    assert counts["ratio"] == pytest.approx(counts["python_lines"] / counts["config_lines"])


def test_the_inference_path_stays_lean():
    """The bespoke Python that inference runs, against its config: at most 10 to 1, in raw lines (as issue 28 counts
    them) and in lines of code (tools.imports.count_code_lines). A new module on the inference path must earn its place
    (docs/benchmark.md, the shares table)."""
    counts = imports.line_counts(ROOT)
    assert counts["ratio"] <= 10, f"{counts['python_lines']} lines against {counts['config_lines']}"
    assert (
        counts["code_ratio"] <= 10
    ), f"{counts['python_code_lines']} lines of code against {counts['config_code_lines']}"


def test_lines_of_code_leave_out_blank_lines_comments_and_docstrings(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Module\n\ndocstring."""\n\n# a comment\nX = 1  # code with a comment\n\n\n'
        'def f():\n    """One line."""\n    return "not a docstring"\n'
    )
    config = tmp_path / "c.yaml"
    config.write_text("# header\n\na: 1   # why\nb: '#not a comment'\n")
    assert imports.count_lines(module) == 11 and imports.count_code_lines(module) == 3
    assert imports.count_lines(config) == 4 and imports.count_code_lines(config) == 2


def test_config_names_leave_out_comments_and_config_ids():
    text = "a: $@scripts.lib.x.f(@b#c)   # see scripts.lib.y\n# scripts.lib.z\nd: '%e#scripts'\nx: notscripts.lib.w\n"
    assert imports.config_names(text) == ["scripts.lib.x.f"]
