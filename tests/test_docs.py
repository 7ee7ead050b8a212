"""The documentation stays short and true: README.md and the model card under their size limits, one- or two-line
changelog entries, every relative link and every repository path or module the docs name in code exists, and the
README tells users every command that CI (``.ci/run``) runs. Each check is also run on a made-up failing input, so
it is known to be able to fail. docs/benchmark.md is left out: the benchmark writes it."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import shlex
from pathlib import Path

from conftest import BUNDLE_ROOT, CONFIGS

README_MAX_BYTES = 12_000
CARD_MAX_BYTES = 20_000
CHANGELOG_MAX_CHARS = 300
GENERATED = {"docs/benchmark.md"}  # written by `python -m tools.benchmark`, not by hand
REPO_ROOTS = ("scripts", "configs", "tools", "tests", "docs")  # outputs a user creates (eval/, models/, out/) are not

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INDENTED = re.compile(r"(?:^(?: {4,}|\t).*\n?)+", re.M)
INLINE = re.compile(r"`([^`]+)`")
PATH = re.compile(r"(?<![\w./$~-])((?:%s)/[\w./-]*)" % "|".join(REPO_ROOTS))
MODULE = re.compile(r"(?<![\w./])((?:scripts|tools)(?:\.[A-Za-z_]\w*)+)")


def doc_files() -> list[Path]:
    docs = [BUNDLE_ROOT / "README.md", *sorted((BUNDLE_ROOT / "docs").glob("*.md"))]
    return [p for p in docs if p.relative_to(BUNDLE_ROOT).as_posix() not in GENERATED]


def code_spans(text: str) -> list[str]:
    """The text in fenced and indented code blocks and in inline backticks."""
    spans = FENCED.findall(text)
    text = FENCED.sub("", text)
    spans += INDENTED.findall(text)
    text = INDENTED.sub("", text)
    return spans + INLINE.findall(text)


def _package_names(init: Path) -> set[str]:
    """The names a package's ``__init__.py`` defines or imports at module level, or lists in ``__all__``."""
    names = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom) and [a.name for a in node.names] == ["*"] and node.module:
            names |= _star_names(init, node.module)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            ids = {t.id for t in targets if isinstance(t, ast.Name)}
            names |= ids
            if "__all__" in ids:
                with contextlib.suppress(ValueError):  # e.g. ``list(read.__all__)``: the star import gave them
                    names.update(ast.literal_eval(node.value))
    return names


def _star_names(init: Path, module: str) -> set:
    """The ``__all__`` of ``module`` (an absolute dotted name), found above ``init``: what ``from module import *``
    gives."""
    relative = Path(*module.split(".")).with_suffix(".py")
    for folder in init.parents:
        if (folder / relative).is_file():
            for node in ast.parse((folder / relative).read_text()).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                    return set(ast.literal_eval(node.value))
            return set()
    return set()


def _module_exists(dotted: str, root: Path) -> bool:
    """``scripts.lib.dicom.ct_series``: packages down to a module file (what follows it is an attribute), or a name
    that a package below the top one defines or imports."""
    parts = dotted.split(".")
    path = root / parts[0]
    for depth, part in enumerate(parts[1:], 1):
        if (path / part).is_dir():
            path = path / part
        elif (path / f"{part}.py").is_file():
            return True
        else:
            init = path / "__init__.py"
            return depth > 1 and init.is_file() and part in _package_names(init)
    return path.is_dir()


def missing_references(text: str, base: Path, root: Path = BUNDLE_ROOT) -> list[str]:
    """Relative links (from ``base``, the document's folder) and repository paths and modules named in code (from
    ``root``) that do not exist. A path that ends in ``/`` must be a folder."""
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        if not (base / target.split("#", 1)[0]).exists():
            missing.append(target)
    for span in code_spans(text):
        for path in PATH.findall(span):
            path = path.rstrip(".")
            found = (root / path).is_dir() if path.endswith("/") else (root / path).exists()
            if not found:
                missing.append(path)
        for dotted in MODULE.findall(span):
            if not _module_exists(dotted, root):
                missing.append(dotted)
    return sorted(set(missing))


def _commands(text: str) -> list[str]:
    """The shell commands of ``text``, one per ``&&``-joined part, comments and quiet flags (``-q``) dropped."""
    commands = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            commands += [" ".join(t for t in shlex.split(c, posix=False) if t != "-q") for c in line.split("&&")]
    return [c for c in commands if c]


def ci_commands() -> list[str]:
    """The commands .ci/run runs after its own set-up (the lines up to the ``cd`` to the bundle root)."""
    script = (BUNDLE_ROOT / ".ci" / "run").read_text()
    _, _, commands = script.partition("\ncd ")
    assert commands, ".ci/run: no cd to the bundle root"
    return _commands(commands.split("\n", 1)[1])


def commands_not_in(readme: str, commands: list[str]) -> list[str]:
    """The commands that no line of ``readme`` (with its ``&&`` parts) gives word for word."""
    told = set(_commands(readme))
    return [c for c in commands if c not in told]


def long_changelog_entries(changelog: dict[str, str]) -> list[str]:
    return [version for version, entry in changelog.items() if len(entry) >= CHANGELOG_MAX_CHARS]


def test_readme_and_model_card_are_short():
    readme, card = BUNDLE_ROOT / "README.md", BUNDLE_ROOT / "docs" / "README.md"
    assert readme.stat().st_size < README_MAX_BYTES, f"README.md: {readme.stat().st_size} bytes"
    assert card.stat().st_size < CARD_MAX_BYTES, f"docs/README.md: {card.stat().st_size} bytes"


def test_changelog_entries_are_one_or_two_lines():
    changelog = json.loads((CONFIGS / "metadata.json").read_text())["changelog"]
    assert changelog and long_changelog_entries(changelog) == []
    assert long_changelog_entries({"9.9.9": "x" * CHANGELOG_MAX_CHARS, "9.9.8": "short"}) == ["9.9.9"]


def test_every_link_and_repository_path_in_the_docs_exists():
    docs = doc_files()
    assert {"README.md", "docs/README.md", "docs/dicom.md", "docs/qc.md"} <= {
        p.relative_to(BUNDLE_ROOT).as_posix() for p in docs
    }
    missing = {p.relative_to(BUNDLE_ROOT).as_posix(): missing_references(p.read_text(), p.parent) for p in docs}
    assert {doc: refs for doc, refs in missing.items() if refs} == {}


def test_the_reference_check_can_fail():
    made_up = (
        "[card](docs/README.md) [gone](docs/no_such_page.md) [web](https://docs.monai.io/x.md) [here](#install)\n"
        "`scripts/components/inferers.py` `scripts/components/no_such_module.py` `configs/no_such.yaml`\n"
        "`scripts/components/` `scripts/components/inferers.py/` `eval/report.csv` `models/model.ts` `out/<name>`\n"
        "`scripts.components.inputs.DicomSeriesReader` `scripts.components.no_such_module` `scripts.no_such` `tools.benchmark`\n"
        "\n    python -m monai.bundle run training --config_file \"['configs/train.yaml','configs/no_such_mixin.yaml']\"\n"
        "\n    python bundles/liver_ct_segmentation/scripts/missing.py\n"
    )
    assert missing_references(made_up, BUNDLE_ROOT) == sorted(
        [
            "docs/no_such_page.md",
            "scripts/components/no_such_module.py",
            "configs/no_such.yaml",
            "scripts/components/inferers.py/",
            "scripts.components.no_such_module",
            "scripts.no_such",
            "configs/no_such_mixin.yaml",
        ]
    )


def test_the_readme_tells_users_every_command_ci_runs():
    commands = ci_commands()
    assert ".venv/bin/python -m pytest tests" in commands
    assert '.venv-all/bin/pip install "monai[all]"' in commands
    assert ".venv/bin/pip install -r requirements-dev.txt" in commands
    readme = (BUNDLE_ROOT / "README.md").read_text()
    assert commands_not_in(readme, commands) == []
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest tests"
        in readme
    )
    without_the_tests = readme.replace(".venv/bin/python -m pytest tests", ".venv/bin/python -m pytest")
    assert commands_not_in(without_the_tests, commands) == [".venv/bin/python -m pytest tests"]
