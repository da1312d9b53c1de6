"""scripts/microbench.py, the microbenchmarks that pull requests' messages quote: it runs on the installed
linear_operator and refuses bad arguments with a message."""

from __future__ import annotations

import subprocess
import sys

from linear_operator_fork.recipe import ROOT

SCRIPT = ROOT / "scripts" / "microbench.py"


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, check=False)


def test_checks_times_both_layouts_on_the_installed_linear_operator(installed_wheel):
    result = run("checks", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("checks: linear_operator ") and "one thread" in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["coo", "csr", "peak RSS of the process"]
    assert all("median" in line and "1 runs" in line for line in lines[1:3])
    assert lines[3].endswith(" MiB")
    only_csr = run("checks", "--repeats", "1", "--layout", "csr").stdout.splitlines()
    assert [line.split(":")[0].strip() for line in only_csr[1:]] == ["csr", "peak RSS of the process"]


def test_bad_arguments_are_refused_with_a_message():
    result = run("checks", "--repeats", "0")
    assert result.returncode == 2
    assert "--repeats must be at least 1; got 0" in result.stderr
    result = run("gram", "--layout", "csr")
    assert result.returncode == 1
    assert result.stderr.strip() == "microbench.py: gram measures coo only; --layout csr has nothing to run"
    result = run("nothing")
    assert result.returncode == 2
    assert "invalid choice: 'nothing'" in result.stderr


def test_sortkeys_times_torch_alone_per_key_dtype():
    result = run("sortkeys", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sortkeys: torch ") and lines[0].endswith(" alone, one thread")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["int64", "int32", "int16", "peak RSS of the process"]
    assert all("median" in line and "1 runs" in line for line in lines[1:4])


def test_csrvalues_times_torch_alone_for_one_layout():
    result = run("csrvalues", "--repeats", "1", "--layout", "coo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("csrvalues: torch ") and lines[0].endswith(" alone, one thread")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["coo", "peak RSS of the process"]
