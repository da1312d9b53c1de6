"""The built distribution: version, provenance, exact content, and the PEP 517 entry points."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from linear_operator_fork import build, sdist, series
from linear_operator_fork.recipe import ROOT

VERSION_FILE = build.VERSION_FILE


def files_under(root: Path, package: str = "linear_operator") -> dict[str, bytes]:
    base = root / package
    return {
        f"{package}/{p.relative_to(base).as_posix()}": p.read_bytes()
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def patch_series(real_recipe) -> series.Series:
    return series.read_series(real_recipe.series_file, real_recipe.patches_dir)


@pytest.fixture(scope="module")
def installed_root(installed_wheel) -> Path:
    import linear_operator

    return Path(linear_operator.__file__).resolve().parent.parent


def test_imported_from_site_packages_not_a_source_tree(installed_root):
    assert installed_root.name == "site-packages"
    assert installed_root != ROOT and not installed_root.is_relative_to(ROOT / "build")


def test_version_and_provenance(installed_wheel, real_recipe, patch_series):
    import linear_operator
    import linear_operator.version

    assert linear_operator.__version__ == real_recipe.fork_version
    assert importlib.metadata.version("linear_operator") == real_recipe.fork_version
    assert installed_wheel.name.startswith(f"linear_operator-{real_recipe.fork_version}-")
    provenance = linear_operator.version.fork_provenance
    assert provenance["upstream"]["sha256"] == real_recipe.sha256
    assert provenance["upstream"]["version"] == real_recipe.version
    assert provenance["patches"] == [
        {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in patch_series.paths
    ]


def test_installed_files_are_upstream_plus_series_exactly(installed_root, real_recipe, patch_series, tmp_path):
    """No stray change: every installed file is the patched tree's, bar the generated version file."""
    expected_tree = series.checkout(sdist.pristine_tree(real_recipe), patch_series, tmp_path / "tree", "expected")
    expected = files_under(expected_tree)
    installed = files_under(installed_root)
    assert sorted(installed) == sorted(expected)
    differing = sorted(name for name in expected if installed[name] != expected[name])
    assert differing == [VERSION_FILE]
    assert installed[VERSION_FILE].decode() == build.version_module(real_recipe, patch_series)


def test_every_file_differing_from_stock_is_touched_by_a_patch(installed_root, real_recipe, patch_series):
    stock = files_under(sdist.pristine_tree(real_recipe))
    installed = files_under(installed_root)
    touched = {path for patch in patch_series.paths for path in series.touched_files(patch)}
    changed = {name for name in installed.keys() | stock.keys() if installed.get(name) != stock.get(name)}
    assert changed - {VERSION_FILE} <= touched
    assert changed - {VERSION_FILE}, "the series changes at least one installed file"


def test_gpytorch_installed_afterwards_keeps_the_fork(installed_root, real_recipe):
    """nox installs gpytorch after the fork wheel; pip must have kept the fork."""
    import gpytorch
    import linear_operator
    import torch

    assert importlib.metadata.version("linear_operator") == real_recipe.fork_version
    assert importlib.metadata.version("gpytorch") == real_recipe.downstream.version
    covar = gpytorch.kernels.RBFKernel()(torch.linspace(0, 1, 5).unsqueeze(-1))
    assert isinstance(covar, linear_operator.LinearOperator)
    assert Path(linear_operator.__file__).is_relative_to(installed_root)
    assert covar.to_dense().shape == (5, 5)


def _pip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_pip_install_target_from_checkout(tmp_path, real_recipe, installed_wheel):
    local = {sdist.SDIST_ENV: str(sdist.archive(real_recipe))}
    result = _pip("install", "--no-deps", "--target", str(tmp_path / "X"), str(ROOT), env=local)
    assert result.returncode == 0, result.stderr
    probe = "import linear_operator; print(linear_operator.__version__, linear_operator.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "X")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    version, where = out.stdout.split()
    assert version == real_recipe.fork_version
    assert Path(where).is_relative_to(tmp_path / "X")


def test_pip_refuses_tampered_archive(tmp_path, real_recipe, installed_wheel):
    tree = tmp_path / "unpacked"
    tree.mkdir()
    sdist.unpack(sdist.archive(real_recipe), tree / f"linear_operator-{real_recipe.version}")
    init = tree / f"linear_operator-{real_recipe.version}" / "linear_operator" / "__init__.py"
    init.write_text(init.read_text() + "\nTAMPERED = True\n")
    evil = tmp_path / f"linear_operator-{real_recipe.version}.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tree / f"linear_operator-{real_recipe.version}", arcname=f"linear_operator-{real_recipe.version}")
    env = {sdist.SDIST_ENV: str(evil)}
    result = _pip("install", "--no-deps", "--target", str(tmp_path / "X"), str(ROOT), env=env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "sha256" in output
    assert real_recipe.sha256 in output and sdist.sha256_of(evil) in output
    assert not (tmp_path / "X" / "linear_operator").exists()


def test_pip_wheel_from_git_url(tmp_path, real_recipe, installed_wheel):
    """`pip install git+<url>`: pip clones the repository and builds it with our backend."""
    if series.git(ROOT, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        pytest.skip("the repository has no commit yet")
    local = {sdist.SDIST_ENV: str(sdist.archive(real_recipe))}
    result = _pip("wheel", "--no-deps", "--wheel-dir", str(tmp_path), f"git+file://{ROOT}", env=local)
    assert result.returncode == 0, result.stderr
    wheel = tmp_path / f"linear_operator-{real_recipe.fork_version}-py3-none-any.whl"
    assert list(tmp_path.glob("*.whl")) == [wheel]
    with zipfile.ZipFile(wheel) as archive:
        version_file = archive.read(VERSION_FILE).decode()
    assert "fork_provenance" in version_file


def test_sdist_holds_our_files_only(tmp_path, real_recipe):
    name = build.build_sdist(str(tmp_path))
    assert name == f"linear_operator-{real_recipe.fork_version}.tar.gz"
    with tarfile.open(tmp_path / name) as tar:
        members = [m.name.split("/", 1)[1] for m in tar.getmembers()]
    assert (
        "fork.toml" in members and "patches/linear_operator/series" in members and "patches/gpytorch/series" in members
    )
    assert "linear_operator_fork/build.py" in members
    ours = set(series.git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").stdout.split())
    assert set(members) - {"PKG-INFO"} <= ours
    stock = {name for name in files_under(sdist.pristine_tree(real_recipe))}
    assert not any(member.startswith(("linear_operator/", "test/")) for member in members)
    assert not stock & set(members)
