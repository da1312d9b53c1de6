"""Two patched upstreams: linear_operator and gpytorch, each with its series, build number and stack (fork.toml).

The gpytorch queue's round trip runs on a small stand-in for gpytorch's sdist (a ``gpytorch/`` package whose
``setup.py`` reads ``gpytorch/version.py`` as gpytorch's does), with a copy of fork.toml in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_AUTHOR, commit_all

from linear_operator_fork import __main__ as cli
from linear_operator_fork import build, pr, recipe, sdist, series
from linear_operator_fork.recipe import ROOT, ForkError, StackedPR

BACKEND = ROOT / "packages" / "gpytorch" / "fork_backend.py"
# gpytorch 1.15.2's setup.py reads its version with this expression (find_version)
GPYTORCH_FIND_VERSION = r"^__version__ = version = ['\"]([^'\"]*)['\"]"


def find_version(text: str) -> str:
    match = re.search(GPYTORCH_FIND_VERSION, text, re.M)
    assert match, "gpytorch's setup.py would not find a version"
    return match.group(1)


# --- fork.toml ------------------------------------------------------------------------------------------------


def test_recipe_loads_both_projects(real_recipe):
    lo, gp = real_recipe.project("linear_operator"), real_recipe.project("gpytorch")
    assert lo is real_recipe and gp is real_recipe.downstream
    assert (lo.name, gp.name) == recipe.PROJECTS
    assert gp.version == real_recipe.downstream.version and gp.fork_version == f"{gp.version}+fork.{gp.build_number}"
    assert lo.patches_dir == ROOT / "patches" / "linear_operator" and lo.series_file.parent == lo.patches_dir
    assert gp.patches_dir == ROOT / "patches" / "gpytorch" and gp.series_file == gp.patches_dir / "series"
    assert (lo.build_table, gp.build_table) == ("build", "downstream.build")
    assert (lo.version_file, gp.version_file) == ("linear_operator/version.py", "gpytorch/version.py")
    assert gp.url.startswith("https://") and re.fullmatch(r"[0-9a-f]{64}", gp.series_sha256)
    assert [p.branch for p in gp.stack] and all(isinstance(p, StackedPR) for p in gp.stack)
    # each series digest matches its queue (what `check` demands; gpytorch's may be empty)
    for project in (lo, gp):
        names = series.read_series(project.series_file, project.patches_dir).names
        assert recipe.series_digest(project.patches_dir, names) == project.series_sha256, project.name
    with pytest.raises(ForkError, match="no project 'torch'"):
        real_recipe.project("torch")


def edited(tmp_path: Path, pattern: str, replacement: str) -> Path:
    """A copy of fork.toml with the first match of ``pattern`` replaced (there must be one)."""
    text, count = re.subn(pattern, replacement, recipe.RECIPE.read_text(encoding="utf-8"), count=1, flags=re.M)
    assert count == 1, pattern
    path = tmp_path / "fork.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("pattern", "replacement", "message"),
    [
        (r"^(\[downstream\.build\]\n)number = \d+\n", r"\1", "missing key downstream.build.number"),
        (r"^\[downstream\.build\]$", "[downstream.built]", "missing key downstream.build$"),
        (r'^directory = "patches/gpytorch"\n', "", "missing key downstream.patches.directory"),
        (r'^url = "https://github.com/cornellius-gp/gpytorch"\n', "", "missing key downstream.url"),
        (r"^\[\[downstream\.pr\.stack\]\][\s\S]*", "[downstream.pr.other]\n", "missing key downstream.pr.stack$"),
        (r"^(\[\[downstream\.pr\.stack\]\]\n)branch =", r"\1name =", r"missing key downstream.pr.stack\[0\].branch"),
        (r"^(\[downstream\.build\]\n)number = \d+", r"\1number = -1", "downstream.build.number must be an integer"),
        (r"^(\[downstream\.build\]\n)number = \d+", r'\1number = "0"', "downstream.build.number must be an integer"),
        (r'^(\[downstream\.build\]\nnumber = \d+\nseries-sha256 = )"\w+"', r'\1"zz"',
         "downstream.build.series-sha256 is not a sha256 hex digest: 'zz'"),
        (r'^(\[downstream\][^[]*sha256 = )"\w+"', r'\1"nope"', "downstream.sha256 is not a sha256 hex digest"),
        (r'^name = "gpytorch"', 'name = "gpytorch2"', r"must be \('linear_operator', 'gpytorch'\)"),
        (r"^(\[build\]\n)number = ", r"\1numbers = ", "missing key build.number$"),
        (r'^\[\[downstream\.pr\.stack\]\][\s\S]*', '[downstream.pr]\nstack = "x"\n',
         r"downstream.pr.stack must be a list of tables \(\[\[downstream.pr.stack\]\]\)"),
        (r'^size = "cuda"$', 'size = "huge"', r"pr.stack\[14\].size = 'huge': expected one of cpu, cuda"),
    ],
)  # fmt: skip
def test_bad_or_missing_keys_are_named(tmp_path, pattern, replacement, message):
    with pytest.raises(ForkError, match=message) as info:
        recipe.load(edited(tmp_path, pattern, replacement))
    assert str(info.value).startswith(f"{tmp_path / 'fork.toml'}: ")


def test_write_build_rewrites_one_projects_table_only(tmp_path, real_recipe):
    path = tmp_path / "fork.toml"
    shutil.copyfile(recipe.RECIPE, path)
    rec = recipe.load(path)
    recipe.write_build(rec.downstream, 7, "a" * 64)
    again = recipe.load(path)
    assert (again.downstream.build_number, again.downstream.series_sha256) == (7, "a" * 64)
    assert (again.build_number, again.series_sha256) == (rec.build_number, rec.series_sha256)
    recipe.write_build(again, rec.build_number + 1, "b" * 64)
    last = recipe.load(path)
    assert (last.build_number, last.series_sha256) == (rec.build_number + 1, "b" * 64)
    assert (last.downstream.build_number, last.downstream.series_sha256) == (7, "a" * 64)
    assert "# The fork's recipe" in path.read_text()


# --- the command line ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["checkout", "export", "check", "tree", "apply"])
def test_project_option_of_the_queue_commands(command):
    positional = ["somewhere"] if command == "apply" else []
    parsed = cli.parser().parse_args([command, *positional, "--project", "gpytorch"])
    assert parsed.project == "gpytorch"
    default = cli.parser().parse_args([command, *positional])
    assert default.project == ("all" if command == "check" else "linear_operator")
    with pytest.raises(SystemExit) as info:
        cli.parser().parse_args([command, *positional, "--project", "torch"])
    assert info.value.code == 2
    assert cli.parser().parse_args(["pr", "--project", "gpytorch"]).project == "gpytorch"


def test_check_without_project_checks_both_queues(monkeypatch, capsys):
    checked = []
    monkeypatch.setattr(cli, "check_project", lambda project, author: checked.append(project.name))
    assert cli.main(["check"]) == 0
    assert checked == ["linear_operator", "gpytorch"]
    checked.clear()
    assert cli.main(["check", "--project", "gpytorch"]) == 0
    assert checked == ["gpytorch"]


def test_default_checkouts_are_one_folder_per_project():
    assert cli.default_checkout("linear_operator") == cli.DEFAULT_CHECKOUT
    assert cli.default_checkout("gpytorch") == cli.DEFAULT_CHECKOUT.parent / "checkout-gpytorch"


# --- the gpytorch queue, round trip ----------------------------------------------------------------------------


@pytest.fixture
def tiny_gpytorch(tmp_path: Path) -> Path:
    """A stand-in for gpytorch's unpacked sdist: a gpytorch/ package, version.py as setuptools-scm writes it."""
    root = tmp_path / "gpytorch-1.15.2"
    (root / "gpytorch").mkdir(parents=True)
    (root / "gpytorch" / "__init__.py").write_text("from gpytorch.version import version as __version__\n")
    (root / "gpytorch" / "models.py").write_text("".join(f"line {i}\n" for i in range(10)))
    (root / "gpytorch" / "version.py").write_text("__version__ = version = '1.15.2'\n")
    (root / "PKG-INFO").write_text("Name: gpytorch\nVersion: 1.15.2\n")
    return root


@pytest.fixture
def gpytorch_queue(tmp_path, tiny_gpytorch, monkeypatch) -> Path:
    """fork.toml in tmp_path with an empty gpytorch series beside it (the queue as it starts); the command line reads
    it and takes the tiny tree as gpytorch's pristine sdist. Returns the copy of fork.toml."""
    toml = tmp_path / "fork.toml"
    shutil.copyfile(recipe.RECIPE, toml)
    gp = recipe.load(toml).downstream
    gp.patches_dir.mkdir(parents=True)
    series.write_series(gp.series_file, [])
    empty = recipe.series_digest(gp.patches_dir, [])
    recipe.write_build(gp, 0, empty)  # gpytorch's queue as it starts: no patch, build 0
    real_load = recipe.load
    monkeypatch.setattr(recipe, "load", lambda path=toml: real_load(path))  # (cli.recipe is this module)
    monkeypatch.setattr(sdist, "pristine_tree", lambda pin: tiny_gpytorch)
    return toml


def test_gpytorch_queue_round_trip(tmp_path, gpytorch_queue, tiny_gpytorch, capsys):
    toml = gpytorch_queue
    lo_before = recipe.load(toml)
    assert cli.main(["check", "--project", "gpytorch"]) == 0  # the empty series checks out
    assert "ok: 0 patch(es) apply to gpytorch 1.15.2" in capsys.readouterr().out
    checkout = tmp_path / "checkout-gpytorch"
    assert cli.main(["checkout", "--project", "gpytorch", str(checkout)]) == 0
    assert "export --project gpytorch" in capsys.readouterr().out
    models = checkout / "gpytorch" / "models.py"
    models.write_text(models.read_text().replace("line 3\n", "line three\n"))
    commit_all(checkout, "Spell out three\n\nFor predictions.\n\nForwarded: no")
    assert cli.main(["export", "--project", "gpytorch", str(checkout)]) == 0
    assert "gpytorch build number 0 -> 1 (1.15.2+fork.1)" in capsys.readouterr().out
    after = recipe.load(toml)
    gp = after.downstream
    assert series.read_series(gp.series_file, gp.patches_dir).names == ["0001-Spell-out-three.patch"]
    assert (gp.patches_dir / "0001-Spell-out-three.patch").read_text().count(f"From: {after.author}") == 1
    assert gp.build_number == 1 and gp.fork_version == "1.15.2+fork.1"
    assert (after.build_number, after.series_sha256) == (lo_before.build_number, lo_before.series_sha256)
    assert cli.main(["check", "--project", "gpytorch"]) == 0
    assert "ok: 1 patch(es) apply to gpytorch 1.15.2" in capsys.readouterr().out
    # exporting again without edits changes nothing, not even the build number
    before = {p.name: p.read_bytes() for p in gp.patches_dir.iterdir()}
    assert cli.main(["export", "--project", "gpytorch", str(checkout)]) == 0
    assert {p.name: p.read_bytes() for p in gp.patches_dir.iterdir()} == before
    assert recipe.load(toml).downstream.build_number == 1
    # a series changed behind the build number's back is caught, naming gpytorch's table
    recipe.write_build(gp, 1, recipe.series_digest(gp.patches_dir, []))
    capsys.readouterr()
    assert cli.main(["check", "--project", "gpytorch"]) == 1
    err = capsys.readouterr().err
    assert "downstream.build.series-sha256 does not match" in err and "export --project gpytorch" in err


def test_gpytorch_tree_has_the_patch_and_the_fork_version_file(tmp_path, gpytorch_queue, tiny_gpytorch, monkeypatch):
    toml = gpytorch_queue
    checkout = tmp_path / "co"
    assert cli.main(["checkout", "--project", "gpytorch", str(checkout)]) == 0
    (checkout / "gpytorch" / "new.py").write_text("NEW = 1\n")
    commit_all(checkout, "Add new\n\nForwarded: not-needed")
    assert cli.main(["export", "--project", "gpytorch", str(checkout)]) == 0
    tree = tmp_path / "tree"
    assert cli.main(["tree", "--project", "gpytorch", str(tree)]) == 0
    gp = recipe.load(toml).downstream
    assert (tree / "gpytorch" / "new.py").read_text() == "NEW = 1\n"
    text = (tree / "gpytorch" / "version.py").read_text()
    assert find_version(text) == gp.fork_version == "1.15.2+fork.1"
    namespace: dict = {}
    exec(text, namespace)
    assert namespace["version_tuple"] == (1, 15, 2, "fork.1")
    provenance = namespace["fork_provenance"]
    assert provenance["upstream"] == {"name": "gpytorch", "version": "1.15.2", "sha256": gp.sha256, "url": gp.url}
    assert [p["name"] for p in provenance["patches"]] == ["0001-Add-new.patch"]


# --- the real gpytorch sdist -----------------------------------------------------------------------------------


def test_real_gpytorch_queue_builds_pristine_gpytorch_with_the_fork_version(tmp_path, real_recipe):
    """The real gpytorch series, applied to the real pinned sdist: the patched tree differs from the pristine one
    only where the series says, and in gpytorch/version.py, which gpytorch's own setup.py reads."""
    gp = real_recipe.downstream
    patches = series.read_series(gp.series_file, gp.patches_dir)
    pristine = sdist.pristine_tree(gp)
    tree = build.patched_tree(gp, tmp_path / "tree")
    touched = {path for patch in patches.paths for path in series.touched_files(patch)}

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    before, after = files(pristine), files(tree)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed - touched == {gp.version_file}
    setup = (pristine / "setup.py").read_text()
    assert GPYTORCH_FIND_VERSION.replace("\\\\", "\\") in setup.replace("\\\\", "\\")  # gpytorch still reads it so
    text = after[gp.version_file].decode()
    assert find_version(text) == gp.fork_version
    assert text == build.version_module(gp, patches)
    assert json.loads(text.split("fork_provenance = ", 1)[1])["patches"] == [
        {"name": p.name, "sha256": sdist.sha256_of(p)} for p in patches.paths
    ]


def test_pip_wheel_of_the_gpytorch_subdirectory(tmp_path, real_recipe, installed_wheel):
    """`pip install "git+URL#subdirectory=packages/gpytorch"`: the whole repository is cloned, gpytorch is built."""
    if series.git(ROOT, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        pytest.skip("the repository has no commit yet")
    gp = real_recipe.downstream
    env = {**os.environ, sdist.local_archive_env(gp): str(sdist.archive(gp))}
    url = f"git+file://{ROOT}#subdirectory=packages/gpytorch"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path), url],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [w.name for w in tmp_path.glob("*.whl")] == [f"gpytorch-{gp.fork_version}-py3-none-any.whl"]


# --- packages/gpytorch: the subdirectory's backend ------------------------------------------------------------


def load_backend(path: Path):
    spec = importlib.util.spec_from_file_location(f"fork_backend_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_finds_the_repository_two_levels_up():
    backend = load_backend(BACKEND)
    assert backend.repository_root() == ROOT
    assert backend._build() is build  # noqa: SLF001 - what its hooks delegate to


def test_backend_without_the_repository_says_how_to_install(tmp_path):
    """pip 21.2 copies a local folder alone before building it: the backend must say what to do instead."""
    alone = tmp_path / "pip-req-build-x"
    shutil.copytree(BACKEND.parent, alone)
    backend = load_backend(alone / "fork_backend.py")
    for hook in (backend.get_requires_for_build_wheel, lambda: backend.build_wheel(str(tmp_path))):
        with pytest.raises(backend.RepositoryNotFound) as info:
            hook()
        message = str(info.value)
        assert "fork.toml" in message and str(tmp_path) in message
        assert "install it from a clone" in message and "git+URL#subdirectory=packages/gpytorch" in message
        assert "--use-feature=in-tree-build" in message  # what pip 21.1 and 21.2 need for a local folder
    (tmp_path / "fork.toml").write_text("")  # a fork.toml alone is not the repository either
    with pytest.raises(backend.RepositoryNotFound):
        backend.repository_root(alone)


def test_subdirectory_pyproject_keeps_its_backend_inside():
    text = (BACKEND.parent / "pyproject.toml").read_text()
    assert 'build-backend = "fork_backend"' in text and 'backend-path = ["."]' in text
    root = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r"(?m)^requires = .*$", root)[0]
    assert requires in text  # the same build requirements as the repository's own


# --- pr --project gpytorch -------------------------------------------------------------------------------------


@pytest.fixture
def gpytorch_stack_recipe(tiny_series, real_recipe, monkeypatch):
    _, patches_dir, series_file = tiny_series
    stack = (StackedPR("low-rank", (), ()), StackedPR("more", (), ()))
    downstream = dataclasses.replace(real_recipe.downstream, patches_dir=patches_dir, series_file=series_file,
                                     stack=stack)  # fmt: skip
    rec = dataclasses.replace(real_recipe, downstream=downstream, author=TEST_AUTHOR)
    monkeypatch.setattr(pr.recipe, "load", lambda: rec)
    monkeypatch.setattr(pr.sdist, "pristine_tree", lambda pin: tiny_series[0])
    return rec


def test_pr_for_gpytorch_writes_its_own_stack(tmp_path, gpytorch_stack_recipe, capsys):
    results = tmp_path / "results.json"
    records = [{"case": "gpytorch-suite", "variant": "gpytorch-fork", "version": "0.6.1+fork.13", "status": "ok",
                "gpytorch": "1.15.2+fork.9", "passed": 7, "failed": 0, "skipped": 1, "seconds": 3.0}]  # fmt: skip
    results.write_text(json.dumps({"records": records}))
    out = tmp_path / "pr-gpytorch"
    assert cli.main(["pr", "--project", "gpytorch", "--results", str(results), "--out", str(out), "--no-lint"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([pr.MARKER, "gpytorch", "1-low-rank", "2-more"])
    text = (out / "1-low-rank" / "PR_DESCRIPTION.md").read_text()
    assert "#120" not in text and "builds gpytorch 1.15.2 with the stack applied" in text
    assert "| gpytorch-suite | gpytorch-fork | 7 | 0 | 1 | 3.00 |" in text
    gp = gpytorch_stack_recipe.downstream
    assert f"**Measured on 1.15.2+fork.9; the stack is {gp.fork_version}.**" in text
    assert (out / "2-more" / "more.bundle").is_file()


def test_pr_for_an_empty_gpytorch_series_prepares_nothing(tmp_path, real_recipe, monkeypatch, capsys):
    empty = tmp_path / "series"
    empty.write_text("# Our patches to upstream, in the order `git am` applies them.\n")
    downstream = dataclasses.replace(real_recipe.downstream, patches_dir=tmp_path, series_file=empty)
    monkeypatch.setattr(pr.recipe, "load", lambda: dataclasses.replace(real_recipe, downstream=downstream))
    out = tmp_path / "out"
    assert cli.main(["pr", "--project", "gpytorch", "--out", str(out), "--results", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"gpytorch: the series ({empty}) is empty: no pull request to prepare\n"
    assert not out.exists()


def test_gpytorch_lint_is_its_own_pins():
    assert pr.lint_requirements("linear_operator") == pr.LINT_REQUIREMENTS
    tools = pr.lint_requirements("gpytorch")
    assert "flake8==7.3.0" in tools and not any(t.startswith("flake8-print") for t in tools)
    assert "flake8 7.3.0" in pr.lint_clean(tools)
