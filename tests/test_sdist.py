"""The pinned upstream archive: verified by sha256 wherever it comes from."""

from __future__ import annotations

import dataclasses
import tarfile
from pathlib import Path

import pytest
from conftest import TEST_AUTHOR

from linear_operator_fork import sdist
from linear_operator_fork.recipe import ForkError, Pin, Recipe


def make_archive(tree: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return destination


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_upstream: Path) -> tuple[Recipe, Path]:
    archive = make_archive(tiny_upstream, tmp_path / "tiny-1.0.tar.gz")
    recipe = Recipe(
        path=tmp_path / "fork.toml",
        name="tiny",
        version="1.0",
        sha256=sdist.sha256_of(archive),
        url="https://example.invalid/tiny",
        build_number=1,
        series_sha256="",
        patches_dir=tmp_path / "patches",
        series_file=tmp_path / "patches" / "series",
        downstream=Pin("other", "2.0", "0" * 64),
        thread_release="0.9",
        author=TEST_AUTHOR,
        stack=(),
        build_table="build",
    )
    return recipe, archive


def test_local_archive_accepted_and_unpacked(tmp_path, tiny_recipe, monkeypatch):
    recipe, archive = tiny_recipe
    monkeypatch.setenv(sdist.local_archive_env(recipe), str(archive))
    tree = sdist.pristine_tree(recipe, cache_dir=tmp_path / "cache")
    assert (tree / "tiny" / "other.py").read_text() == "x = 1\ny = 2\nz = 3\n"


def test_tampered_archive_refused_with_both_hashes(tmp_path, tiny_recipe, tiny_upstream, monkeypatch):
    recipe, archive = tiny_recipe
    (tiny_upstream / "tiny" / "other.py").write_text("x = 'evil'\n")
    evil = make_archive(tiny_upstream, tmp_path / "evil.tar.gz")
    monkeypatch.setenv(sdist.local_archive_env(recipe), str(evil))
    with pytest.raises(sdist.HashMismatch) as info:
        sdist.pristine_tree(recipe, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "sha256" in message
    assert recipe.sha256 in message and sdist.sha256_of(evil) in message
    assert not list((tmp_path / "cache").glob("tiny-*")), "nothing may be unpacked from a refused archive"


def test_missing_local_archive_is_named(tmp_path, tiny_recipe, monkeypatch):
    recipe, _ = tiny_recipe
    monkeypatch.setenv(sdist.local_archive_env(recipe), str(tmp_path / "nope.tar.gz"))
    with pytest.raises(ForkError, match="nope.tar.gz: no such file"):
        sdist.archive(recipe, cache_dir=tmp_path / "cache")


def test_corrupt_cache_is_downloaded_again(tmp_path, tiny_recipe, monkeypatch):
    recipe, archive = tiny_recipe
    monkeypatch.delenv(sdist.local_archive_env(recipe), raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / recipe.archive_name).write_bytes(b"truncated download")
    calls = []

    def fake_download(rec, target):
        calls.append(target)
        target.write_bytes(archive.read_bytes())

    monkeypatch.setattr(sdist, "_download", fake_download)
    assert sdist.archive(recipe, cache_dir=cache) == cache / recipe.archive_name
    assert calls == [cache / recipe.archive_name]
    # now cached and valid: no second download
    sdist.archive(recipe, cache_dir=cache)
    assert len(calls) == 1


def test_download_that_does_not_match_is_refused(tmp_path, tiny_recipe, monkeypatch):
    recipe, _ = tiny_recipe
    monkeypatch.delenv(sdist.local_archive_env(recipe), raising=False)

    def fake_download(rec, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not the release")

    monkeypatch.setattr(sdist, "_download", fake_download)
    with pytest.raises(sdist.HashMismatch, match=recipe.sha256):
        sdist.archive(recipe, cache_dir=tmp_path / "cache")


def test_archive_with_two_top_folders_refused(tmp_path, tiny_recipe, monkeypatch):
    recipe, _ = tiny_recipe
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f").write_text("1")
    (tmp_path / "b" / "g").write_text("2")
    odd = tmp_path / "odd.tar.gz"
    with tarfile.open(odd, "w:gz") as tar:
        tar.add(tmp_path / "a", arcname="a")
        tar.add(tmp_path / "b", arcname="b")
    odd_recipe = dataclasses.replace(recipe, sha256=sdist.sha256_of(odd))
    monkeypatch.setenv(sdist.local_archive_env(recipe), str(odd))
    with pytest.raises(ForkError, match="one top-level folder"):
        sdist.pristine_tree(odd_recipe, cache_dir=tmp_path / "cache")


def test_real_pinned_archive(real_recipe, monkeypatch):
    """The real sdist (through pip, or the cache) matches the recipe and holds upstream's tests."""
    monkeypatch.delenv(sdist.SDIST_ENV, raising=False)
    path = sdist.archive(real_recipe)
    assert sdist.sha256_of(path) == real_recipe.sha256
    tree = sdist.pristine_tree(real_recipe)
    assert f"Version: {real_recipe.version}" in (tree / "PKG-INFO").read_text()
    assert (tree / "test" / "operators" / "test_low_rank_root_added_diag_linear_operator.py").is_file()


def test_nested_pip_env_drops_the_hook_runners_variables():
    """Inside a PEP 517 build, the outer hook runner's variables must not reach the nested pip (issue 16): pip >= 25
    would pass our backend-path on to the sdist's own build backend."""
    outer = {
        "_PYPROJECT_HOOKS_BUILD_BACKEND": "linear_operator_fork.build",
        "_PYPROJECT_HOOKS_BACKEND_PATH_JSON": '["/clone"]',
        "_PYPROJECT_HOOKS_BACKEND_PATH": "/clone",
        "PEP517_BUILD_BACKEND": "linear_operator_fork.build",
        "PEP517_BACKEND_PATH": "/clone",
        "PATH": "/build-env/bin:/usr/bin",
        "PYTHONPATH": "/build-env/site",
        "PIP_INDEX_URL": "https://index.example.invalid/simple",
        "MY_PYPROJECT_HOOKS_NOTE": "kept: only the prefix counts",
    }
    assert sdist.nested_pip_env(outer) == {
        "PATH": "/build-env/bin:/usr/bin",
        "PYTHONPATH": "/build-env/site",
        "PIP_INDEX_URL": "https://index.example.invalid/simple",
        "MY_PYPROJECT_HOOKS_NOTE": "kept: only the prefix counts",
    }


def test_download_runs_pip_without_the_hook_runners_variables(tmp_path, tiny_recipe, monkeypatch):
    """The download itself uses that environment, and asks for the sdist of this one project only."""
    recipe, archive = tiny_recipe
    monkeypatch.setenv("_PYPROJECT_HOOKS_BACKEND_PATH_JSON", '["/clone"]')
    seen = {}

    def fake_run(command, capture_output, text, env):
        seen.update(command=command, env=env)
        dest = Path(command[command.index("--dest") + 1])
        (dest / archive.name).write_bytes(archive.read_bytes())
        return sdist.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(sdist.subprocess, "run", fake_run)
    path = sdist.archive(recipe, cache_dir=tmp_path / "cache")
    assert sdist.sha256_of(path) == recipe.sha256
    assert "_PYPROJECT_HOOKS_BACKEND_PATH_JSON" not in seen["env"]
    assert seen["env"]["PATH"] == sdist.os.environ["PATH"]
    no_binary = seen["command"][seen["command"].index("--no-binary") + 1]
    assert no_binary == recipe.name
