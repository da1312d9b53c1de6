"""The stacked upstream pull requests (branches, bundles, descriptions, upstream's lint) and `apply`.

Everything here runs on the small synthetic upstream of conftest.py: no network, no real archive.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import sys
from pathlib import Path

import pytest
from conftest import TEST_AUTHOR

from linear_operator_fork import __main__ as cli
from linear_operator_fork import pr, series
from linear_operator_fork.recipe import ForkError, StackedPR

PATCH_1, PATCH_2 = "0001-Spell-out-five.patch", "0002-Add-new-module.patch"
GIB = 1024**3
STACK = (StackedPR("five", ("a",), ()), StackedPR("new-module", ("b",), ("index",)))
FOLDERS = ["1-five", "2-new-module"]

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
DIFFERENTIAL = {
    "by_op": {"index": {"cases": 40, "stock_failures": 7, "fork_failures": 0, "fork_fails": 0, "fork_better": 7}}
}


@pytest.fixture
def tiny_recipe(tiny_series, real_recipe):
    """The real recipe, pointed at the tiny series, with a stack of two pull requests."""
    _, patches_dir, series_file = tiny_series
    return dataclasses.replace(
        real_recipe, patches_dir=patches_dir, series_file=series_file, stack=STACK, author=TEST_AUTHOR
    )


@pytest.fixture
def patches(tiny_series) -> series.Series:
    _, patches_dir, series_file = tiny_series
    return series.read_series(series_file, patches_dir)


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "verify" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"generated": "2026-01-01T00:00:00+00:00", "records": RECORDS}))
    return path


def upstream_git(tmp_path: Path, pristine: Path) -> Path:
    """A git repository standing in for upstream's: the tiny tree tagged v1.0, then an unrelated commit on main."""
    repo = tmp_path / "upstream.git-work"
    series.init_pristine(pristine, repo, "tiny 1.0")
    series.git(repo, "branch", "--move", series.BRANCH, "main")
    series.git(repo, "tag", "v1.0")
    (repo / "README").write_text("upstream moved on\n")
    series.git(repo, "add", "README")
    series.git(repo, "commit", "--quiet", "-m", "Add a README")
    return repo


def subjects(repo: Path, revisions: str) -> list[str]:
    return series.git(repo, "log", "--reverse", "--format=%s", revisions).stdout.splitlines()


def pulls(patches: series.Series) -> list[pr.Pull]:
    return [
        pr.Pull(
            k, STACK[k - 1], series.message(path), series.touched_files(path), STACK[k - 2].branch if k > 1 else None
        )
        for k, path in enumerate(patches.paths, 1)
    ]


# --- descriptions --------------------------------------------------------------------------------------------


def test_unwrap_joins_prose_and_keeps_lists():
    assert pr.unwrap("one\ntwo\nthree") == "one two three"
    assert pr.unwrap("- one\n- two") == "- one\n- two"
    assert pr.unwrap("text:\n    code()") == "text:\n    code()"


def test_each_description_is_its_own_pull_request(tiny_recipe, patches, results):
    base = pr.Base("tiny 1.0 (pristine sdist)", "0" * 40, upstream_history=False)
    records = pr.load_records(results)
    first, second = (
        pr.describe(tiny_recipe, pull, 2, records, results, DIFFERENTIAL, base, "https://example.invalid/fork")
        for pull in pulls(patches)
    )
    assert first.startswith("<!-- title: Spell out five -->")
    assert "Pull request 1 of 2, branch `five`, on upstream." in first and pr.UPSTREAM_PR in first
    assert "\nBecause.\n" in first and "Forwarded" not in first  # the body, without the trailers
    assert "Files: `tiny/__init__.py`." in first
    # Its own measured cases only (a), rendered by the report module.
    assert "| a | cpu | N=100000, n=500, dtype=float32 | ok, 20.0 s, 4.00 GiB | ok, 2.00 s, 0.50 GiB | 8.00× |" in first
    assert "| b |" not in first and "Differential harness" not in first
    assert "Pull request 2 of 2, branch `new-module`, stacked on `five` (pull request 1 of 2)." in second
    assert "| b | cpu | N=1000000 | **oom** | ok, 4.00 s, 1.00 GiB |" in second and "| a |" not in second
    assert "- case b N=1000000 stock (oom): RuntimeError: can't allocate 58 GiB" in second
    assert "| index | 40 | 7 | 0 | 0 | 7 |" in second
    for text in (first, second):
        assert "| upstream-suite | fork | 1504 | 0 | 12 | 310.0 |" in text
        assert "[the fork](https://example.invalid/fork)" in text and "nox -s verify" in text
        assert "is clean on" not in text  # lint not run: no claim about it


def test_description_without_measurements_or_differential(tiny_recipe, patches, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"records": []}))
    base = pr.Base("tiny", "0" * 40, upstream_history=False)
    first, second = pulls(patches)
    bare = dataclasses.replace(first, pull_request=StackedPR("five", (), ()))
    text = pr.describe(tiny_recipe, bare, 2, [], path, None, base, lint_ok=True)
    assert "Its tests (in the commit) are its measurement." in text
    assert "is clean on every Python file it touches" in text
    text = pr.describe(tiny_recipe, second, 2, [], path, None, base)
    assert "(no differential run: `nox -s differential`)" in text


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


def test_stale_measurements_are_flagged(tiny_recipe, patches, results):
    records = pr.load_records(results)
    assert pr.stale_versions(tiny_recipe, records) == ["1.0+fork.1"]
    current = [{**r, "version": tiny_recipe.fork_version} if r["variant"] == "fork" else r for r in records]
    assert pr.stale_versions(tiny_recipe, current) == []
    base = pr.Base("tiny", "0" * 40, upstream_history=False)
    text = pr.describe(tiny_recipe, pulls(patches)[0], 2, records, results, None, base)
    assert f"**Measured on 1.0+fork.1; the stack is {tiny_recipe.fork_version}.**" in text


# --- the stack of branches, and the bundles ------------------------------------------------------------------


def test_stack_on_the_sdist_tree_and_its_bundles(tmp_path, tiny_series, patches):
    pristine = tiny_series[0]
    repo = tmp_path / "pr" / "linear_operator"
    base = pr.stack_from_sdist(pristine, patches, STACK, repo, "tiny 1.0 (pristine sdist)")
    assert not base.upstream_history
    assert subjects(repo, f"{base.commit}..five") == ["Spell out five"]
    assert subjects(repo, "five..new-module") == ["Add new module"]
    assert subjects(repo, "new-module") == ["tiny 1.0 (pristine sdist)", "Spell out five", "Add new module"]
    first, second = tmp_path / "five.bundle", tmp_path / "new-module.bundle"
    pr.write_bundle(repo, "five", base.commit, first)
    pr.write_bundle(repo, "new-module", "five", second)
    # A clone of the base fetches the first bundle, then the second (which needs the first's commit).
    clone = tmp_path / "clone"
    series.git(
        tmp_path, "clone", "--quiet", "--single-branch", "--branch", series.BASE_TAG, f"file://{repo}", str(clone)
    )
    assert series.git(clone, "bundle", "verify", str(second), check=False).returncode != 0  # needs pr 1 first
    series.git(clone, "fetch", "--quiet", str(first), "five:pr-1")
    series.git(clone, "fetch", "--quiet", str(second), "new-module:pr-2")
    assert subjects(clone, "pr-1..pr-2") == ["Add new module"]
    empty = tmp_path / "empty"
    series.git(tmp_path, "init", "--quiet", str(empty))
    assert series.git(empty, "bundle", "verify", str(second), check=False).returncode != 0  # thin: needs pr 1


def test_stack_needs_one_pull_request_per_patch(tmp_path, tiny_series, patches):
    with pytest.raises(ForkError, match="pr.stack has 1 pull request"):
        pr.stack_from_sdist(tiny_series[0], patches, STACK[:1], tmp_path / "repo", "tiny")


def test_stack_on_an_upstream_git_ref(tmp_path, tiny_series, patches):
    upstream = upstream_git(tmp_path, tiny_series[0])
    repo = tmp_path / "pr" / "linear_operator"
    base = pr.stack_from_git(str(upstream), "v1.0", patches, STACK, repo)
    assert base.upstream_history and base.commit == series.git(upstream, "rev-parse", "v1.0").stdout.strip()
    assert str(upstream) in base.label and "v1.0" in base.label
    assert subjects(repo, f"{base.commit}..new-module") == ["Spell out five", "Add new module"]
    bundle = tmp_path / "five.bundle"
    pr.write_bundle(repo, "five", base.commit, bundle)
    clone = tmp_path / "upstream-clone"  # a clone of upstream has the base commit: the thin bundle suffices
    series.git(tmp_path, "clone", "--quiet", str(upstream), str(clone))
    series.git(clone, "fetch", "--quiet", str(bundle), "five:five")
    assert subjects(clone, "v1.0..five") == ["Spell out five"]


def test_stack_on_main_by_name(tmp_path, tiny_series, patches):
    upstream = upstream_git(tmp_path, tiny_series[0])
    repo = tmp_path / "linear_operator"
    base = pr.stack_from_git(str(upstream), "main", patches, STACK, repo)
    assert subjects(repo, "new-module")[-3:] == ["Add a README", "Spell out five", "Add new module"]
    assert base.commit == series.git(upstream, "rev-parse", "main").stdout.strip()


def test_unknown_git_ref_is_named(tmp_path, tiny_series, patches):
    upstream = upstream_git(tmp_path, tiny_series[0])
    with pytest.raises(ForkError, match="'no-such-ref' is not a branch, tag or commit"):
        pr.stack_from_git(str(upstream), "no-such-ref", patches, STACK, tmp_path / "linear_operator")


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
    series.git(upstream, "commit", "--quiet", "-am", "Change y")
    head = series.git(upstream, "rev-parse", "HEAD").stdout.strip()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream), "--ref", "main") == 1
    captured = capsys.readouterr()
    expected = f"patch {PATCH_2} no longer applies to main ({head[:12]}); failing file(s): tiny/other.py"
    assert f"error: {expected}" in captured.err
    assert f"::error title=Patch no longer applies::{expected}" in captured.out
    # The first patch went in; the failed `git am` was aborted, leaving a clean checkout.
    assert subjects(upstream, "main")[-1] == "Spell out five"
    assert not series.git(upstream, "status", "--porcelain").stdout.strip()


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


def test_apply_through_k_applies_a_prefix(tmp_path, tiny_series, tiny_recipe, monkeypatch, capsys):
    upstream = upstream_git(tmp_path, tiny_series[0])
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream), "--through", "1") == 0
    assert subjects(upstream, "main")[-2:] == ["Add a README", "Spell out five"]
    assert "applied 1 patch(es)" in capsys.readouterr().out
    assert run_cli(monkeypatch, tiny_recipe, "apply", str(upstream), "--through", "3") == 1
    assert "--through 3: the series has patches 1 to 2" in capsys.readouterr().err


# --- the whole command, and upstream's lint ------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tiny_recipe, tiny_series):
    """`pr` on the tiny series, with the tiny tree as the pinned release's sdist."""
    monkeypatch.setattr(pr.recipe, "load", lambda: tiny_recipe)
    monkeypatch.setattr(pr.sdist, "pristine_tree", lambda rec: tiny_series[0])


def test_pr_command_writes_one_folder_per_pull_request(tmp_path, offline, results, capsys):
    out = tmp_path / "pr"
    assert cli.main(["pr", "--results", str(results), "--out", str(out), "--no-lint"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([pr.MARKER, pr.REPO_NAME, *FOLDERS])
    for folder, pull_request in zip(FOLDERS, STACK, strict=True):
        assert sorted(p.name for p in (out / folder).iterdir()) == [
            "PR_DESCRIPTION.md",
            f"{pull_request.branch}.bundle",
        ]
    assert subjects(out / pr.REPO_NAME, "new-module")[1:] == ["Spell out five", "Add new module"]
    assert (out / "2-new-module" / "PR_DESCRIPTION.md").read_text().startswith("<!-- title: Add new module -->")
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


def test_commits_are_by_the_recipe_author_or_the_one_given(tmp_path, offline, results):
    out = tmp_path / "pr"
    argv = ["pr", "--results", str(results), "--out", str(out), "--no-lint"]
    assert cli.main(argv) == 0
    repo = out / pr.REPO_NAME
    people = series.git(repo, "log", "--format=%an <%ae>|%cn <%ce>", "new-module").stdout.splitlines()
    assert people[:2] == [f"{TEST_AUTHOR}|{TEST_AUTHOR}"] * 2
    assert TEST_AUTHOR not in people[2]  # the base commit is untouched
    assert cli.main([*argv, "--author", "Ada Lovelace <ada@example.org>"]) == 0
    for branch in ("five", "new-module"):  # every branch of the stack follows its rewritten commit
        who = series.git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%ad", "--date=format:%Y", branch).stdout
        name, committer, year = who.strip().split("|")
        assert name == committer == "Ada Lovelace <ada@example.org>" and year != "2000"
    assert series.git(repo, "merge-base", "--is-ancestor", "five", "new-module", check=False).returncode == 0
    assert cli.main([*argv, "--author", "nobody"]) == 1


def fake_lint(monkeypatch, exit_status: int) -> None:
    monkeypatch.setattr(pr, "check_lint_tools", lambda *requirements: None)
    script = f"import sys; print('checked', *sys.argv[1:]); sys.exit({exit_status})"
    monkeypatch.setattr(pr, "lint_commands", lambda targets: [("fake lint", [sys.executable, "-c", script, *targets])])


def test_lint_failure_fails_the_command_after_writing_everything(tmp_path, offline, results, monkeypatch, capsys):
    fake_lint(monkeypatch, exit_status=1)
    out = tmp_path / "pr"
    assert cli.main(["pr", "--results", str(results), "--out", str(out)]) == 1
    assert "upstream's lint failed at pull request(s) 1, 2" in capsys.readouterr().err
    first, second = ((out / folder / "lint.txt").read_text() for folder in FOLDERS)
    assert "checked tiny/__init__.py\n" in first and first.endswith("result: FAILED\n")
    assert "checked tiny/new.py tiny/other.py\n" in second  # each pull request's own files, at its branch
    description = (out / "2-new-module" / "PR_DESCRIPTION.md").read_text()
    assert "Add new module" in description and "is clean on" not in description


def test_lint_only(tmp_path, offline, monkeypatch):
    fake_lint(monkeypatch, exit_status=0)
    out = tmp_path / "lint"
    assert cli.main(["pr", "--lint-only", "--out", str(out), "--results", str(tmp_path / "none.json")]) == 0
    for folder in FOLDERS:
        assert sorted(p.name for p in (out / folder).iterdir()) == ["lint.txt"]
        assert (out / folder / "lint.txt").read_text().endswith("result: ok\n")


def test_lint_targets_are_existing_python_files_outside_excluded_folders(tmp_path):
    for name in ("a.py", "docs/conf.py", "examples/x.py", "pkg/b.py", "pkg/data.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    files = ["a.py", "docs/conf.py", "examples/x.py", "pkg/b.py", "pkg/data.txt", "pkg/deleted.py"]
    assert pr.lint_targets(tmp_path, files) == ["a.py", "pkg/b.py"]


def test_no_python_file_touched_runs_no_lint(tmp_path, monkeypatch):
    monkeypatch.setattr(pr, "check_lint_tools", lambda *requirements: None)
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
