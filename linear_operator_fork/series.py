"""The patch series: ``patches/<project>/series`` lists our patches to one upstream, applied in order with ``git am``.

``checkout`` materialises a git repository whose first commit is the pristine upstream tree
(tagged ``upstream``) with one commit per patch; ``export`` writes those commits back with a
deterministic ``git format-patch`` (no dates, commit hashes or git version that churn);
``check`` proves that the series applies without fuzz and that exporting it again gives
byte-identical files.

Each patch carries DEP-3 style trailers at the end of its message (``Forwarded:`` is required: ``no``,
``not-needed`` or the URL of the upstream pull request; ``Bug:`` optional), so a reader sees where it stands
upstream; :func:`message` reads them with ``git interpret-trailers``. The author of every exported patch is
the recipe's ``pr.author``, the person who sends the pull requests.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from linear_operator_fork.recipe import ForkError

BASE_TAG = "upstream"
BRANCH = "fork"
REQUIRED_HEADERS = ("Forwarded",)
# Fixed identities and dates, so that a checkout is the same repository every time.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "linear_operator upstream",
    "GIT_AUTHOR_EMAIL": "upstream@linear-operator-fork.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "linear_operator_fork",
    "GIT_COMMITTER_EMAIL": "queue@linear-operator-fork.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


class PatchFailed(ForkError):
    def __init__(self, patch: str, files: list[str], detail: str):
        self.patch, self.files = patch, files
        where = ", ".join(files) if files else "(see below)"
        super().__init__(f"patch {patch} does not apply cleanly; failing file(s): {where}\n{detail.strip()}")


@dataclass(frozen=True)
class Series:
    directory: Path
    names: list[str]

    @property
    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.names]


def read_series(series_file: Path, directory: Path) -> Series:
    """Patch names in order: one per line, ``#`` starts a comment."""
    if not series_file.is_file():
        raise ForkError(f"series file not found: {series_file}")
    names = []
    for number, line in enumerate(series_file.read_text(encoding="utf-8").splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not (directory / name).is_file():
            raise ForkError(f"{series_file}:{number}: patch {name} listed but not found in {directory}")
        names.append(name)
    return Series(directory, names)


def write_series(series_file: Path, names: list[str]) -> None:
    header = "# Our patches to upstream, in the order `git am` applies them.\n"
    series_file.write_text(header + "".join(f"{name}\n" for name in names), encoding="utf-8")


@dataclass(frozen=True)
class Message:
    """The commit message of an exported patch: subject, body (without its trailers) and trailers."""

    subject: str
    body: str
    trailers: dict[str, str]


def message(patch: Path) -> Message:
    """Subject, body and trailers (``git interpret-trailers --parse``) of a patch's commit message."""
    header = patch.read_text(encoding="utf-8").split("\n---\n", 1)[0]
    parsed = email.message_from_string(header, policy=email.policy.default)
    subject = " ".join(str(parsed.get("Subject", patch.stem)).split())
    text = f"{subject}\n\n{str(parsed.get_payload()).strip()}\n"
    result = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=text, capture_output=True, text=True, check=True
    )
    trailers = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    paragraphs = [p for p in str(parsed.get_payload()).strip().split("\n\n") if p.strip()]
    if trailers and paragraphs:
        paragraphs.pop()  # the trailer block is the last paragraph
    return Message(subject, "\n\n".join(p.strip("\n") for p in paragraphs), trailers)


def headers(patch: Path) -> dict[str, str]:
    """DEP-3 style trailers of a patch's commit message."""
    return message(patch).trailers


def touched_files(patch: Path) -> list[str]:
    """Paths (relative to the upstream root) a patch creates, changes or deletes."""
    files = []
    for a, b in re.findall(r"(?m)^diff --git a/(\S+) b/(\S+)$", patch.read_text(encoding="utf-8")):
        files.extend(path for path in (a, b) if path not in files)
    return files


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise ForkError("git is required to apply the patch series, and it is not on PATH")
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ForkError(f"git {' '.join(args)} failed in {repo}:\n{result.stderr.strip()}")
    return result


def init_pristine(pristine: Path, destination: Path, label: str) -> None:
    """Copy the pristine tree to ``destination`` and commit it as the ``upstream`` tag."""
    if destination.exists() and any(destination.iterdir()):
        raise ForkError(f"{destination} is not empty; choose another folder or remove it")
    shutil.copytree(pristine, destination, dirs_exist_ok=True)
    git(destination, "init", "--quiet", "--initial-branch", BRANCH)
    git(destination, "add", "--all", "--force")
    git(destination, "commit", "--quiet", "--no-verify", "-m", label)
    git(destination, "tag", BASE_TAG)


def apply(repo: Path, series: Series) -> None:
    """``git am`` each patch in order (no fuzz: git refuses any hunk whose context moved)."""
    for patch in series.paths:
        result = git(repo, "am", "--quiet", "--keep-cr", "--committer-date-is-author-date", str(patch), check=False)
        if result.returncode != 0:
            detail = result.stdout + result.stderr
            files = re.findall(r"error: (?:patch failed: |)([^:\s]+)(?::\d+|: (?:No such file|does not exist))", detail)
            git(repo, "am", "--abort", check=False)
            raise PatchFailed(patch.name, sorted(set(files)), detail)


def checkout(pristine: Path, series: Series, destination: Path, label: str) -> Path:
    init_pristine(pristine, destination, label)
    apply(destination, series)
    return destination


def format_patches(repo: Path, out_dir: Path, author: str) -> list[str]:
    """Deterministic ``git format-patch`` of ``upstream..HEAD`` into ``out_dir``, every patch from ``author``;
    returns the names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = git(
        repo, "format-patch", "--zero-commit", "--no-signature", "--keep-subject", "--full-index",
        "--no-numbered", "--stat=200,120", "--output-directory", str(out_dir), f"{BASE_TAG}..HEAD",
    )  # fmt: skip
    names = [Path(line).name for line in result.stdout.splitlines() if line.strip()]
    for name in names:
        path = out_dir / name
        text = re.sub(r"(?m)^Date: .*\n", "", path.read_text(encoding="utf-8"), count=1)
        # the whole header, continuation lines too (git folds a long one)
        text = re.sub(r"(?m)^From: .*(?:\n[ \t].*)*$", lambda _: f"From: {author}", text, count=1)
        path.write_text(text, encoding="utf-8")
    return names


def export(repo: Path, series_file: Path, patches_dir: Path, author: str) -> list[str]:
    """Write ``upstream..HEAD`` of ``repo`` back to ``patches_dir`` and the series file."""
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{BASE_TAG}", check=False).returncode != 0:
        raise ForkError(f"{repo} has no '{BASE_TAG}' tag: is it made by 'python -m linear_operator_fork checkout'?")
    if git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise ForkError(f"{repo} has uncommitted changes: commit them (one commit per patch) before exporting")
    with tempfile.TemporaryDirectory() as tmp:
        names = format_patches(repo, Path(tmp), author)
        validate_headers(Series(Path(tmp), names))
        patches_dir.mkdir(parents=True, exist_ok=True)
        for old in patches_dir.glob("*.patch"):
            if old.name not in names:
                old.unlink()
        for name in names:
            shutil.copyfile(Path(tmp) / name, patches_dir / name)
    write_series(series_file, names)
    return names


DEP3_FORWARDED = re.compile(r"no|not-needed|https?://\S+")


def validate_headers(series: Series) -> None:
    """Every patch has the required DEP-3 trailers, and ``Forwarded:`` a DEP-3 value."""
    for patch in series.paths:
        trailers = headers(patch)
        missing = [key for key in REQUIRED_HEADERS if key not in trailers]
        if missing:
            raise ForkError(
                f"patch {patch.name} lacks the DEP-3 trailer(s) {', '.join(missing)} at the end of its message: "
                "add e.g. 'Forwarded: no' (DEP-3: no, not-needed, or the URL of the upstream pull request)"
            )
        if not DEP3_FORWARDED.fullmatch(trailers["Forwarded"]):
            raise ForkError(
                f"patch {patch.name}: 'Forwarded: {trailers['Forwarded']}' is not a DEP-3 value (no, not-needed, or "
                "the URL of the upstream pull request; any other value reads as already forwarded)"
            )


def round_trip(pristine: Path, series: Series, series_file: Path, label: str, author: str) -> None:
    """Apply the series in a scratch checkout, export it again, and demand identical bytes."""
    validate_headers(series)
    with tempfile.TemporaryDirectory() as tmp:
        repo = checkout(pristine, series, Path(tmp) / "tree", label)
        exported = Path(tmp) / "patches"
        names = format_patches(repo, exported, author)
        if names != series.names:
            raise ForkError(
                f"export would rename or reorder the series: {series.names} -> {names}; "
                "run 'python -m linear_operator_fork export' after a checkout"
            )
        for name in names:
            if (exported / name).read_bytes() != (series.directory / name).read_bytes():
                raise ForkError(
                    f"patch {name} is not in exported form (a hand edit, or a stale export); "
                    "run 'python -m linear_operator_fork checkout', then 'export'"
                )
        expected_series = Path(tmp) / "series"
        write_series(expected_series, names)
        if expected_series.read_bytes() != series_file.read_bytes():
            raise ForkError(f"{series_file} is not in exported form; run 'python -m linear_operator_fork export'")
