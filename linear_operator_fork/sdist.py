"""The pinned upstream release: fetch its sdist through pip, verify its sha256, unpack it.

The archive comes from, in this order:

1. ``$LINEAR_OPERATOR_FORK_SDIST`` (a local archive, for offline builds; for another pinned
   release such as gpytorch: ``$LINEAR_OPERATOR_FORK_GPYTORCH_SDIST``);
2. the cache ``build/cache/<name>-<version>.tar.gz``;
3. ``pip download`` from whatever package index pip is configured to use.

Whatever its source, an archive whose sha256 differs from the recipe's is refused.

The download runs inside a PEP 517 build too (``pip install <clone>``, ``pip install git+<url>``): its pip gets
an environment without the variables that the outer pip's hook runner exports to our backend (``nested_pip_env``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from linear_operator_fork.recipe import BUILD_DIR, ForkError, Pin, Project, lock

SDIST_ENV = "LINEAR_OPERATOR_FORK_SDIST"
# What a PEP 517 hook runner exports to the backend it calls: the backend's name and its ``backend-path``
# (pyproject_hooks: ``_PYPROJECT_HOOKS_*``; its predecessor pep517: ``PEP517_*``).
HOOK_RUNNER_PREFIXES = ("_PYPROJECT_HOOKS_", "PEP517_")
Pinned = Pin | Project  # anything with name, version, sha256 and archive_name (a Recipe is a Project)


class HashMismatch(ForkError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise HashMismatch(
            f"sha256 mismatch for {path}:\n"
            f"  expected sha256 {expected}\n"
            f"  actual   sha256 {actual}\n"
            "The archive is not the pinned upstream release; nothing was built."
        )


def local_archive_env(pin: Pinned) -> str:
    return SDIST_ENV if pin.name == "linear_operator" else f"LINEAR_OPERATOR_FORK_{pin.name.upper()}_SDIST"


def archive(recipe: Pinned, cache_dir: Path | None = None) -> Path:
    """Path of the verified sdist, downloading it into the cache if needed."""
    variable = local_archive_env(recipe)
    local = os.environ.get(variable)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise ForkError(f"{variable}={local}: no such file")
        verify(path, recipe.sha256)
        return path
    cache_dir = cache_dir or BUILD_DIR / "cache"
    cached = cache_dir / recipe.archive_name
    if cached.is_file():
        try:
            verify(cached, recipe.sha256)
            return cached
        except HashMismatch:
            cached.unlink()  # a stale or broken download: fetch it again, and verify that
    _download(recipe, cached)
    verify(cached, recipe.sha256)
    return cached


def nested_pip_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a pip that our backend runs: ours, without the hook runner's variables.

    Run from inside a PEP 517 build, a nested pip would otherwise pass the outer hook runner's variables on to the
    build backend of the sdist it prepares (pip >= 25 runs the sdist's metadata hooks with
    ``_PYPROJECT_HOOKS_BACKEND_PATH_JSON`` from our ``backend-path``), which then looks for ``setuptools.build_meta``
    in this repository and fails. Everything else (the build environment's ``PATH`` and ``PYTHONPATH``, pip's
    configuration) is kept.
    """
    environ = dict(os.environ if environ is None else environ)
    return {key: value for key, value in environ.items() if not key.startswith(HOOK_RUNNER_PREFIXES)}


def _download(recipe: Pinned, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            # the sdist of this one project; its build requirements (for pip's metadata step) may come as wheels
            "--no-binary", recipe.name, "--dest", tmp, f"{recipe.name}=={recipe.version}",
        ]  # fmt: skip
        print(f"linear_operator_fork: downloading {recipe.name}=={recipe.version} sdist with pip", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, env=nested_pip_env())
        if result.returncode != 0:
            raise ForkError(
                f"pip could not download {recipe.name}=={recipe.version} (exit {result.returncode}).\n"
                f"{result.stderr.strip()}\n"
                f"For an offline build set {local_archive_env(recipe)} to a local copy of {recipe.archive_name}."
            )
        found = sorted(Path(tmp).glob(f"{recipe.name}-{recipe.version}.tar.gz"))
        if not found:
            got = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise ForkError(f"pip download gave {got}, not {recipe.archive_name}")
        shutil.move(str(found[0]), target)


def unpack(archive_path: Path, destination: Path) -> Path:
    """Unpack the sdist's single top-level folder into ``destination`` (which must not exist)."""
    if destination.exists():
        raise ForkError(f"{destination} exists already")
    with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
        with tarfile.open(archive_path, "r:gz") as tar:
            tops = {member.name.split("/", 1)[0] for member in tar.getmembers()}
            if len(tops) != 1:
                raise ForkError(f"{archive_path}: expected one top-level folder, found {sorted(tops)}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                tar.extractall(tmp)
        shutil.move(str(Path(tmp) / tops.pop()), destination)
    return destination


def pristine_tree(recipe: Pinned, cache_dir: Path | None = None) -> Path:
    """A read-only-by-convention unpacked copy of the verified archive, cached by its sha256."""
    cache_dir = cache_dir or BUILD_DIR / "cache"
    with lock(cache_dir / f".{recipe.name}.lock"):
        path = archive(recipe, cache_dir)
        root = cache_dir / f"{recipe.name}-{recipe.version}-{recipe.sha256[:12]}"
        if not (root / "PKG-INFO").is_file():
            shutil.rmtree(root, ignore_errors=True)
            unpack(path, root)
    return root
