"""The pin (``fork.toml``): the upstream release and its sha256, the build number, the series, the pull requests."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "fork.toml"
BUILD_DIR = ROOT / "build"


class ForkError(RuntimeError):
    """An error the user can act on; the command line prints its message without a traceback."""


@dataclass(frozen=True)
class Pin:
    """A released sdist pinned by version and sha256."""

    name: str
    version: str
    sha256: str

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


@dataclass(frozen=True)
class StackedPR:
    """One upstream pull request of the stack: the k-th patch of the series, on the branch of the (k-1)-th."""

    branch: str  # its branch, and the name of its folder under build/pr/
    cases: tuple[str, ...]  # the verify cases that measure it
    differential: tuple[str, ...]  # the operations of the differential harness that test it
    size: str = "cpu"  # the benchmark size its table is measured at (nox -s benchmark -- --through K): what it claims


BENCHMARK_SIZES = ("cpu", "cuda")  # the sizes a pull request's table may be measured at (verify.catalogue.SIZES)
PROJECTS = ("linear_operator", "gpytorch")  # the patched upstreams (``--project``), each with its own series


@dataclass(frozen=True)
class Project:
    """One patched upstream, the view that series, build and the command line use for either of them: its pin
    (name, version, sha256, url), its build number and series digest, its patches, its stack of pull requests."""

    path: Path  # fork.toml
    name: str
    version: str
    sha256: str
    url: str
    build_number: int
    series_sha256: str
    patches_dir: Path
    series_file: Path
    stack: tuple[StackedPR, ...]  # the pull requests, one per patch, in series order
    build_table: str  # the fork.toml table of build_number and series_sha256 (what `export` rewrites)

    @property
    def fork_version(self) -> str:
        return f"{self.version}+fork.{self.build_number}"

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def version_file(self) -> str:
        """The file the build generates (upstream generates it with setuptools-scm): ``<name>/version.py``."""
        return f"{self.name}/version.py"


@dataclass(frozen=True)
class Recipe(Project):
    """The whole of fork.toml: itself the linear_operator project, with gpytorch's project as ``downstream``."""

    downstream: Project  # gpytorch: the suite that runs on stock and fork, and the second patched upstream
    thread_release: str  # the release the PR #120 thread ran (case c also runs on it)
    author: str  # "Name <email>": the person who sends the pull requests, author of the patches

    def project(self, name: str) -> Project:
        """The project named ``name`` (one of :data:`PROJECTS`)."""
        for project in (self, self.downstream):
            if project.name == name:
                return project
        raise ForkError(f"{self.path}: no project {name!r} (the projects: {', '.join(PROJECTS)})")


def load(path: Path = RECIPE) -> Recipe:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForkError(f"recipe not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ForkError(f"{path}: not valid TOML: {exc}") from None
    upstream = _project(path, data, "upstream", data, "")
    downstream = _project(path, data, "downstream", _table(path, data, "downstream", ""), "downstream.")
    names = (upstream.name, downstream.name)
    if names != PROJECTS:
        raise ForkError(f"{path}: upstream.name and downstream.name must be {PROJECTS}, not {names}")
    return Recipe(
        **{field.name: getattr(upstream, field.name) for field in dataclasses.fields(Project)},
        downstream=downstream,
        thread_release=_value(path, _table(path, data, "stock", ""), "thread-release", "stock."),
        author=_author(path, _value(path, _table(path, data, "pr", ""), "author", "pr.")),
    )


def _project(path: Path, data: dict, pin_table: str, tables: dict, prefix: str) -> Project:
    """One project: its pin ``[pin_table]``, and the ``build``, ``patches`` and ``pr`` tables of ``tables`` (named
    ``<prefix>build`` etc. in fork.toml)."""
    pin = _table(path, data, pin_table, "")
    build, patches = _table(path, tables, "build", prefix), _table(path, tables, "patches", prefix)
    pr = _table(path, tables, "pr", prefix)
    stack = _value(path, pr, "stack", f"{prefix}pr.")
    if not isinstance(stack, list) or not all(isinstance(entry, dict) for entry in stack):
        raise ForkError(f"{path}: {prefix}pr.stack must be a list of tables ([[{prefix}pr.stack]])")
    number = _value(path, build, "number", f"{prefix}build.")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise ForkError(f"{path}: {prefix}build.number must be an integer >= 0, not {number!r}")
    return Project(
        path=path,
        name=_value(path, pin, "name", f"{pin_table}."),
        version=_value(path, pin, "version", f"{pin_table}."),
        sha256=_digest(path, f"{pin_table}.sha256", _value(path, pin, "sha256", f"{pin_table}.")),
        url=_value(path, pin, "url", f"{pin_table}."),
        build_number=number,
        series_sha256=_digest(
            path, f"{prefix}build.series-sha256", _value(path, build, "series-sha256", f"{prefix}build.")
        ),
        patches_dir=path.parent / _value(path, patches, "directory", f"{prefix}patches."),
        series_file=path.parent / _value(path, patches, "series", f"{prefix}patches."),
        stack=tuple(
            StackedPR(
                _value(path, entry, "branch", f"{prefix}pr.stack[{index}]."),
                tuple(entry.get("cases", ())),
                tuple(entry.get("differential", ())),
                _size(path, entry, f"{prefix}pr.stack[{index}]."),
            )
            for index, entry in enumerate(stack)
        ),
        build_table=f"{prefix}build",
    )


def _size(path: Path, entry: dict, prefix: str) -> str:
    """A stack entry's benchmark size (default cpu): one of the cases' sizes."""
    size = entry.get("size", "cpu")
    if size not in BENCHMARK_SIZES:
        raise ForkError(f"{path}: {prefix}size = {size!r}: expected one of {', '.join(BENCHMARK_SIZES)}")
    return size


def _table(path: Path, data: dict, key: str, prefix: str) -> dict:
    value = _value(path, data, key, prefix)
    if not isinstance(value, dict):
        raise ForkError(f"{path}: {prefix}{key} must be a table ([{prefix}{key}]), not {value!r}")
    return value


def _value(path: Path, data: dict, key: str, prefix: str) -> Any:
    """``data[key]``, or a ForkError naming the missing key as fork.toml spells it (``downstream.build.number``)."""
    try:
        return data[key]
    except KeyError:
        raise ForkError(f"{path}: missing key {prefix}{key}") from None


def _author(path: Path, value: str) -> str:
    if not re.fullmatch(r"[^<>]*[^<>\s] <[^<>\s]+@[^<>\s]+>", value):
        raise ForkError(f"{path}: pr.author must be 'Name <email>' (the person who sends the pull requests): {value!r}")
    return value


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed): concurrent builds take turns on build/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(path: Path, key: str, value: str) -> str:
    value = str(value).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ForkError(f"{path}: {key} is not a sha256 hex digest: {value!r}")
    return value


def series_digest(patches_dir: Path, series: list[str]) -> str:
    """sha256 over the ordered patches' diffs: what the build number tracks.

    Only the code counts (each patch from its first ``diff --git`` line on), not the names or the messages: a wheel
    is built from the code, so rewording a message (e.g. to add what this build measured) keeps the build number.
    """
    digest = hashlib.sha256()
    for name in series:
        digest.update(hashlib.sha256(patch_diff(patches_dir / name)).digest())
    return digest.hexdigest()


def patch_diff(path: Path) -> bytes:
    """The diff of a ``git format-patch`` file: from its first ``diff --git`` line to the end (all of it if none)."""
    data = path.read_bytes()
    start = data.find(b"\ndiff --git ")
    return data if start < 0 else data[start + 1 :]


def write_build(project: Project, number: int, series_sha256: str) -> None:
    """Rewrite the project's build table (``[build]`` or ``[downstream.build]``) in place, keeping the file's
    comments and layout."""
    lines = project.path.read_text(encoding="utf-8").splitlines(keepends=True)
    table, done = "", set()
    for index, line in enumerate(lines):
        header = re.fullmatch(r"\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?", line.rstrip("\n"))
        if header:
            table = header[1]
        elif table == project.build_table:
            for key, value in (("number", str(number)), ("series-sha256", f'"{series_sha256}"')):
                if re.match(rf"{key}\s*=", line):
                    lines[index], _ = re.subn(r"=.*", lambda _, v=value: f"= {v}", line.rstrip("\n"), count=1)
                    lines[index] += "\n"
                    done.add(key)
    if done != {"number", "series-sha256"}:
        raise ForkError(f"{project.path}: [{project.build_table}] lacks number or series-sha256")
    project.path.write_text("".join(lines), encoding="utf-8")
