"""The report: the verdict that decides whether verify passes, and the tables every output shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linear_operator_fork import report
from linear_operator_fork.__main__ import main
from linear_operator_fork.recipe import ForkError
from linear_operator_fork.verify import records

GIB = records.GIB


def suite(variant: str, passed: int, failed: int = 0, **fields) -> dict:
    return {"case": "upstream-suite", "variant": variant, "version": "v", "status": "ok", "passed": passed,
            "failed": failed, "skipped": 0, "failures": [], "passed_ids": [], "seconds": 1.0, **fields}  # fmt: skip


def case(name: str, variant: str, status: str = "ok", losses=(1.0, 0.5), **params) -> dict:
    return {"case": name, "variant": variant, "version": "v", "device": "cpu", "status": status, "seconds": 2.0,
            "peak_bytes": GIB, "message": "", "losses": list(losses), "params": {"N": 1000, **params}}  # fmt: skip


SUITES_OK = [suite("stock", 10), suite("fork", 12), {**suite("stock", 5), "case": "gpytorch-suite"},
             {**suite("fork", 5), "case": "gpytorch-suite"},
             {**suite("gpytorch-fork", 6), "case": "gpytorch-suite", "gpytorch": "1.15.2+fork.0"}]  # fmt: skip


def test_a_clean_fork_passes_and_the_facts_say_so():
    problems, facts = report.verdicts([*SUITES_OK, case("a", "stock"), case("a", "fork"), case("a", "reference")])
    assert problems == []
    assert "upstream-suite: fork 12 passed vs stock 10, no regression" in facts
    assert "stock failed (oom/limit/error) on 0 case run(s)" in facts


@pytest.mark.parametrize(
    ("fork", "expected"),
    [
        (suite("fork", 12, failed=1, failures=["t::x"]), "upstream-suite: 1 failing on fork (1 not failing on stock)"),
        (suite("fork", 9), "upstream-suite: fork passes 9, fewer than stock's 10"),
        (suite("fork", 0, status="error", message="collection failed"), "the fork run is error: collection failed"),
    ],
)
def test_a_suite_regression_fails(fork, expected):
    problems, _ = report.verdicts([suite("stock", 10), fork, *SUITES_OK[2:], case("a", "fork")])
    assert any(expected in problem for problem in problems), problems


def test_the_patched_gpytorch_suite_is_a_third_variant_next_to_stock_and_fork():
    """gpytorch's suite on the patched gpytorch (gpytorch-fork) is compared with stock's, and required."""
    problems, facts = report.verdicts([*SUITES_OK, case("a", "fork")])
    assert "gpytorch-suite: gpytorch-fork 6 passed vs stock 5, no regression" in facts
    assert "gpytorch-fork: gpytorch 1.15.2+fork.0" in report.versions(SUITES_OK)
    rows = [line for line in report.suites_table(SUITES_OK) if line.startswith("| gpytorch-suite |")]
    assert [row.split(" | ")[1] for row in rows] == ["stock", "fork", "gpytorch-fork"]
    failing = {**suite("gpytorch-fork", 5, failed=1, failures=["t::g"]), "case": "gpytorch-suite"}
    problems, _ = report.verdicts([*SUITES_OK[:4], failing, case("a", "fork")])
    assert "gpytorch-suite: 1 failing on gpytorch-fork (1 not failing on stock)" in problems
    problems, _ = report.verdicts([*SUITES_OK[:4], case("a", "fork")])
    assert "gpytorch-suite: no record for gpytorch-fork (did its session run?)" in problems


def test_a_test_lost_against_stock_fails_even_when_the_count_holds():
    stock = suite("stock", 2, passed_ids=["t::a", "t::b"])
    fork = suite("fork", 2, passed_ids=["t::a", "t::new"])
    problems = report.suite_problems("upstream-suite", stock, fork)
    assert problems == ["upstream-suite: 1 test(s) pass on stock but not on fork", "  t::b"]


def test_a_missing_suite_or_fork_case_record_fails():
    problems, _ = report.verdicts([case("a", "stock")])
    assert "upstream-suite: no record for the fork (did its session run?)" in problems
    assert any(p.startswith("large-M cases: no record for the fork") for p in problems)
    assert report.verdicts([case("a", "fork")], suites=False)[0] == []


@pytest.mark.parametrize("status", ["oom", "limit", "error"])
def test_a_fork_case_that_is_not_ok_fails_and_a_stock_one_is_a_fact(status):
    problems, facts = report.verdicts([case("a", "fork", status), case("a", "stock", status)], suites=False)
    assert problems == [f"case a [cpu] N=1000: fork {status}: "]
    assert "stock failed (oom/limit/error) on 1 case run(s)" in facts


@pytest.mark.parametrize(("dtype", "off", "fails"), [("float32", 2e-4, True), ("float32", 5e-5, False),
                                                      ("float64", 2e-9, True), ("float64", 5e-10, False)])  # fmt: skip
def test_a_fork_loss_off_the_reference_beyond_the_dtypes_tolerance_fails(dtype, off, fails):
    fork = case("a", "fork", losses=(1.0 + off, 0.5), dtype=dtype)
    problems, _ = report.verdicts([fork, case("a", "reference", dtype=dtype)], suites=False)
    assert bool(problems) == fails, problems


def test_learned_noise_fact_compares_case_g_with_case_b():
    fixed, learned = case("b", "fork"), {**case("g", "fork"), "seconds": 2.5, "peak_bytes": 1.2 * GIB}
    _, facts = report.verdicts([fixed, learned], suites=False)
    assert "case g [cpu] N=1000: learned / fixed noise (case b) on the fork: time 1.25×, peak 1.20×" in facts


def test_cases_table_ratios_and_messages():
    stock = {**case("a", "stock"), "peak_bytes": 8 * GIB, "seconds": 40.0}
    failed = {**case("b", "stock", "oom"), "message": "can't allocate"}
    fork = {**case("a", "fork"), "step_seconds": [1.5, 0.5]}
    reference = {**case("a", "reference"), "step_seconds": [1.0, 1.0]}
    lines = report.cases_table([stock, fork, reference, failed, case("b", "fork")])
    assert lines[0] == (
        "| case | device | parameters | stock | fork | reference | stock/fork peak | fork/ref. time | "
        "fork/ref. last step | fork/ref. peak | loss vs ref. |"
    )
    cells = (
        "ok, 40.0 s, 8.00 GiB | ok, 2.00 s (1.50 + 0.50), 1.00 GiB | ok, 2.00 s (1.00 + 1.00), 1.00 GiB | 8.00× | "
        "1.00× | 0.50× | 1.00× | 0.0e+00"
    )
    assert f"| a | cpu | N=1000 | {cells} |" in lines
    assert "| b | cpu | N=1000 | **oom** (1.00 GiB) | ok, 2.00 s, 1.00 GiB | — |  |  |  |  |  |" in lines
    assert "- case b N=1000 stock (oom): can't allocate" in lines
    assert all("| a |" not in line for line in report.cases_table([case("a", "fork"), case("b", "fork")], ["b"]))


def test_rounds_of_a_variant_are_shown_as_their_medians():
    # Three rounds of the fork (in the order they ran), one of the reference: each column is the median of the fork's
    runs = [
        {**case("a", "fork"), "seconds": 1.0, "step_seconds": [0.8, 0.2], "peak_bytes": 1 * GIB},
        {**case("a", "fork"), "seconds": 3.0, "step_seconds": [2.0, 1.0], "peak_bytes": 3 * GIB},
        {**case("a", "fork"), "seconds": 2.0, "step_seconds": [1.5, 0.5], "peak_bytes": 2 * GIB},
    ]
    reference = {**case("a", "reference"), "step_seconds": [1.0, 0.25]}
    lines = report.cases_table([*runs, reference])
    cells = (
        "ok, 2.00 s (1.50 + 0.50), 2.00 GiB | ok, 2.00 s (1.00 + 0.25), 1.00 GiB |  | 1.00× | 2.00× | 2.00× | 0.0e+00"
    )
    assert f"| a | cpu | N=1000 | {cells} |" in lines
    assert "(medians of rounds: fork 3):" in report.benchmark_lines([*runs, reference], "nox -s benchmark")[0]
    # A round that failed stands for them all
    failed = {**case("a", "fork", "oom"), "message": "can't allocate"}
    lines = report.cases_table([*runs, failed, reference])
    assert any(line.startswith("| a | cpu | N=1000 | **oom**") for line in lines)
    assert report.median_of_rounds(runs[:1]) is runs[0]


def test_replace_block_rewrites_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{report.README_BEGIN}\nold\n{report.README_END}\nbottom\n")
    records.replace_block(readme, report.README_BEGIN, report.README_END, ["new 1", "new 2"])
    assert readme.read_text() == f"top\n{report.README_BEGIN}\nnew 1\nnew 2\n{report.README_END}\nbottom\n"
    readme.write_text("no markers\n")
    with pytest.raises(ForkError, match="no <!-- benchmark:begin --> ... <!-- benchmark:end --> block"):
        records.replace_block(readme, report.README_BEGIN, report.README_END, ["x"])


def write_run(folder: Path, run: list[dict]) -> None:
    records.write(folder / "records" / "cases.json", run)


def test_report_command_writes_results_and_the_readme_block_and_fails_on_a_problem(tmp_path, capsys):
    folder = tmp_path / "benchmark"
    write_run(folder, [case("a", "stock"), case("a", "fork"), case("a", "reference")])
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_BEGIN}\n{report.README_END}\n")
    assert main(["report", str(folder), "--cases-only", "--readme", str(readme), "--command", "nox -s x"]) == 0
    block = readme.read_text().split(report.README_BEGIN)[1]
    assert block.startswith("\n`nox -s x`, ") and "| a | cpu | N=1000 |" in block
    assert json.loads((folder / "results.json").read_text())["problems"] == []
    write_run(folder, [case("a", "fork", "error")])
    assert main(["report", str(folder), "--cases-only"]) == 1
    assert "FAIL: case a [cpu] N=1000: fork error" in (folder / "report.md").read_text()


def test_a_differential_fork_fail_fails_verify(tmp_path):
    folder = tmp_path / "verify"
    write_run(folder, [*SUITES_OK, case("a", "fork")])
    differential = tmp_path / "differential" / "results.json"
    differential.parent.mkdir()
    summary = {"cases": 10, "outputs": 20, "unchecked": 1, "stock_failures": 2, "fork_failures": 0, "fork_fails": 1,
               "fork_better": 2}  # fmt: skip
    checks = {"solve": {"float32": {"outputs": 10, "unchecked": 1}, "float64": {"outputs": 10, "unchecked": 0}}}
    fail = {"key": "op=solve;seed=3", "reason": "more than 10 x as far from the reference as stock"}
    data = {"summary": summary, "checks": checks, "fails": [fail], "generated": "now"}
    differential.write_text(json.dumps(data))
    assert main(["report", str(folder)]) == 1
    text = (folder / "report.md").read_text()
    assert "| 10 | 20 | 1 | 2 | 0 | 1 | 2 |" in text and "differential: fork FAIL op=solve;seed=3" in text
    assert "unchecked (no answer could fail them)" not in text  # (float32 ones are counted, not failed)


def test_an_unchecked_float64_output_of_the_differential_fails_verify(tmp_path):
    folder = tmp_path / "verify"
    write_run(folder, [*SUITES_OK, case("a", "fork")])
    differential = tmp_path / "differential" / "results.json"
    differential.parent.mkdir()
    summary = {"cases": 1, "outputs": 2, "unchecked": 1, "stock_failures": 0, "fork_failures": 0, "fork_fails": 0,
               "fork_better": 0}  # fmt: skip
    checks = {"solve": {"float64": {"outputs": 2, "unchecked": 1}}}
    differential.write_text(json.dumps({"summary": summary, "checks": checks, "fails": [], "generated": "now"}))
    assert main(["report", str(folder)]) == 1
    assert "1 float64 output(s) unchecked" in (folder / "report.md").read_text()


def test_report_without_records_says_what_to_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "run `nox -s verify`" in capsys.readouterr().err


def test_prediction_rows_show_time_memory_added_and_errors():
    info = {"train_peak_bytes": GIB, "predict_seconds": 3.0, "mean_error": 1e-6, "variance_error": 2e-5,
            "reference_variance_error": 3e-5}  # fmt: skip
    record = {**case("e", "fork", N=1000, T=100, dtype="float32"), "peak_bytes": GIB + 4 * 1000 * 100 * 3, "info": info}
    lines = report.prediction_lines([record])
    cells = "fork | ok | 3.00 | 1.00 | 1.00 | 3.00 | 1.0e-06 | 2.0e-05 | 3.0e-05"
    assert f"| e | cpu | N=1000, T=100, dtype=float32 | {cells} |" in lines
    assert report.prediction_lines([case("a", "fork")]) == []
