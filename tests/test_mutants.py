"""Mutation testing: the mutant files, applying them, test ids, the table; the real mutants apply to the series."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linear_operator_fork import build
from linear_operator_fork.recipe import ForkError
from linear_operator_fork.verify import mutants

BRANCHES = ("capacitance-precision", "sparse-gram-chains")
DIFF = """diff --git a/tiny/other.py b/tiny/other.py
--- a/tiny/other.py
+++ b/tiny/other.py
@@ -1,3 +1,3 @@
 x = 1
-y = 2
+y = 3
 z = 3
"""
HEADER = "Mutant: y is off by one\nPR: sparse-gram-chains\nState: -\nFrom: a test\n\n"


def write(tmp_path: Path, text: str, name: str = "01-y-off-by-one.patch") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_mutant_is_read_with_its_header(tmp_path):
    mutant = mutants.read_mutant(write(tmp_path, HEADER + DIFF), BRANCHES)
    assert (mutant.name, mutant.what, mutant.pr, mutant.state, mutant.origin) == (
        "01-y-off-by-one", "y is off by one", "sparse-gram-chains", "-", "a test"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (HEADER, "no diff"),
        (HEADER.replace("State: -\n", "") + DIFF, "missing header field(s) ['State']"),
        (HEADER.replace("sparse-gram-chains", "no-such-pr") + DIFF, "'no-such-pr' is not a branch"),
    ],
)
def test_bad_mutant_files_are_refused_with_the_reason(tmp_path, text, named):
    with pytest.raises(ForkError, match=re.escape(named)):
        mutants.read_mutant(write(tmp_path, text), BRANCHES)


def test_a_mutant_applies_to_a_copy_and_a_stale_one_says_to_remake_it(tmp_path, tiny_upstream):
    mutant = mutants.read_mutant(write(tmp_path, HEADER + DIFF), BRANCHES)
    tree = mutants.mutated_tree(mutant, tiny_upstream, tmp_path / "mutated")
    assert (tree / "tiny" / "other.py").read_text() == "x = 1\ny = 3\nz = 3\n"
    assert (tiny_upstream / "tiny" / "other.py").read_text() == "x = 1\ny = 2\nz = 3\n"  # (a copy was changed)
    stale = mutants.read_mutant(write(tmp_path, HEADER + DIFF.replace("-y = 2", "-y = 7"), "02-stale.patch"), BRANCHES)
    with pytest.raises(ForkError, match=re.escape("mutant 02-stale does not apply to the patched tree (re-make it")):
        mutants.apply(stale, tiny_upstream, check_only=True)


def test_a_mutant_applies_inside_another_git_repository(tmp_path, tiny_upstream):
    """build/ lies inside this repository: git apply there must not take the repository's paths (and skip ours)."""
    import subprocess

    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    mutant = mutants.read_mutant(write(tmp_path, HEADER + DIFF), BRANCHES)
    tree = mutants.mutated_tree(mutant, tiny_upstream, tmp_path / "build" / "mutated")
    assert (tree / "tiny" / "other.py").read_text() == "x = 1\ny = 3\nz = 3\n"
    stale = mutants.read_mutant(write(tmp_path, HEADER + DIFF.replace("-y = 2", "-y = 7"), "02-stale.patch"), BRANCHES)
    with pytest.raises(ForkError, match="does not apply"):
        mutants.apply(stale, tree, check_only=True)


def test_junit_ids_become_pytest_node_ids():
    assert mutants.test_ids(
        [
            "test.operators.test_sparse_linear_operator.TestSparse::test_matmul",
            "tests.test_differential::test_case_verdict[fork-wrong]",
            "test.utils.test_matmul_chain::test_order",
        ]
    ) == [
        "test/operators/test_sparse_linear_operator.py::TestSparse::test_matmul",
        "tests/test_differential.py::test_case_verdict[fork-wrong]",
        "test/utils/test_matmul_chain.py::test_order",
    ]


def test_the_table_says_which_catcher_caught_each_mutant():
    data = {
        "generated": "2026-12-03",
        "fork_version": "0.6.1+fork.12",
        "catchers": ["differential", "tests", "upstream"],
        "survivors": ["b"],
        "mutants": [
            {"what": "A", "pr": "p", "state": "-",
             "caught_by": {"differential": ["k1", "k2"], "tests": [], "upstream": ["t"]}},
            {"what": "B", "pr": "q", "state": "kept", "caught_by": {"differential": [], "tests": [], "upstream": []}},
        ],
    }  # fmt: skip
    lines = mutants.table(data)
    assert "2 mutants, 1 survived" in lines[0]
    assert "| A | p | - | caught (2 FAILs) | missed | caught |" in lines
    assert "| B | q | kept | missed | missed | missed |" in lines


def test_the_catchers_environment_puts_the_mutant_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = mutants.site_env(tmp_path / "site", tmp_path / "x.whl")
    assert env["PYTHONPATH"].split(":") == [str(tmp_path / "site"), "/elsewhere"]
    assert env["LINEAR_OPERATOR_FORK_WHEEL"] == str(tmp_path / "x.whl")


def test_run_refuses_a_work_folder_under_build_and_unknown_mutants(tmp_path, capsys):
    from linear_operator_fork.__main__ import main
    from linear_operator_fork.recipe import BUILD_DIR

    args = ["mutants", "run", "--stock-site", str(tmp_path), "--work", str(BUILD_DIR / "x")]
    assert main(args) == 1
    assert "not under build/" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "work"), "--mutant", "nothing"]) == 1
    assert "unknown mutant(s) ['nothing']" in capsys.readouterr().err


def test_the_real_mutants_apply_and_cover_every_pull_request(real_recipe):
    """What `nox -s patches` checks: a restructured series needs its mutants re-made, not dropped."""
    found = mutants.load(rec=real_recipe)
    assert {mutant.pr for mutant in found} == {pr.branch for pr in real_recipe.stack}
    mutants.check(found, build.patched_tree(real_recipe))
    names = {mutant.name for mutant in found}
    assert len(names) == len(found)
    for mutant in found:  # each is one small, plausible bug
        diff = mutant.path.read_text().partition("\ndiff --git ")[2]
        changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert 1 <= len(changed) <= 6, mutant.name
