"""The MONAI Model Zoo's code-format check: flake8 (with bugbear, pep8-naming and comprehensions), black and isort at
120 columns, with the Model Zoo's settings (setup.cfg, pyproject.toml). The tools are pinned in requirements-dev.txt.

To fix a failure: ``python -m black scripts tests tools && python -m isort scripts tests tools``, then what flake8 still reports.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize

import pytest
from conftest import BUNDLE_ROOT

from tools import imports

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


# ----------------------------------------------------------------------------------------------------------------------
# what the code says of itself

MAX_FUNCTION_LINES = 80
#: A function may be longer only when its docstring says why, with these words.
LONG_REASON = "Long because"

#: A measured time in a comment or docstring: a duration (``0.45 s``, ``120 ms``) in the same line as a comparison or
#: a place (``->``, ``against``, ``instead of``, ``faster``, ``here``, ...). Figures go stale with the next change;
#: they belong in docs/benchmark.md, which the benchmark writes.
TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b")
COMPARISON = re.compile(
    r"->|\bagainst\b|\binstead of\b|\bfaster\b|\bslower\b|\bless\b|\bhere\b|\btook\b|\bmeasured\b|\bsaves?\b"
)


def _python_files():
    for folder in ("scripts", "tools"):
        yield from sorted((BUNDLE_ROOT / folder).rglob("*.py"))


def _comment_and_docstring_lines(source: str):
    """``(line number, text)`` of every comment and docstring line of a Python source."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for doc in imports.docstrings(ast.parse(source)):
        for offset, line in enumerate(doc.value.value.splitlines()):
            yield doc.lineno + offset, line


def measured_timings(source: str) -> list[str]:
    """The comment and docstring lines of ``source`` that state a measured time."""
    return [
        f"{number}: {text.strip()}"
        for number, text in _comment_and_docstring_lines(source)
        if TIMING.search(text) and COMPARISON.search(text)
    ]


def test_no_measured_time_in_a_comment_or_docstring():
    found = [
        f"{path.relative_to(BUNDLE_ROOT)}:{line}"
        for path in _python_files()
        for line in measured_timings(path.read_text(encoding="utf-8"))
    ]
    assert not found, "measured figures belong in docs/benchmark.md:\n" + "\n".join(found)


def test_the_timing_check_finds_measured_times():
    measured = (
        '"""Reads a volume in 0.15 s instead of 0.5 s."""\n'
        "# 0.45 s for a 512x512x150 mask here\n"
        "X = 1  # network 3.0 s -> 1.6 s\n"
    )
    assert len(measured_timings(measured)) == 3
    assert measured_timings('"""Waits dist_timeout_s seconds."""\n# 8 slices per copy\n') == []


def test_no_function_is_long_without_a_reason():
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(BUNDLE_ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not long, "split these into named steps, or say why in the docstring:\n" + "\n".join(long)


def test_config_lines_fit_the_code_width():
    """Configs are read like the code: at most 120 columns (black's and flake8's width here), so no comment hides
    off-screen."""
    wide = [
        f"{path.relative_to(BUNDLE_ROOT)}:{number}: {len(line)} columns"
        for path in sorted((BUNDLE_ROOT / "configs").glob("*.yaml"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > 120
    ]
    assert not wide, "\n".join(wide)
