"""Workflow sessions: ``nox -l`` lists them.

Every session that runs code against linear_operator installs a *variant* (``stock``: the
pinned upstream release from the package index; ``fork``: the wheel built from this
repository) into its own fresh virtual environment: no source tree is ever put on sys.path.

The torch requirement comes from ``$LINEAR_OPERATOR_FORK_TORCH`` (default ``torch==2.13.0``).
On GitHub the CPU index is passed with ``PIP_EXTRA_INDEX_URL``/``PIP_INDEX_URL``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

from linear_operator_fork import recipe as fork_recipe

nox.options.sessions = ["patches", "tests", "lint"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
RECIPE = fork_recipe.load()
TORCH = os.environ.get("LINEAR_OPERATOR_FORK_TORCH", "torch==2.13.0")
GPYTORCH = os.environ.get("LINEAR_OPERATOR_FORK_GPYTORCH", "gpytorch==1.15.2")
VARIANTS = ["stock", "fork"]


def build_wheel(session: nox.Session, variant: str) -> Path:
    """Build (fork) or fetch (stock) the variant's wheel into ``dist/<variant>/``; return its path."""
    target = DIST / variant
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if variant == "fork":
        session.run("python", "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(target), str(ROOT))
    elif variant == "stock":
        requirement = f"{RECIPE.name}=={RECIPE.version}"
        session.run("python", "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(target), requirement)
    else:
        session.error(f"unknown variant {variant!r}: expected one of {VARIANTS}")
    wheels = sorted(target.glob("linear_operator-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one linear_operator wheel in {target}, found {[w.name for w in wheels]}")
    session.log(f"{variant} wheel: {wheels[0].name}")
    return wheels[0]


def install_variant(session: nox.Session, variant: str, *extra: str) -> Path:
    """Fresh venv: torch, then the variant's wheel, then ``extra`` (which must not replace it)."""
    wheel = build_wheel(session, variant)
    session.install(TORCH)
    session.install(str(wheel))
    if extra:
        session.install(*extra)
    probe = "import linear_operator as lo; print('linear_operator', lo.__version__, 'from', lo.__file__)"
    session.run("python", "-c", probe)
    return wheel


@nox.session
@nox.parametrize("variant", VARIANTS)
def build(session: nox.Session, variant: str) -> None:
    """Build the fork's wheel, or fetch stock's, into dist/<variant>/."""
    session.install("pip>=23")
    build_wheel(session, variant)


@nox.session
def patches(session: nox.Session) -> None:
    """The series applies to the pinned release without fuzz and exports identically."""
    if RECIPE.path.parent != ROOT:
        session.error("run nox from the repository root")
    session.run("python", "-m", "linear_operator_fork", "check")


@nox.session
@nox.parametrize("variant", ["fork"])
def tests(session: nox.Session, variant: str) -> None:
    """Our pytest suite (tests/) against the installed fork wheel, with gpytorch installed after it."""
    wheel = install_variant(session, variant, GPYTORCH, "pytest")
    env = {"LINEAR_OPERATOR_FORK_WHEEL": str(wheel), "LINEAR_OPERATOR_FORK_VARIANT": variant}
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]), env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on our own code (upstream's lint runs on the patched tree in the `pr` workflow)."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
