"""The upstream PR package (branch, bundle, description, upstream's lint) and `apply` onto an upstream checkout.

Everything here runs on the small synthetic upstream of conftest.py: no network, no real archive.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import pytest

from linear_operator_fork import __main__ as cli
from linear_operator_fork import pr, queue
from linear_operator_fork.recipe import ForkError

PATCH_1, PATCH_2 = "0001-Spell-out-five.patch", "0002-Add-new-module.patch"
GIB = 1024**3

RECORDS = [
    {"case": "a", "variant": "stock", "version": "1.0", "file": "s.json", "device": "cpu", "status": "ok",
     "peak_bytes": 4 * GIB, "seconds": 20.0, "message": "", "params": {"N": 100000, "n": 500, "dtype": "float32"}},
    {"case": "a", "variant": "fork", "version": "1.0+fork.1", "file": "f.json", "device": "cpu", "status": "ok",
     "peak_bytes": GIB // 2, "seconds": 2.0, "message": "", "params": {"N": 100000, "n": 500, "dtype": "float32"}},
    {"case": "b", "variant": "stock", "version": "1.0", "file": "s.json", "device": "cpu", "status": "oom",
     "peak_bytes": None, "seconds": 3.0, "message": "RuntimeError: can't allocate 58 GiB\ntraceback...",
     "params": {"N": 1000000}},
    {"case": "b", "variant": "fork", "version": "1.0+fork.1", "file": "f.json", "device": "cpu", "status": "ok",
     "peak_bytes": GIB, "seconds": 4.0, "message": "", "params": {"N": 1000000}},
    {"case": "upstream-suite", "variant": "fork", "version": "1.0+fork.1", "file": "", "device": "cpu",
     "status": "ok", "passed": 1504, "failed": 0, "skipped": 12, "peak_bytes": None, "seconds": 310.0, "message": ""},
    {"case": "upstream-suite", "variant": "stock", "version": "1.0", "file": "", "device": "cpu",
     "status": "ok", "passed": 1500, "failed": 0, "skipped": 12, "peak_bytes": None, "seconds": 300.0, "message": ""},
]  # fmt: skip


@pytest.fixture
def tiny_recipe(tiny_series, real_recipe):
    """The real recipe, pointed at the tiny series."""
    _, patches_dir, series_file = tiny_series
    return dataclasses.replace(real_recipe, patches_dir=patches_dir, series_file=series_file)


@pytest.fixture
def series(tiny_series) -> queue.Series:
    _, patches_dir, series_file = tiny_series
    return queue.read_series(series_file, patches_dir)


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "verify" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"generated": "2026-01-01T00:00:00+00:00", "records": RECORDS}))
    return path


def upstream_git(tmp_path: Path, pristine: Path) -> Path:
    """A git repository standing in for upstream's: the tiny tree tagged v1.0, then an unrelated commit on main."""
    repo = tmp_path / "upstream.git-work"
    queue.init_pristine(pristine, repo, "tiny 1.0")
    queue.git(repo, "branch", "--move", queue.BRANCH, "main")
    queue.git(repo, "tag", "v1.0")
    (repo / "README").write_text("upstream moved on\n")
    queue.git(repo, "add", "README")
    queue.git(repo, "commit", "--quiet", "-m", "Add a README")
    return repo


def subjects(repo: Path, revisions: str) -> list[str]:
    return queue.git(repo, "log", "--reverse", "--format=%s", revisions).stdout.splitlines()


# --- description ---------------------------------------------------------------------------------------------


def test_patch_info_splits_subject_body_and_trailers(series):
    first, second = (pr.patch_info(path) for path in series.paths)
    assert (first.subject, first.body, first.trailers) == ("Spell out five", "Because.", {"Forwarded": "not-yet"})
    assert second.body == ""
    assert second.trailers == {"Forwarded": "https://example.invalid/pr/1", "Bug": "https://example.invalid/1"}
    assert second.files == ["tiny/new.py", "tiny/other.py"]


def test_unwrap_joins_prose_and_keeps_lists():
    assert pr.unwrap("one\ntwo\nthree") == "one two three"
    assert pr.unwrap("- one\n- two") == "- one\n- two"
    assert pr.unwrap("text:\n    code()") == "text:\n    code()"


def test_description_renders_patches_and_measurements(tiny_recipe, series, results):
    base = pr.Base("tiny 1.0 (pristine sdist)", "0" * 40, upstream_history=False)
    patches = [pr.patch_info(path) for path in series.paths]
    text = pr.describe(tiny_recipe, patches, pr.load_records(results), results, base, "https://example.invalid/fork")
    assert pr.UPSTREAM_PR in text and "#120" in text
    assert "### 1. Spell out five\n\nBecause.\n" in text
    assert "### 2. Add new module" in text
    assert "Files: `tiny/new.py`, `tiny/other.py`. Forwarded: https://example.invalid/pr/1" in text
    assert "Forwarded: not-yet" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| case |"))
    assert header == "| case | device | parameters | stock | fork | time stock / fork |"
    assert (
        "| `a` | cpu | N=100000, n=500, dtype=float32 | ok, 20.00 s, 4.000 GiB | ok, 2.00 s, 0.500 GiB | 10.0× |"
        in lines
    )
    assert "| `b` | cpu | N=1000000 | **oom**, 3.00 s | ok, 4.00 s, 1.000 GiB | – |" in lines
    assert "- `b` N=1000000 (stock, oom): RuntimeError: can't allocate 58 GiB" in lines
    suites = [line for line in lines if line.startswith("| upstream-suite |")]
    assert suites == [  # stock first, whatever the records' order
        "| upstream-suite | stock | 1.0 | 1500 | 0 | 12 | ok | 300.00 |",
        "| upstream-suite | fork | 1.0+fork.1 | 1504 | 0 | 12 | ok | 310.00 |",
    ]
    assert "Versions: stock 1.0; fork 1.0+fork.1." in text
    assert "[the fork](https://example.invalid/fork)" in text and "nox -s verify" in text
    assert "lint" not in text.split("## How to reproduce")[1].split("```")[-1]  # lint not run: no claim about it


def test_description_renders_whatever_records_exist(tiny_recipe, series, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"records": [RECORDS[0]]}))
    base = pr.Base("tiny", "0" * 40, upstream_history=False)
    text = pr.describe(tiny_recipe, [], pr.load_records(path), path, base, lint_ok=True)
    assert "| case | device | parameters | stock |" in text and "time stock / fork" not in text
    assert "No test suite was run in this verify run." in text
    assert "is clean on every Python file it touches" in text
    path.write_text(json.dumps({"records": []}))
    text = pr.describe(tiny_recipe, [], pr.load_records(path), path, base)
    assert "No case was measured in this verify run." in text


def test_missing_results_says_run_verify_first(tmp_path):
    missing = tmp_path / "verify" / "results.json"
    with pytest.raises(ForkError) as info:
        pr.load_records(missing)
    assert str(missing) in str(info.value) and "run nox -s verify first" in str(info.value)


@pytest.mark.parametrize("content", ["not json", '{"cases": []}', '{"records": [1, 2]}', "[]"])
def test_malformed_results_are_named(tmp_path, content):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ForkError, match="results.json"):
        pr.load_records(path)


# --- branch and bundle ---------------------------------------------------------------------------------------


def test_branch_and_bundle_on_the_sdist_tree(tmp_path, tiny_series, series):
    pristine = tiny_series[0]
    repo = tmp_path / "pr" / "linear_operator"
    base = pr.branch_from_sdist(pristine, series, repo, "tiny 1.0 (pristine sdist)")
    assert not base.upstream_history
    assert queue.git(repo, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == pr.BRANCH
    assert subjects(repo, pr.BRANCH) == ["tiny 1.0 (pristine sdist)", "Spell out five", "Add new module"]
    assert subjects(repo, f"{base.commit}..{pr.BRANCH}") == ["Spell out five", "Add new module"]
    bundle = tmp_path / "pr" / pr.BUNDLE_NAME
    pr.write_bundle(repo, base, bundle)
    heads = queue.git(repo, "bundle", "list-heads", str(bundle)).stdout
    assert f"refs/heads/{pr.BRANCH}" in heads and f"refs/tags/{queue.BASE_TAG}" in heads
    clone = tmp_path / "from-bundle"
    queue.git(tmp_path, "clone", "--quiet", "--branch", pr.BRANCH, str(bundle), str(clone))
    assert subjects(clone, "HEAD") == ["tiny 1.0 (pristine sdist)", "Spell out five", "Add new module"]
    assert (clone / "tiny" / "new.py").read_text() == "NEW = True\n"


def test_branch_on_an_upstream_git_ref_and_thin_bundle(tmp_path, tiny_series, series):
    upstream = upstream_git(tmp_path, tiny_series[0])
    repo = tmp_path / "pr" / "linear_operator"
    base = pr.branch_from_git(str(upstream), "v1.0", series, repo)
    assert base.upstream_history and base.commit == queue.git(upstream, "rev-parse", "v1.0").stdout.strip()
    assert str(upstream) in base.label and "v1.0" in base.label
    assert subjects(repo, f"{base.commit}..{pr.BRANCH}") == ["Spell out five", "Add new module"]
    bundle = tmp_path / "pr" / pr.BUNDLE_NAME
    pr.write_bundle(repo, base, bundle)
    # A clone of upstream (which has the base commit) fetches the branch from the thin bundle.
    clone = tmp_path / "upstream-clone"
    queue.git(tmp_path, "clone", "--quiet", str(upstream), str(clone))
    queue.git(clone, "fetch", "--quiet", str(bundle), f"{pr.BRANCH}:{pr.BRANCH}")
    assert subjects(clone, f"v1.0..{pr.BRANCH}") == ["Spell out five", "Add new module"]
    # ... and a repository without it cannot: the bundle carries our commits only.
    empty = tmp_path / "empty"
    queue.git(tmp_path, "init", "--quiet", str(empty))
    assert queue.git(empty, "bundle", "verify", str(bundle), check=False).returncode != 0


def test_branch_on_main_by_name(tmp_path, tiny_series, series):
    upstream = upstream_git(tmp_path, tiny_series[0])
    repo = tmp_path / "linear_operator"
    base = pr.branch_from_git(str(upstream), "main", series, repo)
    assert subjects(repo, pr.BRANCH)[-3:] == ["Add a README", "Spell out five", "Add new module"]
    assert base.commit == queue.git(upstream, "rev-parse", "main").stdout.strip()


def test_unknown_git_ref_is_named(tmp_path, tiny_series, series):
    upstream = upstream_git(tmp_path, tiny_series[0])
    with pytest.raises(ForkError, match="'no-such-ref' is not a branch, tag or commit"):
        pr.branch_from_git(str(upstream), "no-such-ref", series, tmp_path / "linear_operator")


# --- apply onto an upstream checkout (upstream-main.yml) -----------------------------------------------------


def run_cli(monkeypatch, tiny_recipe, *argv: str) -> int:
    monkeypatch.setattr(pr.recipe, "load", lambda: tiny_recipe)
    return cli.main(list(argv))


def test_apply_onto_a_checkout(tmp_path, tiny_series, tiny_recipe, monkeypatch, capsys):
    upstream = upstream_git(tmp_path, tiny_series[0])
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream)) == 0
    assert subjects(upstream, "main")[-2:] == ["Spell out five", "Add new module"]
    out = capsys.readouterr().out
    assert "applied 2 patch(es) onto main (upstream-1-g" in out  # git describe of the checkout


def test_apply_names_the_first_patch_that_no_longer_applies(tmp_path, tiny_series, tiny_recipe, monkeypatch, capsys):
    upstream = upstream_git(tmp_path, tiny_series[0])
    (upstream / "tiny" / "other.py").write_text("x = 1\ny = 3\nz = 3\n")  # upstream changed the line 0002 patches
    queue.git(upstream, "commit", "--quiet", "-am", "Change y")
    head = queue.git(upstream, "rev-parse", "HEAD").stdout.strip()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream), "--ref", "main") == 1
    captured = capsys.readouterr()
    expected = f"patch {PATCH_2} no longer applies to main ({head[:12]}); failing file(s): tiny/other.py"
    assert f"error: {expected}" in captured.err
    assert f"::error title=Patch no longer applies::{expected}" in captured.out
    # The first patch went in; the failed `git am` was aborted, leaving a clean checkout.
    assert subjects(upstream, "main")[-1] == "Spell out five"
    assert not queue.git(upstream, "status", "--porcelain").stdout.strip()


def test_apply_refuses_a_dirty_or_missing_checkout(tmp_path, tiny_series, tiny_recipe, monkeypatch, capsys):
    upstream = upstream_git(tmp_path, tiny_series[0])
    (upstream / "tiny" / "other.py").write_text("dirty\n")
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream)) == 1
    assert "uncommitted changes" in capsys.readouterr().err
    plain = tmp_path / "plain"
    plain.mkdir()
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(plain)) == 1
    assert "not a git checkout" in capsys.readouterr().err
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(tmp_path / "nowhere")) == 1
    assert "no such folder" in capsys.readouterr().err


# --- the whole command, and upstream's lint ------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tiny_recipe, tiny_series):
    """`pr` on the tiny series, with the tiny tree as the pinned release's sdist."""
    monkeypatch.setattr(pr.recipe, "load", lambda: tiny_recipe)
    monkeypatch.setattr(pr.upstream, "pristine_tree", lambda rec: tiny_series[0])


def test_pr_command_writes_the_package(tmp_path, offline, results, capsys):
    out = tmp_path / "pr"
    assert cli.main(["pr", "--results", str(results), "--out", str(out), "--no-lint"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([pr.MARKER, "PR_DESCRIPTION.md", pr.BUNDLE_NAME, pr.REPO_NAME])
    assert subjects(out / pr.REPO_NAME, pr.BRANCH)[1:] == ["Spell out five", "Add new module"]
    assert "### 2. Add new module" in (out / "PR_DESCRIPTION.md").read_text()
    assert "--upstream-git" in capsys.readouterr().out  # how to rebase onto upstream's history
    # A second run starts afresh; a folder the command did not make is left alone.
    assert cli.main(["pr", "--results", str(results), "--out", str(out), "--no-lint"]) == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert cli.main(["pr", "--results", str(results), "--out", str(foreign), "--no-lint"]) == 1
    assert (foreign / "keep.txt").read_text() == "mine"


def test_pr_command_fails_early_without_results(tmp_path, offline, capsys):
    out = tmp_path / "pr"
    assert cli.main(["pr", "--results", str(tmp_path / "none.json"), "--out", str(out)]) == 1
    assert "run nox -s verify first" in capsys.readouterr().err
    assert not out.exists()


def test_ref_needs_upstream_git(tmp_path, offline, results, capsys):
    assert cli.main(["pr", "--results", str(results), "--out", str(tmp_path / "pr"), "--ref", "main"]) == 1
    assert "--ref needs --upstream-git" in capsys.readouterr().err


def fake_lint(monkeypatch, exit_status: int) -> None:
    monkeypatch.setattr(pr, "check_lint_tools", lambda: None)
    script = f"import sys; print('checked', *sys.argv[1:]); sys.exit({exit_status})"
    monkeypatch.setattr(pr, "lint_commands", lambda targets: [("fake lint", [sys.executable, "-c", script, *targets])])


def test_lint_failure_fails_the_command_after_writing_everything(tmp_path, offline, results, monkeypatch, capsys):
    fake_lint(monkeypatch, exit_status=1)
    out = tmp_path / "pr"
    assert cli.main(["pr", "--results", str(results), "--out", str(out)]) == 1
    assert "upstream's lint failed" in capsys.readouterr().err
    lint = (out / "lint.txt").read_text()
    assert "checked tiny/__init__.py tiny/new.py tiny/other.py" in lint and lint.endswith("result: FAILED\n")
    description = (out / "PR_DESCRIPTION.md").read_text()
    assert "Add new module" in description and "is clean on" not in description


def test_lint_only(tmp_path, offline, monkeypatch):
    fake_lint(monkeypatch, exit_status=0)
    out = tmp_path / "lint"
    assert cli.main(["pr", "--lint-only", "--out", str(out), "--results", str(tmp_path / "none.json")]) == 0
    assert (out / "lint.txt").read_text().endswith("result: ok\n")
    assert not (out / "PR_DESCRIPTION.md").exists() and not (out / pr.BUNDLE_NAME).exists()


def test_lint_targets_are_existing_python_files_outside_excluded_folders(tmp_path):
    for name in ("a.py", "docs/conf.py", "examples/x.py", "pkg/b.py", "pkg/data.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    files = ["a.py", "docs/conf.py", "examples/x.py", "pkg/b.py", "pkg/data.txt", "pkg/deleted.py"]
    assert pr.lint_targets(tmp_path, files) == ["a.py", "pkg/b.py"]


def test_no_python_file_touched_runs_no_lint(tmp_path, monkeypatch):
    monkeypatch.setattr(pr, "check_lint_tools", lambda: None)
    monkeypatch.setattr(pr, "lint_commands", lambda targets: pytest.fail("no lint tool may run on zero files"))
    assert pr.upstream_lint(tmp_path, ["README.md"], tmp_path / "lint.txt")
    assert "# files: none" in (tmp_path / "lint.txt").read_text()


def test_lint_tools_must_be_upstreams_pins(monkeypatch):
    def version(name: str) -> str:
        if name == "black":
            return "24.1.0"
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pr.importlib.metadata, "version", version)
    with pytest.raises(ForkError) as info:
        pr.check_lint_tools()
    assert "black==22.3.0 (found 24.1.0)" in str(info.value) and "flake8==5.0.4 (found none)" in str(info.value)
    assert "nox -s pr" in str(info.value)


def _has_lint_tools() -> bool:
    try:
        pr.check_lint_tools()
    except ForkError:
        return False
    return True


@pytest.mark.skipif(not _has_lint_tools(), reason="upstream's pinned lint tools are not installed (nox -s pr has them)")
def test_upstream_lint_with_the_real_tools(tmp_path):
    for name in ("setup.cfg", "pyproject.toml"):
        (tmp_path / name).write_text(
            "[flake8]\nmax-line-length = 120\n" if name == "setup.cfg" else "[tool.black]\nline-length = 120\n"
        )
    (tmp_path / "good.py").write_text("import os\n\n\ndef f(x):\n    return os.sep, x\n")
    (tmp_path / "bad.py").write_text("import sys\nimport os\ndef f( x ):\n  print(x)\n")
    assert pr.upstream_lint(tmp_path, ["good.py"], tmp_path / "good.txt")
    assert not pr.upstream_lint(tmp_path, ["bad.py"], tmp_path / "bad.txt")
    text = (tmp_path / "bad.txt").read_text()
    assert "bad.py:3:1: E302" in text and "T201" in text and "+import os" in text


def test_python_m_pr_module_has_the_same_options():
    parser = argparse.ArgumentParser()
    pr.add_pr_arguments(parser)
    args = parser.parse_args(["--upstream-git", "u", "--ref", "r", "--no-lint"])
    assert (args.upstream_git, args.ref, args.no_lint, args.lint_only) == ("u", "r", True, False)
    assert shutil.which("git")


def test_author_of_the_pr_commits(tmp_path, offline, results):
    out = tmp_path / "pr"
    argv = [
        "pr",
        "--results",
        str(results),
        "--out",
        str(out),
        "--no-lint",
        "--author",
        "Ada Lovelace <ada@example.org>",
    ]
    assert cli.main(argv) == 0
    repo = out / pr.REPO_NAME
    people = queue.git(repo, "log", "--format=%an <%ae>|%cn <%ce>|%s", pr.BRANCH).stdout.splitlines()
    assert people[:2] == [
        "Ada Lovelace <ada@example.org>|Ada Lovelace <ada@example.org>|Add new module",
        "Ada Lovelace <ada@example.org>|Ada Lovelace <ada@example.org>|Spell out five",
    ]
    assert "Ada" not in people[2]  # the base commit is untouched
    assert queue.git(repo, "log", "-1", "--format=%ad", "--date=format:%Y", pr.BRANCH).stdout.strip() != "2000"
    assert cli.main([*argv[:-1], "nobody"]) == 1


def test_stale_measurements_are_flagged(tiny_recipe, results):
    records = pr.load_records(results)
    assert pr.stale_versions(tiny_recipe, records) == ["1.0+fork.1"]
    current = [{**r, "version": tiny_recipe.fork_version} if r["variant"] == "fork" else r for r in records]
    assert pr.stale_versions(tiny_recipe, current) == []
    base = pr.Base("tiny", "0" * 40, upstream_history=False)
    assert f"**Measured on 1.0+fork.1; the branch is {tiny_recipe.fork_version}.**" in pr.describe(
        tiny_recipe, [], records, results, base
    )
