"""The one command line, ``python -m linear_operator_fork``: subcommands, exit statuses, fork.toml's values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from linear_operator_fork import __main__ as cli
from linear_operator_fork.recipe import ROOT


def test_every_step_of_the_flow_is_a_subcommand():
    commands = cli.parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public listing
    assert list(commands) == [
        "pin", "fetch", "checkout", "export", "check", "apply", "tree", "cases", "suite", "differential", "mutants",
        "report", "pr", "workflows",
    ]  # fmt: skip


def test_pin_prints_fork_toml_values(real_recipe, capsys):
    for key, expected in (
        ("version", real_recipe.version),
        ("fork-version", real_recipe.fork_version),
        ("downstream-version", real_recipe.downstream.version),
        ("thread-release", real_recipe.thread_release),
        ("prefixes", json.dumps(list(range(1, len(real_recipe.stack) + 1)))),
    ):
        assert cli.main(["pin", key]) == 0
        assert capsys.readouterr().out == f"{expected}\n"


def test_an_error_the_user_can_act_on_is_one_line_and_exit_1(tmp_path, capsys):
    assert cli.main(["apply", str(tmp_path / "nowhere")]) == 1
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'nowhere'}: no such folder (expected a git checkout of upstream)\n"
    )


def test_python_m_runs_the_command_line():
    result = subprocess.run([sys.executable, "-m", "linear_operator_fork", "pin", "version"], cwd=ROOT,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
