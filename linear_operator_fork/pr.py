"""The upstream pull requests, prepared in ``build/pr/`` (``nox -s pr``, or ``python -m linear_operator_fork pr``).

The series is a stack of pull requests (``fork.toml``'s ``pr.stack``): the k-th patch is the k-th pull request, on
the branch of the (k-1)-th (the first on upstream). ``build/pr/`` holds

* ``linear_operator/``: a git repository with one branch per pull request, each one commit (its patch) on the
  previous branch, on a base: by default the pinned release's tree from the verified sdist (works offline), or any
  upstream git ref (``--upstream-git URL --ref REF``);
* ``<k>-<branch>/``, one folder per pull request: ``PR_DESCRIPTION.md`` (its title, its own problem and change: the
  patch's commit message; its table against the pull request below it, from ``docs/prs/`` while current
  (:mod:`linear_operator_fork.prbench`); the cases and differential operations that measure it, from the last
  ``nox -s verify``;
  where it stands in the stack; how to reproduce), ``<branch>.bundle`` (its branch, to fetch into a clone of
  upstream) and ``lint.txt`` (upstream's own lint, at upstream's pinned versions, on the files it touches, at its
  branch).

``python -m linear_operator_fork apply DIR`` applies the series onto an existing git checkout of upstream (the
nightly ``upstream-main`` workflow) and names the first patch that no longer applies.

``--project gpytorch`` does the same for gpytorch's series and its own stack (``[[downstream.pr.stack]]``), into
``build/pr/gpytorch/`` (a ``gpytorch/`` repository and ``<k>-<branch>/`` folders), with gpytorch's lint at its pins;
an empty series prepares no pull request.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from linear_operator_fork import prbench, recipe, report, sdist, series
from linear_operator_fork.recipe import BUILD_DIR, ForkError
from linear_operator_fork.verify import records as record_files
from linear_operator_fork.verify.records import Record

PR_DIR = BUILD_DIR / "pr"
LINT_ONLY_DIR = BUILD_DIR / "pr-lint"
RESULTS = BUILD_DIR / "verify" / "results.json"
DIFFERENTIAL_RESULTS = BUILD_DIR / "differential" / "results.json"
REPO_NAME = "linear_operator"  # the repository folder: the project's name (gpytorch's: gpytorch)
MARKER = ".made-by-linear_operator_fork-pr"
UPSTREAM_PR = "https://github.com/cornellius-gp/linear_operator/pull/120"
# Upstream's lint at upstream's pins (setup.py's "test" extra and .pre-commit-config.yaml of 0.6.1). usort 1.0.3
# is yanked on PyPI; pip installs it all the same when pinned exactly.
LINT_REQUIREMENTS = ("flake8==5.0.4", "flake8-print==5.0.0", "ufmt==2.0.0", "black==22.3.0", "usort==1.0.3")
# gpytorch's, from its 1.15.2 .pre-commit-config.yaml (flake8 with its setup.cfg; ufmt with black and usort).
GPYTORCH_LINT_REQUIREMENTS = ("flake8==7.3.0", "ufmt==2.8.0", "black==22.3.0", "usort==1.0.3")
LINT_EXCLUDE = ("build/", "docs/", "examples/")  # both pre-commits exclude these from flake8 and ufmt


def lint_requirements(project: str) -> tuple[str, ...]:
    """The project's own lint tools at its pins."""
    return GPYTORCH_LINT_REQUIREMENTS if project == "gpytorch" else LINT_REQUIREMENTS


def lint_clean(requirements: Sequence[str]) -> str:
    tools = ", ".join(requirement.replace("==", " ") for requirement in requirements)
    return f" Upstream's own lint ({tools}) is clean on every Python file it touches."


def log(message: str) -> None:
    print(f"pr: {message}", file=sys.stderr, flush=True)


# --- the branches ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    label: str  # what the stack is based on, for people
    commit: str  # the base commit in the PR repository
    upstream_history: bool  # True: a commit of upstream's git history; False: our commit of the sdist tree


class NoLongerApplies(ForkError):
    def __init__(self, patch: str, files: list[str], ref: str, detail: str):
        self.patch, self.files, self.ref = patch, files, ref
        where = ", ".join(files) if files else "(see git's output below)"
        super().__init__(f"patch {patch} no longer applies to {ref}; failing file(s): {where}\n{detail.strip()}")


def apply_onto(repo: Path, patches: series.Series, ref: str) -> None:
    """``git am`` the patches onto ``repo``'s checked-out branch; ``ref`` names that base in errors."""
    try:
        series.apply(repo, patches)
    except series.PatchFailed as exc:
        detail = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
        raise NoLongerApplies(exc.patch, exc.files, ref, detail) from None


def apply_stack(repo: Path, patches: series.Series, stack: Sequence[recipe.StackedPR], ref: str) -> None:
    """One patch after the other, each on the previous one's branch: branch ``stack[k].branch`` is patch k."""
    if len(stack) != len(patches.names):
        raise ForkError(
            f"fork.toml's pr.stack has {len(stack)} pull request(s) for {len(patches.names)} patch(es): one per patch"
        )
    for name, pull_request in zip(patches.names, stack, strict=True):
        apply_onto(repo, series.Series(patches.directory, [name]), ref)
        series.git(repo, "branch", "--force", pull_request.branch, "HEAD")


def rev_parse(repo: Path, rev: str) -> str:
    return series.git(repo, "rev-parse", "--verify", rev).stdout.strip()


def describe_head(repo: Path) -> str:
    """``main (v0.6.1-12-gabcdef123456)``: the branch (if any) and ``git describe`` of HEAD."""
    branch = series.git(repo, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    described = series.git(repo, "describe", "--tags", "--always", "--abbrev=12", "HEAD").stdout.strip()
    return described if branch == "HEAD" else f"{branch} ({described})"


def check_clean_checkout(repo: Path) -> None:
    if not repo.is_dir():
        raise ForkError(f"{repo}: no such folder (expected a git checkout of upstream)")
    inside = series.git(repo, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise ForkError(f"{repo} is not a git checkout (git clone upstream there first)")
    if series.git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise ForkError(f"{repo} has uncommitted changes; the series is applied onto a clean checkout only")


def stack_from_sdist(
    pristine: Path, patches: series.Series, stack: Sequence[recipe.StackedPR], repo: Path, label: str
) -> Base:
    """The pristine tree as the base commit (tag ``upstream``), then the stack of branches."""
    series.init_pristine(pristine, repo, label)
    apply_stack(repo, patches, stack, label)
    return Base(label, rev_parse(repo, f"refs/tags/{series.BASE_TAG}^{{commit}}"), upstream_history=False)


def resolve(repo: Path, url: str, ref: str) -> str:
    """The commit ``ref`` (branch, tag or commit) names in a fresh clone of ``url``."""
    for candidate in (ref, f"origin/{ref}"):
        found = series.git(repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False)
        if found.returncode == 0:
            return found.stdout.strip()
    fetched = series.git(repo, "fetch", "--quiet", "origin", ref, check=False)
    if fetched.returncode == 0:
        return rev_parse(repo, "FETCH_HEAD^{commit}")
    raise ForkError(f"{ref!r} is not a branch, tag or commit of {url}:\n{fetched.stderr.strip()}")


def stack_from_git(url: str, ref: str, patches: series.Series, stack: Sequence[recipe.StackedPR], repo: Path) -> Base:
    """Clone ``url``, then the stack of branches on ``ref`` (tagged ``upstream``)."""
    if repo.exists() and any(repo.iterdir()):
        raise ForkError(f"{repo} is not empty; choose another folder or remove it")
    repo.parent.mkdir(parents=True, exist_ok=True)
    log(f"cloning {url}")
    series.git(repo.parent, "clone", "--quiet", "--no-checkout", url, str(repo))
    commit = resolve(repo, url, ref)
    series.git(repo, "checkout", "--quiet", "--detach", commit)
    series.git(repo, "tag", "--force", series.BASE_TAG, commit)
    label = f"{url} {ref} ({commit[:12]})"
    apply_stack(repo, patches, stack, label)
    return Base(label, commit, upstream_history=True)


def set_author(repo: Path, base_commit: str, tip: str, author: str) -> None:
    """Make ``author`` (``Name <email>``) the author and committer of every commit after the base, dated now; the
    stack's branches follow their rewritten commits."""
    match = re.fullmatch(r"\s*([^<>]*[^<>\s])\s*<([^<>\s]+@[^<>\s]+)>\s*", author)
    if match is None:
        raise ForkError(f"--author {author!r}: expected 'Name <email>'")
    name, mail = match.groups()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    who = {"NAME": name, "EMAIL": mail, "DATE": now}
    env = {
        **os.environ,
        **series.GIT_ENV,
        **{f"GIT_{role}_{key}": v for role in ("AUTHOR", "COMMITTER") for key, v in who.items()},
    }
    amend = "git commit --quiet --amend --no-edit --no-verify --reset-author"
    series.git(repo, "checkout", "--quiet", tip)
    result = subprocess.run(
        ["git", "rebase", "--quiet", "--update-refs", "--exec", amend, base_commit],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ForkError(f"git rebase --exec (setting the author) failed in {repo}:\n{result.stderr.strip()}")


def write_bundle(repo: Path, branch: str, since: str, bundle: Path) -> None:
    """The branch as a bundle of the commits after ``since`` (thin: fetching it needs ``since``)."""
    series.git(repo, "bundle", "create", "--quiet", str(bundle.resolve()), branch, f"^{since}")
    series.git(repo, "bundle", "verify", "--quiet", str(bundle.resolve()))


# --- the descriptions ------------------------------------------------------------------------------------------


def unwrap(paragraph: str) -> str:
    """Join a hard-wrapped prose paragraph into one line (GitHub keeps newlines); leave lists and code alone."""
    lines = paragraph.splitlines()
    if any(re.match(r"\s|[-*+] |\d+[.)] |```", line) for line in lines):
        return paragraph
    return " ".join(line.strip() for line in lines)


def load_records(path: Path) -> list[Record]:
    """The records of the last ``nox -s verify`` (``{"records": [...]}``)."""
    if not path.is_file():
        raise ForkError(
            f"{path} not found: run nox -s verify first (PR_DESCRIPTION.md shows the last verify's measurements)"
        )
    try:
        return record_files.read(path)
    except ForkError as exc:
        raise ForkError(f"{exc}; run nox -s verify again") from None


def load_differential(path: Path) -> dict | None:
    """The differential harness's results (``nox -s differential``), if any."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) and "by_op" in data else None


def differential_table(data: dict | None, ops: Sequence[str]) -> list[str]:
    """The differential harness's counts for the operations that test a pull request."""
    if data is None or not ops:
        return ["(no differential run: `nox -s differential`)"] if ops else []
    columns = ("cases", "stock_failures", "fork_failures", "fork_fails", "fork_better")
    lines = [
        "| operation | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---" * (1 + len(columns)) + "|",
    ]
    for op in ops:
        counts = data["by_op"].get(op)
        if counts:
            lines.append(f"| {op} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return lines


def stale_versions(rec: recipe.Project, records: list[Record]) -> list[str]:
    """The fork versions the records measured, when the current series' version is not among them (gpytorch's: the
    gpytorch versions of its ``gpytorch-fork`` suite records)."""
    variant, field = ("gpytorch-fork", "gpytorch") if rec.name == "gpytorch" else ("fork", "version")
    measured = sorted({str(r[field]) for r in records if r.get("variant") == variant and r.get(field)})
    return measured if measured and rec.fork_version not in measured else []


def fork_url_default() -> str | None:
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server}/{repository}" if server and repository else None


@dataclass(frozen=True)
class Pull:
    """One pull request of the stack, as the description needs it."""

    number: int  # 1-based position in the stack
    pull_request: recipe.StackedPR
    message: series.Message
    files: list[str]
    previous: str | None  # the branch it is stacked on (None: upstream)


def shown(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (``patches/linear_operator``), else as it is."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def describe(
    rec: recipe.Project,
    pull: Pull,
    total: int,
    records: list[Record],
    results: Path,
    differential: dict | None,
    base: Base,
    fork_url: str | None = None,
    lint_ok: bool | None = None,
    lint_tools: Sequence[str] = LINT_REQUIREMENTS,
    benchmark: Sequence[str] = (),
) -> str:
    """PR_DESCRIPTION.md of one pull request: title, its commit message, its measurements (``benchmark``: its prefix
    benchmark's lines, :func:`linear_operator_fork.prbench.description_lines`), the stack, reproduce."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.stat().st_mtime)) if results.exists() else "?"
    stale = stale_versions(rec, records)
    fork = f"[the fork]({fork_url})" if fork_url else "the fork (linear_operator_fork)"
    body = "\n\n".join(unwrap(p) for p in pull.message.body.split("\n\n") if p.strip())
    on = f"stacked on `{pull.previous}` (pull request {pull.number - 1} of {total})" if pull.previous else "on upstream"
    gpytorch = rec.name == "gpytorch"
    context = "" if gpytorch else f" It follows up on #120 ({UPSTREAM_PR})."
    out = [
        f"<!-- title: {pull.message.subject} -->",
        f"<!-- generated by `nox -s pr` from {shown(rec.patches_dir, rec.path.parent)}/ "
        f"({rec.fork_version}); edit the patch's commit message -->",
        "",
        f"Pull request {pull.number} of {total}, branch `{pull.pull_request.branch}`, {on}.{context}",
        "",
        body,
        "",
        f"Files: {', '.join(f'`{f}`' for f in pull.files) or 'none'}.",
        "",
        "## Measurements",
        "",
        *benchmark,
    ]
    cases = pull.pull_request.cases
    if cases:
        out += [
            f"Stock linear_operator {rec.version} against the fork with the whole stack ({rec.fork_version}), from the "
            f"last verify run ({stamp}): cases {', '.join(cases)}. Each cell: status, seconds, peak memory.",
            *([f"**Measured on {', '.join(stale)}; the stack is {rec.fork_version}.**"] if stale else []),
            "",
            *report.cases_table(records, cases),
            "",
        ]
    if pull.pull_request.differential:
        out += [
            "Differential harness (seeded cases of what users write, stock and fork against a dense float64 "
            "reference):",
            "",
            *differential_table(differential, pull.pull_request.differential),
            "",
        ]
    if not cases and not pull.pull_request.differential and not benchmark:
        out += ["Its tests (in the commit) are its measurement.", ""]
    suites = [r for r in records if record_files.is_suite(r) and (not gpytorch or r["case"] == "gpytorch-suite")]
    if suites:
        where = " (`gpytorch-fork`: this stack on the fork's linear_operator)" if gpytorch else ""
        out += [f"Test suites on the whole stack{where}:", ""]
        if gpytorch and stale:
            out += [f"**Measured on {', '.join(stale)}; the stack is {rec.fork_version}.**", ""]
        out += [*report.suites_table(suites), ""]
    out += [
        "## How to reproduce",
        "",
        f"With {fork}, which builds {rec.name} {rec.version} with the stack applied (`{rec.version}+fork.N`) "
        "and measures it against the stock release:",
        "",
        "```sh",
        "pip install nox",
        "nox -s verify   # stock and fork wheels; upstream's and gpytorch's suites; the cases -> build/verify/",
        "nox -s pr       # these descriptions, the branches, upstream's flake8/ufmt at each branch -> build/pr/",
        "```",
        "",
        f"The stack is based on {base.label}." + (lint_clean(lint_tools) if lint_ok else ""),
        "",
    ]
    return "\n".join(out)


# --- upstream's lint -------------------------------------------------------------------------------------------


def lint_targets(repo: Path, files: Sequence[str]) -> list[str]:
    """The Python files (that still exist) among ``files``, minus what upstream's pre-commit excludes."""
    return [f for f in files if f.endswith(".py") and not f.startswith(LINT_EXCLUDE) and (repo / f).is_file()]


def check_lint_tools(requirements: Sequence[str] = LINT_REQUIREMENTS) -> None:
    wrong = []
    for requirement in requirements:
        name, version = requirement.split("==")
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = None
        if found != version:
            wrong.append(f"{requirement} (found {found or 'none'})")
    if wrong:
        raise ForkError(
            f"upstream's lint needs its pinned tools in {sys.executable}: {', '.join(wrong)}; run it through "
            f"`nox -s pr` (or pip install {' '.join(requirements)})"
        )


def lint_commands(targets: list[str]) -> list[tuple[str, list[str]]]:
    return [
        ("flake8 (upstream's setup.cfg)", [sys.executable, "-m", "flake8", *targets]),
        ("ufmt diff (black + usort, upstream's pyproject.toml)", [sys.executable, "-m", "ufmt", "diff", *targets]),
    ]


def upstream_lint(
    repo: Path, files: Sequence[str], output: Path, requirements: Sequence[str] = LINT_REQUIREMENTS
) -> bool:
    """Run upstream's lint (``requirements``: its tools at its pins) in ``repo`` on ``files``; write everything to
    ``output``; True when clean."""
    check_lint_tools(requirements)
    targets = lint_targets(repo, files)
    lines = [
        f"# upstream's lint in {repo}, on the Python files the series touches",
        "# " + ", ".join(f"{r.split('==')[0]} {_installed(r.split('==')[0])}" for r in requirements),
        f"# files: {', '.join(targets) or 'none'}",
        "",
    ]
    ok = True
    if targets:
        for name, command in lint_commands(targets):
            log(f"{name} on {len(targets)} file(s)")
            result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
            ok = ok and result.returncode == 0
            text = (result.stdout + result.stderr).strip()
            lines += [f"$ {name}", text or "(no output)", f"exit status {result.returncode}", ""]
    lines.append(f"result: {'ok' if ok else 'FAILED'}")
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ok


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - check_lint_tools ran first
        return "missing"


# --- command line ----------------------------------------------------------------------------------------------


def reset_output(out: Path) -> None:
    """Empty ``out`` for a fresh run; refuse to delete a folder this command did not make."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ForkError(f"{out} exists and was not made by this command; choose another --out or remove it")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / MARKER).write_text("build/pr output of python -m linear_operator_fork pr; removed on the next run\n")


def add_pr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", choices=recipe.PROJECTS, default="linear_operator",
                        help="whose stack (default: %(default)s; gpytorch's goes to build/pr/gpytorch/)")  # fmt: skip
    parser.add_argument("--upstream-git", metavar="URL", help="base the stack on this upstream git repository")
    parser.add_argument("--ref", help="branch, tag or commit of --upstream-git (default: main)")
    parser.add_argument("--results", default=str(RESULTS), help="the verify results (default: %(default)s)")
    parser.add_argument(
        "--differential", default=str(DIFFERENTIAL_RESULTS), help="the differential results (default: %(default)s)"
    )
    parser.add_argument(
        "--out", help=f"output folder (default: {PR_DIR}, or {LINT_ONLY_DIR} with --lint-only; gpytorch: /gpytorch)"
    )
    parser.add_argument("--fork-url", default=fork_url_default(), help="this fork's URL, for the descriptions")
    parser.add_argument("--pr-benchmarks", type=Path, default=prbench.PRS_DIR,
                        help="each pull request's benchmark against the one below it (default: docs/prs)")  # fmt: skip
    parser.add_argument(
        "--author",
        help="'Name <email>': author and committer of the commits, dated now (default: fork.toml's pr.author)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lint-only", action="store_true", help="only the branches and upstream's lint (no results)")
    mode.add_argument("--no-lint", action="store_true", help="skip upstream's lint")


def run_pr(args: argparse.Namespace) -> int:
    if args.ref and not args.upstream_git:
        raise ForkError("--ref needs --upstream-git URL (without it, the base is the pinned release's sdist)")
    whole = recipe.load()
    rec = whole.project(args.project)
    patches = series.read_series(rec.series_file, rec.patches_dir)
    series.validate_headers(patches)
    out = Path(args.out) if args.out else (LINT_ONLY_DIR if args.lint_only else PR_DIR)
    if not args.out and rec.name != "linear_operator":
        out = out / rec.name
    if not patches.names:
        print(f"{rec.name}: the series ({rec.series_file}) is empty: no pull request to prepare")
        return 0
    results = Path(args.results)
    records = [] if args.lint_only else load_records(results)  # fail early, before the slow steps
    differential = None if args.lint_only else load_differential(Path(args.differential))
    lint_tools = lint_requirements(rec.name)
    reset_output(out)
    repo = out / rec.name
    stack = rec.stack
    log(f"[1/3] the stack: {len(patches.names)} pull request(s) in {repo}")
    if args.upstream_git:
        base = stack_from_git(args.upstream_git, args.ref or "main", patches, stack, repo)
    else:
        label = f"{rec.name} {rec.version} (the pinned sdist, sha256 {rec.sha256[:12]}…)"
        base = stack_from_sdist(sdist.pristine_tree(rec), patches, stack, repo, label)
    set_author(repo, base.commit, stack[-1].branch, args.author or whole.author)
    print(f"{repo}: branches {', '.join(p.branch for p in stack)} on {base.label}")
    pulls = []
    for number, (path, pull_request) in enumerate(zip(patches.paths, stack, strict=True), 1):
        previous = stack[number - 2].branch if number > 1 else None
        pulls.append(Pull(number, pull_request, series.message(path), series.touched_files(path), previous))
    log("[2/3] upstream's lint at each branch" if not args.no_lint else "[2/3] (no lint)")
    lint_results = {}
    for pull in pulls:
        folder = out / f"{pull.number}-{pull.pull_request.branch}"
        folder.mkdir()
        if not args.no_lint:
            series.git(repo, "checkout", "--quiet", pull.pull_request.branch)
            lint_results[pull.number] = upstream_lint(repo, pull.files, folder / "lint.txt", lint_tools)
    if stale := stale_versions(rec, records):
        log(f"warning: {results} measured {', '.join(stale)}, the series is {rec.fork_version}: run nox -s verify")
    if not args.lint_only:
        log("[3/3] bundles and descriptions")
        benchmarks = benchmark_sections(rec, args.pr_benchmarks)
        for pull in pulls:
            folder = out / f"{pull.number}-{pull.pull_request.branch}"
            since = pull.previous or base.commit
            write_bundle(repo, pull.pull_request.branch, since, folder / f"{pull.pull_request.branch}.bundle")
            text = describe(
                rec,
                pull,
                len(pulls),
                records,
                results,
                differential,
                base,
                args.fork_url,
                lint_results.get(pull.number),
                lint_tools,
                benchmarks.get(pull.number, ()),
            )
            (folder / "PR_DESCRIPTION.md").write_text(text, encoding="utf-8")
            print(f"{folder}: {pull.message.subject}")
        if not base.upstream_history:
            print(
                "note: the stack is based on the sdist tree, not on upstream's history; for the pull requests, "
                f"run again with --upstream-git {rec.url} --ref main"
            )
    failed = [number for number, ok in lint_results.items() if not ok]
    if failed:
        lints = [out / f"{pulls[n - 1].number}-{pulls[n - 1].pull_request.branch}" / "lint.txt" for n in failed]
        raise ForkError(
            "upstream's lint failed at pull request(s) "
            + ", ".join(map(str, failed))
            + ": see "
            + ", ".join(map(str, lints))
        )
    return 0


def benchmark_sections(rec: recipe.Project, folder: Path) -> dict[int, list[str]]:
    """Each pull request's prefix benchmark (docs/prs/<K>-<branch>.md) for its description, while current; the log
    names the missing and stale ones (never an error: a clean clone has none). linear_operator's stack only."""
    if rec.name != "linear_operator":
        return {}
    sections = {}
    for table in prbench.tables(rec, folder):
        if (problem := prbench.problem(table)) is not None:
            log(f"pull request {table.through}: no benchmark table ({problem}): {prbench.command(table.through)}")
        sections[table.through] = prbench.description_lines(table)
    return sections


def add_apply_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a clean git checkout of upstream (its checked-out branch receives the commits)")
    parser.add_argument("--ref", help="name of the checkout's ref in messages (default: git describe)")
    parser.add_argument(
        "--through",
        type=int,
        metavar="K",
        help="apply the first K patches only: pull request K of the stack and those below it",
    )


def run_apply(args: argparse.Namespace) -> int:
    rec = recipe.load().project(getattr(args, "project", "linear_operator"))
    patches = series.read_series(rec.series_file, rec.patches_dir)
    if args.through is not None:
        if not 1 <= args.through <= len(patches.names):
            raise ForkError(f"--through {args.through}: the series has patches 1 to {len(patches.names)}")
        patches = series.Series(patches.directory, patches.names[: args.through])
    repo = Path(args.dir)
    check_clean_checkout(repo)
    ref = f"{args.ref} ({rev_parse(repo, 'HEAD')[:12]})" if args.ref else describe_head(repo)
    try:
        apply_onto(repo, patches, ref)
    except NoLongerApplies as exc:
        if os.environ.get("GITHUB_ACTIONS") == "true":  # an annotation on the workflow run's summary
            print(f"::error title=Patch no longer applies::{str(exc).splitlines()[0]}", flush=True)
        raise
    print(f"applied {len(patches.names)} patch(es) onto {ref}; HEAD is now {rev_parse(repo, 'HEAD')[:12]}")
    return 0
