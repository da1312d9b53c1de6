"""The upstream pull request, prepared in ``build/pr/`` (``nox -s pr``, or ``python -m linear_operator_fork pr``).

* ``build/pr/linear_operator/``: a git repository whose branch ``sparse-woodbury`` is the series, one commit per
  patch, on a base: by default the pinned release's tree from the verified sdist (works offline), or any upstream
  git ref (``--upstream-git URL --ref REF``);
* ``build/pr/linear_operator-fork.bundle``: that branch as a git bundle, to fetch into a clone of upstream;
* ``build/pr/PR_DESCRIPTION.md``: the problem, what each patch does (its commit message), the stock vs fork
  measurements of the last ``nox -s verify`` (``build/verify/results.json``) and how to reproduce them;
* ``build/pr/lint.txt``: upstream's own lint, at upstream's pinned versions, on the files the series touches.

``python -m linear_operator_fork apply DIR`` applies the series onto an existing git checkout of upstream (the
nightly ``upstream-main`` workflow) and names the first patch that no longer applies.
"""

from __future__ import annotations

import argparse
import email
import email.policy
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

from linear_operator_fork import queue, recipe, upstream
from linear_operator_fork.recipe import BUILD_DIR, ForkError

PR_DIR = BUILD_DIR / "pr"
LINT_ONLY_DIR = BUILD_DIR / "pr-lint"
RESULTS = BUILD_DIR / "verify" / "results.json"
BRANCH = "sparse-woodbury"
REPO_NAME = "linear_operator"
BUNDLE_NAME = "linear_operator-fork.bundle"
MARKER = ".made-by-linear_operator_fork-pr"
UPSTREAM_PR = "https://github.com/cornellius-gp/linear_operator/pull/120"
TITLE = "Woodbury solves without densifying sparse low-rank roots (follow-up to #120)"
SUITES = ("upstream-suite", "gpytorch-suite")
CASE_PARAMS = ("N", "n", "T", "m", "dtype", "layout")  # the parameters a case row shows (all, if none of these)
GIB = 1024**3
# Upstream's lint at upstream's pins (setup.py's "test" extra and .pre-commit-config.yaml of 0.6.1). usort 1.0.3
# is yanked on PyPI; pip installs it all the same when pinned exactly.
LINT_REQUIREMENTS = ("flake8==5.0.4", "flake8-print==5.0.0", "ufmt==2.0.0", "black==22.3.0", "usort==1.0.3")
LINT_EXCLUDE = ("build/", "docs/", "examples/")  # upstream's pre-commit excludes these from flake8 and ufmt
LINT_CLEAN = (
    " Upstream's own lint (flake8 5.0.4 with flake8-print, ufmt 2.0.0 with black 22.3.0 and usort 1.0.3) is clean on"
    " every Python file it touches."
)
TRAILER = re.compile(r"^[A-Z][A-Za-z-]+: \S.*$")


def log(message: str) -> None:
    print(f"pr: {message}", file=sys.stderr, flush=True)


# --- the branch ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    label: str  # what the branch is based on, for people
    commit: str  # the base commit in the PR repository
    upstream_history: bool  # True: a commit of upstream's git history; False: our commit of the sdist tree


class NoLongerApplies(ForkError):
    def __init__(self, patch: str, files: list[str], ref: str, detail: str):
        self.patch, self.files, self.ref = patch, files, ref
        where = ", ".join(files) if files else "(see git's output below)"
        super().__init__(f"patch {patch} no longer applies to {ref}; failing file(s): {where}\n{detail.strip()}")


def apply_onto(repo: Path, series: queue.Series, ref: str) -> None:
    """``git am`` the series onto ``repo``'s checked-out branch; ``ref`` names that base in errors."""
    try:
        queue.apply(repo, series)
    except queue.PatchFailed as exc:
        detail = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
        raise NoLongerApplies(exc.patch, exc.files, ref, detail) from None


def rev_parse(repo: Path, rev: str) -> str:
    return queue.git(repo, "rev-parse", "--verify", rev).stdout.strip()


def describe_head(repo: Path) -> str:
    """``main (v0.6.1-12-gabcdef123456)``: the branch (if any) and ``git describe`` of HEAD."""
    branch = queue.git(repo, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    described = queue.git(repo, "describe", "--tags", "--always", "--abbrev=12", "HEAD").stdout.strip()
    return described if branch == "HEAD" else f"{branch} ({described})"


def check_clean_checkout(repo: Path) -> None:
    if not repo.is_dir():
        raise ForkError(f"{repo}: no such folder (expected a git checkout of upstream)")
    inside = queue.git(repo, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise ForkError(f"{repo} is not a git checkout (git clone upstream there first)")
    if queue.git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise ForkError(f"{repo} has uncommitted changes; the series is applied onto a clean checkout only")


def branch_from_sdist(pristine: Path, series: queue.Series, repo: Path, label: str) -> Base:
    """Pristine tree as the base commit (tag ``upstream``), then one commit per patch on branch ``BRANCH``."""
    queue.init_pristine(pristine, repo, label)
    queue.git(repo, "branch", "--move", queue.BRANCH, BRANCH)
    apply_onto(repo, series, label)
    return Base(label, rev_parse(repo, f"refs/tags/{queue.BASE_TAG}^{{commit}}"), upstream_history=False)


def resolve(repo: Path, url: str, ref: str) -> str:
    """The commit ``ref`` (branch, tag or commit) names in a fresh clone of ``url``."""
    for candidate in (ref, f"origin/{ref}"):
        found = queue.git(repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False)
        if found.returncode == 0:
            return found.stdout.strip()
    fetched = queue.git(repo, "fetch", "--quiet", "origin", ref, check=False)
    if fetched.returncode == 0:
        return rev_parse(repo, "FETCH_HEAD^{commit}")
    raise ForkError(f"{ref!r} is not a branch, tag or commit of {url}:\n{fetched.stderr.strip()}")


def branch_from_git(url: str, ref: str, series: queue.Series, repo: Path) -> Base:
    """Clone ``url``, branch ``BRANCH`` off ``ref`` (tagged ``upstream``), one commit per patch on it."""
    if repo.exists() and any(repo.iterdir()):
        raise ForkError(f"{repo} is not empty; choose another folder or remove it")
    repo.parent.mkdir(parents=True, exist_ok=True)
    log(f"cloning {url}")
    queue.git(repo.parent, "clone", "--quiet", "--no-checkout", url, str(repo))
    commit = resolve(repo, url, ref)
    queue.git(repo, "checkout", "--quiet", "-B", BRANCH, commit)
    queue.git(repo, "tag", "--force", queue.BASE_TAG, commit)
    label = f"{url} {ref} ({commit[:12]})"
    apply_onto(repo, series, label)
    return Base(label, commit, upstream_history=True)


def set_author(repo: Path, base_commit: str, author: str) -> None:
    """Make ``author`` (``Name <email>``) the author and committer of every commit after the base, dated now."""
    match = re.fullmatch(r"\s*([^<>]*[^<>\s])\s*<([^<>\s]+@[^<>\s]+)>\s*", author)
    if match is None:
        raise ForkError(f"--author {author!r}: expected 'Name <email>'")
    name, mail = match.groups()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    who = {"NAME": name, "EMAIL": mail, "DATE": now}
    env = {
        **os.environ,
        **queue.GIT_ENV,
        **{f"GIT_{role}_{key}": v for role in ("AUTHOR", "COMMITTER") for key, v in who.items()},
    }
    amend = "git commit --quiet --amend --no-edit --no-verify --reset-author"
    result = subprocess.run(
        ["git", "rebase", "--quiet", "--exec", amend, base_commit], cwd=repo, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ForkError(f"git rebase --exec (setting the author) failed in {repo}:\n{result.stderr.strip()}")


def write_bundle(repo: Path, base: Base, bundle: Path) -> None:
    """The branch as a bundle: thin (needs the base commit) on upstream history, complete on the sdist tree."""
    revisions = [BRANCH, f"^{base.commit}"] if base.upstream_history else [BRANCH, queue.BASE_TAG]
    queue.git(repo, "bundle", "create", "--quiet", str(bundle.resolve()), *revisions)
    queue.git(repo, "bundle", "verify", "--quiet", str(bundle.resolve()))


# --- the description -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchInfo:
    name: str
    subject: str
    body: str
    trailers: dict[str, str]
    files: list[str]


def patch_info(path: Path) -> PatchInfo:
    """Subject, message body (without its trailers), trailers and touched files of an exported patch."""
    message = path.read_text(encoding="utf-8").split("\n---\n", 1)[0]
    parsed = email.message_from_string(message, policy=email.policy.default)
    subject = " ".join(str(parsed.get("Subject", path.stem)).split())
    paragraphs = [p.strip("\n") for p in str(parsed.get_payload()).strip().split("\n\n") if p.strip()]
    trailers: dict[str, str] = {}
    if paragraphs and all(TRAILER.match(line) for line in paragraphs[-1].splitlines()):
        trailers = dict(line.split(": ", 1) for line in paragraphs.pop().splitlines())
    body = "\n\n".join(unwrap(p) for p in paragraphs)
    return PatchInfo(path.name, subject, body, trailers, queue.touched_files(path))


def unwrap(paragraph: str) -> str:
    """Join a hard-wrapped prose paragraph into one line (GitHub keeps newlines); leave lists and code alone."""
    lines = paragraph.splitlines()
    if any(re.match(r"\s|[-*+] |\d+[.)] |```", line) for line in lines):
        return paragraph
    return " ".join(line.strip() for line in lines)


def load_records(path: Path) -> list[dict]:
    """The records of the last ``nox -s verify`` (``{"records": [...]}``)."""
    if not path.is_file():
        raise ForkError(
            f"{path} not found: run nox -s verify first (PR_DESCRIPTION.md shows the last verify's measurements)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ForkError(f"{path} is not valid JSON ({exc}); run nox -s verify again") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ForkError(f'{path}: expected {{"records": [...]}} as nox -s verify writes it')
    return records


def _cell(value: object) -> str:
    return "–" if value is None or value == "" else str(value).replace("|", "\\|").replace("\n", " ")


def _seconds(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else _cell(value)


def _gib(value: object) -> str:
    return f"{value / GIB:.3f}" if isinstance(value, int | float) else _cell(value)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _variants(records: list[dict]) -> list[str]:
    """stock first, then other stock releases, the fork, the plain-torch reference, anything else."""
    found = list(dict.fromkeys(str(r.get("variant")) for r in records))
    order = {"stock": 0, "fork": 2, "reference": 3}
    return sorted(found, key=lambda v: (order.get(v, 1 if v.startswith("stock") else 4), v))


def _params(record: dict) -> str:
    params = record.get("params") or {}
    if not isinstance(params, dict):
        return _cell(params)
    shown = {k: params[k] for k in CASE_PARAMS if k in params} or params
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "–"


def _measured(record: dict | None) -> str:
    """``ok, 1.25 s, 0.200 GiB``; a status other than ok in bold."""
    if record is None:
        return "–"
    status = _cell(record.get("status"))
    parts = [status if status == "ok" else f"**{status}**"]
    if isinstance(record.get("seconds"), int | float):
        parts.append(f"{_seconds(record['seconds'])} s")
    if isinstance(record.get("peak_bytes"), int | float):
        parts.append(f"{_gib(record['peak_bytes'])} GiB")
    return ", ".join(parts)


def cases_table(records: list[dict]) -> list[str]:
    """One row per (case, device, parameters); one cell per variant: status, seconds, peak GiB."""
    cases = [r for r in records if r.get("case") not in SUITES]
    if not cases:
        return ["No case was measured in this verify run."]
    variants = _variants(cases)
    rows: dict[tuple[str, str, str], dict[str, dict]] = {}
    for record in cases:  # a later record for the same case, device, parameters and variant wins
        key = (str(record.get("case")), _cell(record.get("device")), _params(record))
        rows.setdefault(key, {})[str(record.get("variant"))] = record
    speedup = {"stock", "fork"} <= set(variants)
    header = ["case", "device", "parameters", *variants] + (["time stock / fork"] if speedup else [])
    lines = [_row(header), _row(["---"] * len(header))]
    for (case, device, params), by_variant in rows.items():
        cells = [f"`{case}`", device, params, *(_measured(by_variant.get(v)) for v in variants)]
        if speedup:
            stock, fork = by_variant.get("stock", {}), by_variant.get("fork", {})
            ratio = "–"
            times = stock.get("seconds"), fork.get("seconds")
            if stock.get("status") == fork.get("status") == "ok" and all(isinstance(t, int | float) for t in times):
                ratio = f"{times[0] / times[1]:.1f}×" if times[1] else "–"
            cells.append(ratio)
        lines.append(_row(cells))
    notes = [r for r in cases if r.get("status") != "ok" and str(r.get("message") or "").strip()]
    if notes:
        lines += ["", "Messages:", ""]
        for r in notes:
            message = _cell(str(r["message"]).strip().splitlines()[0][:300])
            lines.append(f"- `{r.get('case')}` {_params(r)} ({r.get('variant')}, {r.get('status')}): {message}")
    return lines


def suites_table(records: list[dict]) -> list[str]:
    suites = [r for r in records if r.get("case") in SUITES]
    if not suites:
        return ["No test suite was run in this verify run."]
    header = ["suite", "variant", "version", "passed", "failed", "skipped", "status", "seconds"]
    lines = [_row(header), _row(["---"] * len(header))]
    for r in sorted(suites, key=lambda r: (SUITES.index(r["case"]), _variants(suites).index(str(r.get("variant"))))):
        keys = ("case", "variant", "version", "passed", "failed", "skipped", "status")
        lines.append(_row([_cell(r.get(key)) for key in keys] + [_seconds(r.get("seconds"))]))
    return lines


def versions_line(records: list[dict]) -> str:
    by_variant: dict[str, list[str]] = {}
    for r in records:
        if r.get("version"):
            by_variant.setdefault(str(r.get("variant")), [])
            if str(r["version"]) not in by_variant[str(r.get("variant"))]:
                by_variant[str(r.get("variant"))].append(str(r["version"]))
    parts = [f"{v} {', '.join(by_variant[v])}" for v in _variants(records) if v in by_variant]
    return "; ".join(parts)


def stale_versions(rec: recipe.Recipe, records: list[dict]) -> list[str]:
    """The fork versions the records measured, when the current series' version is not among them."""
    measured = sorted({str(r["version"]) for r in records if r.get("variant") == "fork" and r.get("version")})
    return measured if measured and rec.fork_version not in measured else []


def fork_url_default() -> str | None:
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server}/{repository}" if server and repository else None


def describe(
    rec: recipe.Recipe,
    patches: list[PatchInfo],
    records: list[dict],
    results: Path,
    base: Base,
    fork_url: str | None = None,
    lint_ok: bool | None = None,
) -> str:
    """PR_DESCRIPTION.md: problem, one section per patch, the measurements, how to reproduce."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.stat().st_mtime))
    stale = stale_versions(rec, records)
    fork = f"[the fork]({fork_url})" if fork_url else "the fork (linear_operator_fork)"
    out = [
        f"<!-- title: {TITLE} -->",
        f"<!-- generated by `nox -s pr` from patches/ ({rec.fork_version}) and {results.name} of {stamp}; "
        "edit the patches' commit messages, not this file -->",
        "",
        "## Problem",
        "",
        "A GP covariance `L K Lᵀ + D`, with `L` a large sparse `N × n` matrix (N ≫ n: aggregated or area "
        "observations, sensor footprints, change of support), `K = R Rᵀ` an `n × n` kernel and `D` diagonal noise, "
        "should be solved with Woodbury through an `n × n` capacitance matrix. Written as "
        "`LowRankRootLinearOperator(L @ R)` plus noise, `LowRankRootAddedDiagLinearOperator.chol_cap_mat` instead "
        "densifies the `N × r` product `L R` and runs out of memory for large N.",
        "",
        f"This was reported in #120 ({UPSTREAM_PR}), which computes `C + σ⁻¹ Vᵀ V` when the noise is a constant "
        "diagonal. As discussed there, the real cost is `MatmulLinearOperator.to_dense` multiplying `L` by `K^½`; "
        "the product should be regrouped as `K^(T/2) (Lᵀ L) K^(1/2)`. The commits below take that route, one step "
        "each.",
        "",
        "## Changes",
        "",
    ]
    for number, info in enumerate(patches, 1):
        out += [f"### {number}. {info.subject}", ""]
        if info.body:
            out += [info.body, ""]
        files = ", ".join(f"`{f}`" for f in info.files) or "none"
        trailers = "; ".join(f"{key}: {value}" for key, value in info.trailers.items())
        out += [f"Files: {files}" + (f". {trailers}" if trailers else ""), ""]
    out += [
        "## Measurements",
        "",
        f"Stock linear_operator {rec.version} against this branch, from the last verify run ({stamp}). "
        + (f"Versions: {versions_line(records)}." if versions_line(records) else ""),
        *([f"**Measured on {', '.join(stale)}; the branch is {rec.fork_version}.**"] if stale else []),
        "Status `oom`: out of memory; `limit`: stopped at the run's time or memory limit.",
        "",
        "### Cases",
        "",
        *cases_table(records),
        "",
        "### Test suites",
        "",
        *suites_table(records),
        "",
        "## How to reproduce",
        "",
        f"With {fork}, which builds linear_operator {rec.version} with these patches applied "
        f"(`{rec.version}+fork.N`) and measures it against the stock release:",
        "",
        "```sh",
        "pip install nox",
        "nox -s verify   # stock and fork wheels; upstream's and gpytorch's suites; the cases -> build/verify/",
        "nox -s pr       # this description, the branch, upstream's flake8/ufmt on the touched files -> build/pr/",
        "```",
        "",
        f"The branch `{BRANCH}` is based on {base.label}." + (LINT_CLEAN if lint_ok else ""),
        "",
    ]
    return "\n".join(out)


# --- upstream's lint -------------------------------------------------------------------------------------------


def lint_targets(repo: Path, files: Sequence[str]) -> list[str]:
    """The Python files (that still exist) among ``files``, minus what upstream's pre-commit excludes."""
    return [f for f in files if f.endswith(".py") and not f.startswith(LINT_EXCLUDE) and (repo / f).is_file()]


def check_lint_tools() -> None:
    wrong = []
    for requirement in LINT_REQUIREMENTS:
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
            f"`nox -s pr` (or pip install {' '.join(LINT_REQUIREMENTS)})"
        )


def lint_commands(targets: list[str]) -> list[tuple[str, list[str]]]:
    return [
        ("flake8 (upstream's setup.cfg)", [sys.executable, "-m", "flake8", *targets]),
        ("ufmt diff (black + usort, upstream's pyproject.toml)", [sys.executable, "-m", "ufmt", "diff", *targets]),
    ]


def upstream_lint(repo: Path, files: Sequence[str], output: Path) -> bool:
    """Run upstream's lint in ``repo`` on ``files``; write everything to ``output``; True when clean."""
    check_lint_tools()
    targets = lint_targets(repo, files)
    lines = [
        f"# upstream's lint in {repo}, on the Python files the series touches",
        "# " + ", ".join(f"{r.split('==')[0]} {_installed(r.split('==')[0])}" for r in LINT_REQUIREMENTS),
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
    parser.add_argument("--upstream-git", metavar="URL", help="base the branch on this upstream git repository")
    parser.add_argument("--ref", help="branch, tag or commit of --upstream-git (default: main)")
    parser.add_argument("--results", default=str(RESULTS), help="the verify results (default: %(default)s)")
    parser.add_argument("--out", help=f"output folder (default: {PR_DIR}, or {LINT_ONLY_DIR} with --lint-only)")
    parser.add_argument("--fork-url", default=fork_url_default(), help="this fork's URL, for the description")
    parser.add_argument("--author", help="'Name <email>': author and committer of the PR's commits (dated now)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lint-only", action="store_true", help="only the branch and upstream's lint (no results)")
    mode.add_argument("--no-lint", action="store_true", help="skip upstream's lint")


def run_pr(args: argparse.Namespace) -> None:
    if args.ref and not args.upstream_git:
        raise ForkError("--ref needs --upstream-git URL (without it, the base is the pinned release's sdist)")
    rec = recipe.load()
    series = queue.read_series(rec.series_file, rec.patches_dir)
    queue.validate_headers(series)
    results = Path(args.results)
    records = [] if args.lint_only else load_records(results)  # fail early, before the slow steps
    out = Path(args.out) if args.out else (LINT_ONLY_DIR if args.lint_only else PR_DIR)
    reset_output(out)
    repo = out / REPO_NAME
    steps = 2 if args.lint_only else (3 if args.no_lint else 4)
    log(f"[1/{steps}] branch {BRANCH}: {len(series.names)} patch(es) in {repo}")
    if args.upstream_git:
        base = branch_from_git(args.upstream_git, args.ref or "main", series, repo)
    else:
        label = f"{rec.name} {rec.version} (the pinned sdist, sha256 {rec.sha256[:12]}…)"
        base = branch_from_sdist(upstream.pristine_tree(rec), series, repo, label)
    if args.author:
        set_author(repo, base.commit, args.author)
    print(f"{repo}: branch {BRANCH} = {len(series.names)} commit(s) on {base.label}")
    lint_ok: bool | None = None
    if not args.no_lint:
        log(f"[2/{steps}] upstream's lint")
        files = list(dict.fromkeys(f for path in series.paths for f in queue.touched_files(path)))
        lint_ok = upstream_lint(repo, files, out / "lint.txt")
        print(f"{out / 'lint.txt'}: upstream's lint {'is clean' if lint_ok else 'FAILED'}")
    if not args.lint_only:
        bundle = out / BUNDLE_NAME
        log(f"[{steps - 1}/{steps}] bundle {bundle}")
        write_bundle(repo, base, bundle)
        needs = f" (needs upstream commit {base.commit})" if base.upstream_history else ""
        print(f"{bundle}: branch {BRANCH}{needs}")
        log(f"[{steps}/{steps}] description from {results}")
        if stale := stale_versions(rec, records):
            log(f"warning: {results} measured {', '.join(stale)}, the series is {rec.fork_version}: run nox -s verify")
        patches = [patch_info(path) for path in series.paths]
        description = out / "PR_DESCRIPTION.md"
        text = describe(rec, patches, records, results, base, args.fork_url, lint_ok)
        description.write_text(text, encoding="utf-8")
        print(f"{description}: {len(records)} verify record(s)")
        if not base.upstream_history:
            print(
                f"note: the branch is based on the sdist tree, not on upstream's history; for the pull request, "
                f"run again with --upstream-git {rec.url} --ref main"
            )
    if lint_ok is False:
        lint = out / "lint.txt"
        raise ForkError(f"upstream's lint failed on the patched files; see {lint}:\n{lint.read_text().strip()}")


def add_apply_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a clean git checkout of upstream (its checked-out branch receives the commits)")
    parser.add_argument("--ref", help="name of the checkout's ref in messages (default: git describe)")


def run_apply(args: argparse.Namespace) -> None:
    rec = recipe.load()
    series = queue.read_series(rec.series_file, rec.patches_dir)
    repo = Path(args.dir)
    check_clean_checkout(repo)
    ref = f"{args.ref} ({rev_parse(repo, 'HEAD')[:12]})" if args.ref else describe_head(repo)
    try:
        apply_onto(repo, series, ref)
    except NoLongerApplies as exc:
        if os.environ.get("GITHUB_ACTIONS") == "true":  # an annotation on the workflow run's summary
            print(f"::error title=Patch no longer applies::{str(exc).splitlines()[0]}", flush=True)
        raise
    print(f"applied {len(series.names)} patch(es) onto {ref}; HEAD is now {rev_parse(repo, 'HEAD')[:12]}")
