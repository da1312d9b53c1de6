"""What each pull request buys: prefix builds, the tables of docs/prs/, their staleness, the README's summary.

On the small synthetic series of conftest.py (two patches) and made-up records: no build, no run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from conftest import TEST_AUTHOR

from linear_operator_fork import __main__ as cli
from linear_operator_fork import build, pr, prbench, recipe, report, series
from linear_operator_fork.recipe import ForkError, StackedPR
from linear_operator_fork.verify.records import GIB

ROOT = Path(__file__).resolve().parent.parent
STACK = (StackedPR("five", ("c",), ()), StackedPR("new-module", ("a", "d"), ("index",)))


@pytest.fixture
def tiny_recipe(tiny_series, real_recipe):
    _, patches_dir, series_file = tiny_series
    return dataclasses.replace(
        real_recipe, patches_dir=patches_dir, series_file=series_file, stack=STACK, author=TEST_AUTHOR
    )


def record(variant: str, case: str, layout: str, steps=(4.0, 2.0), peak=1.0, status="ok", version=None) -> dict:
    return {"case": case, "variant": variant, "version": version, "device": "cpu", "status": status,
            "peak_bytes": int(peak * GIB), "step_seconds": list(steps) if status == "ok" else [],
            "seconds": sum(steps), "message": "", "torch": "2.13.0+cpu", "threads": 2,
            "params": {"N": 2000, "n": 40, "dtype": "float32", "layout": layout, "size": "small"}}  # fmt: skip


def records_of(rec: recipe.Project, through: int = 1) -> list[dict]:
    """Prefix through-1 (before) and through (after): case a on both layouts, case b (before: oom) on COO."""
    before = prbench.prefix_version(rec, through - 1)
    after = prbench.prefix_version(rec, through)
    return [
        record(prbench.label(through - 1), "a", "coo", (4.0, 2.0), 1.0, version=before),
        record(prbench.label(through), "a", "coo", (1.0, 0.5), 0.25, version=after),
        record(prbench.label(through - 1), "a", "csr", (8.0, 4.0), 2.0, version=before),
        record(prbench.label(through), "a", "csr", (2.0, 0.02), 0.5, version=after),
        record(prbench.label(through - 1), "b", "coo", status="oom", peak=20.0, version=before),
        record(prbench.label(through), "b", "coo", (1.0, 1.0), 0.5, version=after),
    ]


def table_of(rec: recipe.Project, through: int = 1) -> dict:
    return prbench.table_data(rec, through, records_of(rec, through), "2026-01-02")


# --- prefix builds ----------------------------------------------------------------------------------------------


def test_prefix_build_version_is_a_distinct_valid_local_version(real_recipe, tiny_series):
    version = pytest.importorskip("packaging.version")
    _, patches_dir, series_file = tiny_series
    first = build.prefix_series(series.read_series(series_file, patches_dir), 1)
    assert first.names == ["0001-Spell-out-five.patch"]
    name = build.prefix_version(real_recipe, 1)
    assert name == f"{real_recipe.fork_version}.through1" != real_recipe.fork_version
    assert version.Version(name).local == f"fork.{real_recipe.build_number}.through1"
    module = build.version_module(real_recipe, first, 1)
    assert f"__version__ = version = {name!r}" in module and '"through": 1' in module
    assert f"'fork.{real_recipe.build_number}', 'through1')" in module
    assert "through" not in build.version_module(real_recipe, first)  # the whole series' file is as before


def test_prefix_series_bounds(tiny_series):
    _, patches_dir, series_file = tiny_series
    patches = series.read_series(series_file, patches_dir)
    assert build.prefix_series(patches, None) == patches
    assert build.prefix_series(patches, 0).names == []
    with pytest.raises(ForkError, match="--through 3: the series has patches 1 to 2"):
        build.prefix_series(patches, 3)


def test_the_backend_reads_through_from_config_settings_then_the_environment(monkeypatch):
    monkeypatch.delenv(build.THROUGH_ENV, raising=False)
    assert build.through_setting(None) is None and build.through_setting({}) is None
    assert build.through_setting({"through": "2"}) == 2
    assert build.through_setting({"through": ["1", "3"]}) == 3
    monkeypatch.setenv(build.THROUGH_ENV, "4")
    assert build.through_setting(None) == 4
    assert build.through_setting({"through": "1"}) == 1  # the config setting wins
    with pytest.raises(ForkError, match="expected a number of patches"):
        build.through_setting({"through": "all"})


def test_tree_through_parses():
    args = cli.parser().parse_args(["tree", "--through", "2", "/tmp/x"])
    assert (args.through, args.dir) == (2, "/tmp/x")


# --- the cases a pull request is measured on, and the digest of its prefix ----------------------------------------


@pytest.mark.parametrize(
    ("cases", "expected"),
    [
        (("d",), ["d"]),  # the Gram chain's pull request: its case only, not what a, b and g cost
        (("a", "b"), ["a", "b"]),
        (("g", "e"), ["g"]),
        (("d", "a"), ["a", "d"]),  # in the cases' order
        (("a", "b", "d", "g"), ["a", "b", "d", "g"]),
        (("h",), ["h"]),  # a learned L: the transposes' and structures' pull requests
        (("i",), ["i"]),  # long rows: the Gram matrix's index lists for them
        ((), ["a", "b", "g"]),  # none claimed: the benchmark's cases, what it costs
        (("c",), ["a", "b", "g"]),
        (("e", "f"), ["a", "b", "g"]),
    ],
)
def test_benchmark_cases_are_the_claimed_ones_or_the_benchmarks(cases, expected):
    assert prbench.benchmark_cases(StackedPR("x", cases, ())) == expected


def test_the_real_stack_measures_cases_d_h_and_i_where_they_are_claimed(real_recipe):
    for pull_request in real_recipe.stack:
        cases = prbench.benchmark_cases(pull_request)
        assert ("d" in cases) == ("d" in pull_request.cases)
        assert ("h" in cases) == ("h" in pull_request.cases)
        assert ("i" in cases) == ("i" in pull_request.cases)
        assert set(cases) <= set(prbench.PR_CASES) and cases


def test_prefix_digest_is_the_series_digest_of_the_first_k_patches(tiny_recipe):
    names = prbench.patch_names(tiny_recipe)
    assert prbench.prefix_digest(tiny_recipe, 2) == recipe.series_digest(tiny_recipe.patches_dir, names)
    assert prbench.prefix_digest(tiny_recipe, 1) == recipe.series_digest(tiny_recipe.patches_dir, names[:1])
    assert prbench.prefix_digest(tiny_recipe, 1) != prbench.prefix_digest(tiny_recipe, 2)


def test_a_table_is_current_until_its_prefix_changes(tiny_recipe, tmp_path):
    folder = tmp_path / "prs"
    assert [t.state for t in prbench.tables(tiny_recipe, folder)] == ["missing", "missing"]
    prbench.write_table(folder, table_of(tiny_recipe, 1))
    prbench.write_table(folder, table_of(tiny_recipe, 2))
    assert [t.state for t in prbench.tables(tiny_recipe, folder)] == ["current", "current"]
    # A reworded message keeps the code: still current.
    second = tiny_recipe.patches_dir / "0002-Add-new-module.patch"
    second.write_text(second.read_text().replace("Subject: [PATCH] Add new module", "Subject: [PATCH] Add a module"))
    assert [t.state for t in prbench.tables(tiny_recipe, folder)] == ["current", "current"]
    # Patch 2's code changes: its table is stale, patch 1's (below it) is not.
    second.write_text(second.read_text().replace("+NEW = True", "+NEW = False"))
    first, stale = prbench.tables(tiny_recipe, folder)
    assert (first.state, stale.state) == ("current", "stale")
    assert "2-new-module.md is stale: it measured other patches" in prbench.problem(stale)
    assert prbench.problem(first) is None
    # A file this module cannot read measures nothing.
    first.path.write_text("# hand-written\n")
    assert prbench.tables(tiny_recipe, folder)[0].state == "stale"


def test_renamed_branches_leave_orphans(tiny_recipe, tmp_path):
    folder = tmp_path / "prs"
    prbench.write_table(folder, table_of(tiny_recipe, 1))
    (folder / "README.md").write_text("about the tables\n")
    renamed = dataclasses.replace(tiny_recipe, stack=(StackedPR("spelled", (), ()), STACK[1]))
    assert prbench.orphans(tiny_recipe, folder) == []
    assert [p.name for p in prbench.orphans(renamed, folder)] == ["1-five.md"]
    assert prbench.tables(renamed, folder)[0].state == "missing"


# --- the tables ----------------------------------------------------------------------------------------------------


def test_table_data_and_rendering(tiny_recipe):
    data = table_of(tiny_recipe, 2)
    assert (data["through"], data["branch"], data["title"]) == (2, "new-module", "Add new module")
    assert data["digest"] == prbench.prefix_digest(tiny_recipe, 2)
    versions = (build.prefix_version(tiny_recipe, 1), build.prefix_version(tiny_recipe, 2))
    assert (data["before"], data["after"]) == versions
    assert data["size"] == "small" and data["machine"]["torch"] == "2.13.0+cpu" and data["machine"]["cores"] >= 1
    text = "\n".join(prbench.table_lines(data))
    assert "| a | coo | 2000, 40 | 2.00 | 4.00 | 1.00 | 0.50 | 1.00 | 0.25 | 0.25× | 0.25× | 0.25× |" in text
    # a large gain keeps two digits: 0.02 / 4 = 0.005
    assert "| a | csr | 2000, 40 | 4.00 | 8.00 | 2.00 | 0.02 | 2.00 | 0.50 | 0.005× | 0.25× | 0.25× |" in text
    assert "| b | coo | 2000, 40 | **oom** |  | 20.00 | 1.00 | 1.00 | 0.50 |  |  |  |" in text
    assert "against pull requests 1 to 1" in text and "`nox -s benchmark -- --through 2`" in text
    assert "against stock" in "\n".join(prbench.table_lines(table_of(tiny_recipe, 1)))


def test_the_file_holds_its_data_and_says_which_prefix(tiny_recipe, tmp_path):
    data = {**table_of(tiny_recipe, 1), "title": "A title with -- and --> in it"}
    path = prbench.write_table(tmp_path, data)
    assert path.name == "1-five.md"
    text = path.read_text()
    data_line = text.splitlines()[0]
    assert data_line.count("--") == 2 and data_line.endswith(" -->")  # the title cannot close the data's comment
    assert prbench.read_table(path) == json.loads(json.dumps(data))
    assert f"`{data['digest']}`" in text and "# Pull request 1: `five`" in text and f"**{data['title']}**" in text


def test_records_of_another_linear_operator_are_refused(tiny_recipe):
    shadowed = [{**r, "version": "0.6.1"} for r in records_of(tiny_recipe, 2)]
    with pytest.raises(ForkError, match="imported linear_operator 0.6.1, not"):
        prbench.table_data(tiny_recipe, 2, shadowed, "today")
    with pytest.raises(ForkError, match="no records of through-1"):
        prbench.table_data(tiny_recipe, 2, [r for r in records_of(tiny_recipe, 2) if r["variant"] != "through-1"], "")
    with pytest.raises(ForkError, match="pull requests 1 to 2"):
        prbench.table_data(tiny_recipe, 3, records_of(tiny_recipe, 3), "")


# --- the README's summary and the descriptions ---------------------------------------------------------------------


def test_lines_added_split_code_and_tests(tmp_path, tiny_recipe):
    patch = tmp_path / "x.patch"
    patch.write_text(
        "Subject: x\n---\n"
        "diff --git a/pkg/mod.py b/pkg/mod.py\n--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1 +1,2 @@\n-old\n+new\n+more\n"
        "diff --git a/test/op/test_mod.py b/test/op/test_mod.py\n--- /dev/null\n+++ b/test/op/test_mod.py\n"
        "@@ -0,0 +1 @@\n+def test(): pass\n"
    )
    assert prbench.lines_added(patch) == (2, 1)
    first, second = prbench.patch_names(tiny_recipe)
    assert prbench.lines_added(tiny_recipe.patches_dir / first) == (1, 0)
    assert prbench.lines_added(tiny_recipe.patches_dir / second) == (2, 0)


def test_summary_rows(tiny_recipe, tmp_path):
    folder = tmp_path / "prs"
    prbench.write_table(folder, table_of(tiny_recipe, 1))
    lines = prbench.summary_lines(tiny_recipe, folder)
    header = (
        "| # | branch | lines added (code + tests) | a coo | a csr | b coo | b csr | d coo | d csr | g coo | g csr |"
    )
    assert lines[0] == header  # new-module claims d: its columns
    assert lines[1] == "|---|---|---|" + "---|" * 8
    assert lines[2] == "| 1 | `five` | 1 + 0 | 0.25× / 0.25× | 0.005× / 0.25× | before: oom | — | — | — | — | — |"
    # new-module is measured on a and d only: "—" under b and g, not "not measured"
    assert (
        lines[3]
        == "| 2 | `new-module` | 2 + 0 | not measured | not measured | — | — | not measured | not measured | — | — |"
    )
    assert "size small" in lines[-1] and "not for the README" in lines[-1]  # not its pull request's size: said so
    # A pull request that claims a size other than cpu: its table is measured there, and the summary says so
    claiming = dataclasses.replace(tiny_recipe, stack=(StackedPR("five", ("c",), (), "small"), STACK[1]))
    assert prbench.summary_lines(claiming, folder)[-1] == (
        "(Measured at the size the pull request claims, not the benchmark's cpu size: "
        "1 at size small (N = 2000, n = 40).)"
    )
    first = tiny_recipe.patches_dir / prbench.patch_names(tiny_recipe)[0]
    first.write_text(first.read_text().replace("+line five", "+line 5ive"))
    stale = " | ".join(["stale"] * 4 + ["—"] * 2 + ["stale"] * 2)  # five's cases are a, b and g
    assert prbench.summary_lines(tiny_recipe, folder)[2] == f"| 1 | `five` | 1 + 0 | {stale} |"


def test_summary_has_d_columns_only_while_a_pull_request_claims_d(tiny_recipe, tmp_path):
    without_d = dataclasses.replace(tiny_recipe, stack=(STACK[0], StackedPR("new-module", ("a", "b"), ())))
    assert prbench.summary_cases(without_d) == ["a", "b", "g"]
    lines = prbench.summary_lines(without_d, tmp_path / "prs")
    assert lines[0] == "| # | branch | lines added (code + tests) | a coo | a csr | b coo | b csr | g coo | g csr |"
    assert lines[3] == "| 2 | `new-module` | 2 + 0 | " + " | ".join(["not measured"] * 4 + ["—"] * 2) + " |"
    assert prbench.summary_cases(tiny_recipe) == ["a", "b", "d", "g"]
    only_d = dataclasses.replace(tiny_recipe, stack=(StackedPR("five", ("d",), ()), STACK[1]))
    assert prbench.summary_cases(only_d) == ["a", "d"]  # no pull request is measured on b or g


def test_a_pull_request_claiming_d_gets_its_d_rows_in_the_table_and_the_summary(tiny_recipe, tmp_path):
    before, after = (prbench.prefix_version(tiny_recipe, prefix) for prefix in (1, 2))
    records = [
        record(prbench.label(1), "d", "coo", (4.0, 2.0), 1.0, version=before),
        record(prbench.label(2), "d", "coo", (1.0, 0.5), 0.5, version=after),
        record(prbench.label(1), "d", "csr", (4.0, 4.0), 2.0, version=before),
        record(prbench.label(2), "d", "csr", (1.0, 0.4), 0.5, version=after),
    ]
    data = prbench.table_data(tiny_recipe, 2, records, "2026-01-02")
    assert [(row["case"], row["layout"]) for row in data["rows"]] == [("d", "coo"), ("d", "csr")]
    text = "\n".join(prbench.table_lines(data))
    assert "| d | coo | 2000, 40 | 2.00 | 4.00 | 1.00 | 0.50 | 1.00 | 0.50 | 0.25× | 0.25× | 0.50× |" in text
    assert "| d | csr | 2000, 40 | 4.00 | 4.00 | 2.00 | 0.40 | 1.00 | 0.50 | 0.10× | 0.25× | 0.25× |" in text
    folder = tmp_path / "prs"
    prbench.write_table(folder, data)
    row = prbench.summary_lines(tiny_recipe, folder)[3]
    assert row == "| 2 | `new-module` | 2 + 0 | — | — | — | — | 0.25× / 0.50× | 0.10× / 0.25× | — | — |"


def test_description_shows_a_current_table_or_the_command(tiny_recipe, tmp_path):
    folder = tmp_path / "prs"
    prbench.write_table(folder, table_of(tiny_recipe, 1))
    current, missing = (prbench.description_lines(table) for table in prbench.tables(tiny_recipe, folder))
    assert "| a | coo | 2000, 40 | 2.00 | 4.00 | 1.00 | 0.50 | 1.00 | 0.25 | 0.25× | 0.25× | 0.25× |" in current
    assert "No benchmark table" not in "\n".join(current)
    assert "**No benchmark table: " in missing[2] and "2-new-module.md is missing" in missing[2]
    assert missing[2].endswith("Measure it: `nox -s benchmark -- --through 2`.")


def test_pr_descriptions_carry_the_tables_and_never_fail_without_them(tiny_recipe, tiny_series, tmp_path, monkeypatch):
    monkeypatch.setattr(pr.recipe, "load", lambda: tiny_recipe)
    monkeypatch.setattr(pr.sdist, "pristine_tree", lambda rec: tiny_series[0])
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"records": []}))
    folder = tmp_path / "prs"
    prbench.write_table(folder, table_of(tiny_recipe, 1))
    out = tmp_path / "pr"
    argv = ["pr", "--results", str(results), "--out", str(out), "--no-lint", "--pr-benchmarks", str(folder)]
    assert cli.main(argv) == 0
    first = (out / "1-five" / "PR_DESCRIPTION.md").read_text()
    second = (out / "2-new-module" / "PR_DESCRIPTION.md").read_text()
    assert "| a | csr | 2000, 40 |" in first and "No benchmark table" not in first
    assert "Measure it: `nox -s benchmark -- --through 2`." in second and "| a | csr |" not in second


def test_report_command_writes_the_table_and_the_summary(tiny_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "load_recipe", lambda: tiny_recipe)
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    (run / "records" / "all.json").write_text(json.dumps({"records": records_of(tiny_recipe, 1)}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{prbench.SUMMARY_BEGIN}\nold\n{prbench.SUMMARY_END}\nrest\n")
    prs = tmp_path / "prs"
    argv = ["report", str(run), "--through", "1", "--prs", "--readme", str(readme), "--prs-dir", str(prs)]
    assert cli.main(argv) == 0
    assert prbench.read_table(prs / "1-five.md")["rows"][0]["case"] == "a"
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| 1 | `five` | 1 + 0 | 0.25× / 0.25× | 0.005× / 0.25× |" in text
    assert "pull request 2: " in capsys.readouterr().out  # names the table still missing
    assert cli.main(["report", "--through", "1"]) == 1  # the run's folder is needed


# --- the README is what the command writes -------------------------------------------------------------------------


def test_readme_summary_is_what_report_prs_writes(real_recipe):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(prbench.SUMMARY_BEGIN) + r"\n(.*?)\n?" + re.escape(prbench.SUMMARY_END), text, re.S)
    assert match, f"README.md has no {prbench.SUMMARY_BEGIN} ... {prbench.SUMMARY_END} block"
    expected = prbench.summary_lines(real_recipe, prbench.PRS_DIR)
    assert match[1].splitlines() == expected, (
        "README.md's 'what each pull request buys' is out of date (the series or docs/prs/ changed): run "
        "`python -m linear_operator_fork report --prs`"
    )
    assert len(expected) >= 2 + len(real_recipe.stack)  # a row per pull request
