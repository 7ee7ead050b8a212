"""The bundle installs what a user needs: requirements.txt for training, evaluation, inference and export, and the
MONAI Deploy app's packages apart in requirements-deploy.txt (the SDK brings Holoscan, which `import monai` would then
load in every command). Nothing outside scripts/deploy_app may import them."""

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


def test_nothing_outside_the_deploy_app_imports_deploy_packages():
    deploy_app = BUNDLE_ROOT / "scripts" / "deploy_app"
    found = {}
    for path in sorted((BUNDLE_ROOT / "scripts").rglob("*.py")):
        if deploy_app not in path.parents:
            bad = sorted(n for n in _imports(path) if n.startswith(DEPLOY_ONLY))
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
