"""The bundle installs what a user needs: requirements.txt for training, evaluation, inference and export, and the
MONAI Deploy app's packages apart in requirements-deploy.txt (the SDK brings Holoscan, which `import monai` would then
load in every command). Nothing outside scripts/deploy_app may import them, except highdicom inside the functions of
scripts/lib/seg.py: the DICOM SEG writer that inference's `--output_format seg` shares with the Deploy app, which stops
with one line naming requirements-deploy.txt where highdicom is missing (tests/test_dicom_study.py)."""

from __future__ import annotations

import ast
import importlib
import os

import pytest
from conftest import BUNDLE_ROOT
from test_metadata import requirements

DEPLOY_ONLY = ("monai.deploy", "holoscan", "highdicom")


def test_the_deploy_packages_are_apart_and_the_tests_install_both():
    core, deploy = requirements("requirements.txt"), requirements("requirements-deploy.txt")
    assert set(deploy) == {"monai-deploy-app-sdk", "highdicom"}  # together: `import monai` needs highdicom then
    assert set(core).isdisjoint(deploy)
    dev = (BUNDLE_ROOT / "requirements-dev.txt").read_text().split()
    assert {"requirements.txt", "requirements-deploy.txt"} <= {dev[i + 1] for i, word in enumerate(dev) if word == "-r"}


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_level_imports(path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    return {a.name for n in top.body if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in top.body if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
    }


def test_nothing_outside_the_deploy_app_imports_deploy_packages():
    deploy_app = BUNDLE_ROOT / "scripts" / "deploy_app"
    seg_writer = BUNDLE_ROOT / "scripts" / "lib" / "seg.py"
    found = {}
    for path in sorted((BUNDLE_ROOT / "scripts").rglob("*.py")):
        if deploy_app not in path.parents:
            names = _imports(path)
            if path == seg_writer:  # highdicom in its functions only, never when the module loads
                names = {n for n in names if not n.startswith("highdicom")} | _module_level_imports(path)
            bad = sorted(n for n in names if n.startswith(DEPLOY_ONLY))
            if bad:
                found[str(path.relative_to(BUNDLE_ROOT))] = bad
    for path in sorted((BUNDLE_ROOT / "configs").glob("*.yaml")):
        bad = [name for name in DEPLOY_ONLY if name in path.read_text()]
        if bad:
            found[str(path.relative_to(BUNDLE_ROOT))] = bad
    assert found == {}


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI only: there requirements-dev.txt installs the Deploy app")
def test_ci_has_the_deploy_packages_so_the_deploy_tests_run():
    """tests/test_deploy.py skips without the Deploy packages; in CI that would hide a broken install."""
    for name in ("monai.deploy", "highdicom"):
        importlib.import_module(name)
