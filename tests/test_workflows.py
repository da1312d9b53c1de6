"""The GitHub Actions workflows: our rules on them, and the suite gate the CI jobs run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from linear_operator_fork import workflows
from linear_operator_fork.recipe import ForkError

FILES = workflows.workflow_files()
USES = re.compile(r"^\s*(?:- )?uses:\s*(\S+)(.*)$")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_with_a_version_comment(path: Path):
    uses = [match.groups() for line in path.read_text().splitlines() if (match := USES.match(line))]
    assert uses, f"{path.name} uses no action"
    for action, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), f"{path.name}: {action} is not pinned by SHA"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", rest), f"{path.name}: {action} lacks its '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_read_only_token_and_no_persisted_credentials(path: Path):
    text = path.read_text()
    assert re.search(r"(?m)^permissions:\n  contents: read\n(?!  )", text), "top-level permissions: contents: read"
    checkouts = text.count("uses: actions/checkout@")
    assert checkouts and text.count("persist-credentials: false") == checkouts
    assert workflows.run_expressions(path) == []


def test_every_action_uses_the_same_pin_everywhere():
    pins: dict[str, set[str]] = {}
    for path in FILES:
        for line in path.read_text().splitlines():
            if match := USES.match(line):
                name, sha = match[1].split("@")
                pins.setdefault(name, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins


def test_run_expressions_are_found_inline_and_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(workflows, "ROOT", tmp_path)
    path = tmp_path / "w.yml"
    path.write_text(
        "jobs:\n  a:\n    steps:\n"
        "      - run: echo ${{ github.ref }}\n"  # 4
        "      - name: block\n"
        "        run: |\n"
        "          echo ok\n"
        "          echo ${{ inputs.ref }}\n"  # 8
        "        env:\n"
        "          REF: ${{ github.ref }}\n"  # env: fine
        "      - uses: x/y@0000000000000000000000000000000000000000 # v1.0.0\n"
        "        with:\n"
        "          name: a-${{ matrix.python }}\n"  # with: fine
    )
    problems = workflows.run_expressions(path)
    assert [p.split(":")[1] for p in problems] == ["4", "8"]
    assert "pass it through env:" in problems[0]


def write_record(folder: Path, suite: str, variant: str, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"case": suite, "variant": variant, "version": "v", "status": "ok", "failures": [], **fields}
    (folder / f"{suite}-{variant}.json").write_text(json.dumps({"records": [record]}))


def test_gate_passes_a_clean_fork(tmp_path, capsys):
    write_record(tmp_path, "upstream-suite", "stock", passed=10, failed=0)
    write_record(tmp_path, "upstream-suite", "fork", passed=12, failed=0)
    assert workflows.gate(tmp_path, "upstream-suite") == 0
    assert "ok: upstream-suite passes on fork" in capsys.readouterr().out


def test_gate_fails_on_fork_failures_naming_the_new_ones(tmp_path):
    write_record(tmp_path, "upstream-suite", "stock", passed=10, failed=1, status="error", failures=["t::old"])
    write_record(tmp_path, "upstream-suite", "fork", passed=9, failed=2, status="error", failures=["t::old", "t::new"])
    with pytest.raises(ForkError) as info:
        workflows.gate(tmp_path, "upstream-suite")
    message = str(info.value)
    assert "2 failing on fork (1 not failing on stock)" in message and "t::new" in message
    assert "fewer than stock's 10" in message


def test_gate_fails_when_a_stock_test_stops_passing_even_if_new_tests_keep_the_count(tmp_path):
    stock_ids = ["t::a", "t::b"]
    write_record(tmp_path, "upstream-suite", "stock", passed=2, failed=0, passed_ids=stock_ids)
    write_record(tmp_path, "upstream-suite", "fork", passed=3, failed=0, skipped=1, passed_ids=["t::a", "t::x", "t::y"])
    with pytest.raises(ForkError) as info:
        workflows.gate(tmp_path, "upstream-suite")
    assert "1 test(s) pass on stock but not on fork" in str(info.value) and "t::b" in str(info.value)


def test_gate_fails_on_a_run_that_did_not_complete(tmp_path):
    write_record(tmp_path, "upstream-suite", "fork", passed=0, failed=0, status="error", message="pytest exited 4")
    with pytest.raises(ForkError, match="the fork run is error: pytest exited 4"):
        workflows.gate(tmp_path, "upstream-suite")


def test_gate_without_stock_and_without_fork(tmp_path):
    write_record(tmp_path, "upstream-suite", "main", passed=3, failed=0)
    assert workflows.gate(tmp_path, "upstream-suite", fork_variant="main") == 0
    with pytest.raises(ForkError, match="gpytorch-suite-fork.json: did the suite's session run"):
        workflows.gate(tmp_path, "gpytorch-suite")


def test_the_three_workflows_exist():
    assert {p.name for p in FILES} >= {"ci.yml", "gpu.yml", "upstream-main.yml"}


def test_gate_of_the_patched_gpytorch_suite(tmp_path, capsys):
    """CI's gate of gpytorch(variant='gpytorch-fork'): the patched gpytorch's suite against stock's."""
    write_record(tmp_path, "gpytorch-suite", "stock", passed=5, failed=0, passed_ids=["t::a"])
    write_record(tmp_path, "gpytorch-suite", "gpytorch-fork", passed=6, failed=0, passed_ids=["t::a", "t::new"])
    assert workflows.gate(tmp_path, "gpytorch-suite", fork_variant="gpytorch-fork") == 0
    assert "ok: gpytorch-suite passes on gpytorch-fork" in capsys.readouterr().out
    write_record(tmp_path, "gpytorch-suite", "gpytorch-fork", passed=6, failed=1, status="error", failures=["t::g"])
    with pytest.raises(ForkError, match="1 failing on gpytorch-fork"):
        workflows.gate(tmp_path, "gpytorch-suite", fork_variant="gpytorch-fork")
