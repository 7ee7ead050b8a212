"""The MONAI Model Zoo's code-format check: flake8 (with bugbear, pep8-naming and comprehensions), black and isort at
120 columns, with the Model Zoo's settings (setup.cfg, pyproject.toml). The tools are pinned in requirements-dev.txt.

To fix a failure: ``python -m black scripts tests tools && python -m isort scripts tests tools``, then what flake8 still reports.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import BUNDLE_ROOT

PATHS = ["scripts", "tests", "tools"]
CHECKS = {
    "flake8": ["flake8", *PATHS],
    "black": ["black", "--check", "--diff", *PATHS],
    "isort": ["isort", "--check-only", "--diff", *PATHS],
}


@pytest.mark.parametrize("tool", sorted(CHECKS))
def test_the_code_passes_the_model_zoo_format_check(tool):
    proc = subprocess.run(
        [sys.executable, "-m", *CHECKS[tool]],
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"{tool} found problems (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)
