"""Shared fixtures: the real recipe, a small synthetic upstream, and the installed variant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from linear_operator_fork import recipe, series

TEST_AUTHOR = "Test Author <test@example.invalid>"


@pytest.fixture(scope="session")
def real_recipe() -> recipe.Recipe:
    return recipe.load()


@pytest.fixture
def tiny_upstream(tmp_path: Path) -> Path:
    """A small stand-in for an unpacked upstream sdist."""
    root = tmp_path / "tiny-1.0"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text("".join(f"line {i}\n" for i in range(20)))
    (root / "tiny" / "other.py").write_text("x = 1\ny = 2\nz = 3\n")
    (root / "PKG-INFO").write_text("Name: tiny\nVersion: 1.0\n")
    return root


def commit_all(repo: Path, message: str) -> None:
    series.git(repo, "add", "--all")
    series.git(repo, "commit", "--quiet", "-m", message)


@pytest.fixture
def tiny_series(tmp_path: Path, tiny_upstream: Path) -> tuple[Path, Path, Path]:
    """Two exported patches against ``tiny_upstream``: (pristine, patches_dir, series_file)."""
    repo = tmp_path / "work"
    series.init_pristine(tiny_upstream, repo, "tiny 1.0")
    init = repo / "tiny" / "__init__.py"
    init.write_text(init.read_text().replace("line 5\n", "line five\n"))
    commit_all(repo, "Spell out five\n\nBecause.\n\nForwarded: no")
    (repo / "tiny" / "new.py").write_text("NEW = True\n")
    other = repo / "tiny" / "other.py"
    other.write_text(other.read_text().replace("y = 2", "y = 20"))
    commit_all(repo, "Add new module\n\nForwarded: https://example.invalid/pr/1\nBug: https://example.invalid/1")
    patches_dir, series_file = tmp_path / "patches", tmp_path / "patches" / "series"
    series.export(repo, series_file, patches_dir, TEST_AUTHOR)
    return tiny_upstream, patches_dir, series_file


@pytest.fixture(scope="session")
def installed_wheel() -> Path:
    """The wheel that `nox -s tests` built and installed into this environment."""
    wheel = os.environ.get("LINEAR_OPERATOR_FORK_WHEEL")
    if not wheel:
        pytest.skip("needs the installed fork wheel: run through `nox -s tests`")
    return Path(wheel)
