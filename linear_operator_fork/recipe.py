"""The pin (``fork.toml``): the upstream release and its sha256, the build number, the series, the pull requests."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    version: str
    sha256: str
    url: str
    build_number: int
    series_sha256: str
    patches_dir: Path
    series_file: Path
    downstream: Pin
    thread_release: str  # the release the PR #120 thread ran (case c also runs on it)
    author: str  # "Name <email>": the person who sends the pull requests, author of the patches
    stack: tuple[StackedPR, ...]  # the pull requests, one per patch, in series order

    @property
    def fork_version(self) -> str:
        return f"{self.version}+fork.{self.build_number}"

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


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
    try:
        upstream, build, patches, downstream = data["upstream"], data["build"], data["patches"], data["downstream"]
        sha256 = _digest(path, "upstream", upstream["sha256"])
        return Recipe(
            path=path,
            name=upstream["name"],
            version=upstream["version"],
            sha256=sha256,
            url=upstream["url"],
            build_number=int(build["number"]),
            series_sha256=build["series-sha256"],
            patches_dir=path.parent / patches["directory"],
            series_file=path.parent / patches["series"],
            downstream=Pin(
                downstream["name"], downstream["version"], _digest(path, "downstream", downstream["sha256"])
            ),
            thread_release=data["stock"]["thread-release"],
            author=_author(path, data["pr"]["author"]),
            stack=tuple(
                StackedPR(entry["branch"], tuple(entry.get("cases", ())), tuple(entry.get("differential", ())))
                for entry in data["pr"]["stack"]
            ),
        )
    except KeyError as exc:
        raise ForkError(f"{path}: missing key {exc}") from None


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


def _digest(path: Path, table: str, value: str) -> str:
    value = value.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ForkError(f"{path}: {table}.sha256 is not a sha256 hex digest: {value!r}")
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


def write_build(recipe: Recipe, number: int, series_sha256: str) -> None:
    """Rewrite the [build] values in place, keeping the file's comments and layout."""
    text = recipe.path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^number = \d+$", f"number = {number}", text, count=1)
    text = re.sub(r'(?m)^series-sha256 = "[0-9a-f]*"$', f'series-sha256 = "{series_sha256}"', text, count=1)
    recipe.path.write_text(text, encoding="utf-8")
