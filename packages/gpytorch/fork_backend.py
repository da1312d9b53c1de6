"""PEP 517 backend of the patched gpytorch (``packages/gpytorch/``): the repository's build, for project gpytorch.

pip allows a ``backend-path`` inside the folder it builds only, so this small module is the backend: it finds the
repository root two levels up (where ``fork.toml`` is), puts it first on ``sys.path`` and delegates to
``linear_operator_fork.build`` with the project ``gpytorch``. Without the repository around it (a copy of this folder
alone, as pip 21.2 makes of a local path before building) it stops with an error that says how to install instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = "gpytorch"


class RepositoryNotFound(RuntimeError):
    pass


def repository_root(here: Path = HERE) -> Path:
    """The repository root, two levels up from ``here`` (``packages/gpytorch/``), which must hold ``fork.toml``."""
    root = here.parent.parent
    if not (root / "fork.toml").is_file() or not (root / "linear_operator_fork" / "build.py").is_file():
        raise RepositoryNotFound(
            f"{here} is not inside a clone of linear_operator_fork: fork.toml and linear_operator_fork/ are not at "
            f"{root}. The patched gpytorch builds from the whole repository: install it from a clone "
            "(pip install <clone>/packages/gpytorch, with pip >= 21.3, which builds in place; pip 21.1 and 21.2 copy "
            "the folder alone unless given --use-feature=in-tree-build) or from the git URL of the whole repository "
            '(pip install "git+URL#subdirectory=packages/gpytorch").'
        )
    return root


def _build():
    root = str(repository_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from linear_operator_fork import build

    return build


# --- PEP 517 hooks ---------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return _build().get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None) -> list[str]:
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    return _build().build_project_wheel(PROJECT, wheel_directory)


def build_sdist(sdist_directory, config_settings=None) -> str:
    raise RepositoryNotFound(
        "the patched gpytorch has no sdist of its own (it builds from the whole repository): install it with "
        'pip install "git+URL#subdirectory=packages/gpytorch", or build the wheel (pip wheel <clone>/packages/gpytorch)'
    )
