"""The large-M cases and their runner: schema, memory cap, time limit, CUDA skip, fork vs plain-torch reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from linear_operator_fork.__main__ import main
from linear_operator_fork.verify import catalogue, data, models, reference, runner
from linear_operator_fork.verify.protocol import collect_grads

RECORD_KEYS = {
    "case",
    "variant",
    "version",
    "file",
    "device",
    "status",
    "peak_bytes",
    "seconds",
    "message",
    "params",
    "losses",
    "grads",
}
RTOL = {"float32": 1e-4, "float64": 1e-9}


def run_cli(tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "records.json"
    assert main(["cases", "run", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())["records"]


def assert_agree(result: dict, reference: dict, rtol: float) -> None:
    """Losses relative to each loss; gradients relative to the largest gradient entry of the reference."""
    assert len(result["losses"]) == len(reference["losses"]) == catalogue.STEPS
    for got, want in zip(result["losses"], reference["losses"], strict=True):
        assert abs(got - want) <= rtol * abs(want), (result["losses"], reference["losses"])
    assert result["grads"].keys() == reference["grads"].keys()
    scale = max(abs(value) for values in reference["grads"].values() for value in values)
    for name, want in reference["grads"].items():
        for got_i, want_i in zip(result["grads"][name], want, strict=True):
            assert abs(got_i - want_i) <= rtol * scale, (name, result["grads"], reference["grads"])


@pytest.fixture(scope="module")
def small_records(installed_wheel, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every case at size `small` on the installed fork, and the reference, through the real runner."""
    tmp_path = tmp_path_factory.mktemp("small")
    # One thread: tiny problems are slower with more, and much slower on a busy machine
    records = run_cli(tmp_path, "--variant", "fork", "--size", "small", "--threads", "1")
    records += run_cli(tmp_path, "--variant", "reference", "--size", "small", "--cases", "a,b,h,i", "--threads", "1")
    return {(r["variant"], r["case"]): r for r in records}


def test_list_names_every_case_and_size(capsys):
    assert main(["cases", "list"]) == 0
    out = capsys.readouterr().out
    for name, case in catalogue.CASES.items():
        assert f"{name}: {case.title}" in out
    assert "N=1000000 n=500" in out and "m=50" in out


@pytest.mark.parametrize("case", catalogue.DEFAULT_CASES)
def test_small_case_runs_ok_on_the_installed_fork(small_records, case):
    import linear_operator

    record = small_records[("fork", case)]
    assert RECORD_KEYS <= record.keys()
    assert record["status"] == "ok", record
    assert record["version"] == linear_operator.__version__
    assert Path(record["file"]).resolve() == Path(linear_operator.__file__).resolve()
    assert record["device"] == "cpu" and record["params"]["size"] == "small" and record["threads"] == 1
    assert record["peak_bytes"] > 0 and record["seconds"] > 0
    assert len(record["losses"]) == catalogue.STEPS and all(math.isfinite(loss) for loss in record["losses"])
    assert record["grads"] and all(isinstance(v, list) for v in record["grads"].values())


def test_the_fork_uses_its_own_sparse_linear_operator(small_records):
    classes = {case: small_records[("fork", case)]["params"]["sparse_class"] for case in ("a", "b", "d", "h", "i")}
    assert classes == dict.fromkeys(classes, catalogue.FORK_SPARSE_CLASS), (
        "the installed linear_operator has no linear_operator.operators.SparseLinearOperator: "
        "the cases fell back to the thread's class"
    )
    assert small_records[("fork", "c")]["params"]["sparse_class"] == catalogue.THREAD_SPARSE_CLASS


@pytest.mark.parametrize("case", ["a", "b", "h", "i"])
def test_runner_records_of_fork_and_reference_agree(small_records, case):
    reference = small_records[("reference", case)]
    assert reference["status"] == "ok" and reference["version"] is None and reference["file"] is None
    assert_agree(small_records[("fork", case)], reference, RTOL["float32"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("case", ["a", "b", "h", "i"])
def test_fork_matches_the_woodbury_reference(installed_wheel, case, layout, dtype):
    import torch

    params = catalogue.CASES[case].sizes["small"]
    long_rows = catalogue.LONG_ROWS if case == "i" else 0
    sample = data.make_data(params["N"], params["n"], getattr(torch, dtype), "cpu", long_rows=long_rows)
    torch.manual_seed(catalogue.SEED)
    result = models.run_gp(case, sample, data.sparse_matrix(sample, layout))
    assert_agree(result, reference.reference_steps(case, sample), RTOL[dtype])


def test_learned_weights_are_trained_from_the_values_of_l(installed_wheel):
    import torch
    import torch.nn.functional as F

    params = catalogue.CASES["h"].sizes["small"]
    sample = data.make_data(params["N"], params["n"], torch.float64, "cpu")
    for layout in ("coo", "csr"):
        L = data.sparse_matrix(sample, layout)
        raw_weights = models.learned_weights(L)
        torch.testing.assert_close(F.softplus(raw_weights), sample.vals.reshape(-1))
        operator = models.weighted_rows(models.sparse_class()[0], L, raw_weights)
        torch.testing.assert_close(operator.to_dense(), L.to_dense())
    result = models.run_gp("h", sample, data.sparse_matrix(sample, "coo"))
    assert result["grads"]["raw_weights.norm"][0] > 0
    assert result["losses"][1] < result["losses"][0]


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_long_rows_of_case_i_cover_every_column_and_the_reference_sums_them(layout):
    import torch

    sample = data.make_data(300, 12, torch.float64, "cpu", long_rows=3)
    dense = data.sparse_matrix(sample, layout).to_dense()
    assert dense.shape == (300, 12)
    assert (dense[-3:] > 0).all() and ((dense[:-3] != 0).sum(-1) == catalogue.NNZ_PER_ROW).all()
    torch.testing.assert_close(dense.sum(-1), torch.ones(300, dtype=torch.float64))
    x, weights = torch.randn(300, dtype=torch.float64), torch.rand(300, dtype=torch.float64)
    torch.testing.assert_close(reference.sparse_t_matvec(sample, x), dense.mT @ x)
    torch.testing.assert_close(reference.weighted_gram(sample, weights), dense.mT @ (weights.unsqueeze(-1) * dense))
    with pytest.raises(ValueError, match="long rows"):
        data.data_rows(sample, 100)


def test_a_large_gradient_is_recorded_so_that_misplaced_entries_show():
    import torch

    grad = torch.linspace(1.0, 2.0, 100, dtype=torch.float64)
    swapped = grad.clone()
    swapped[[3, 60]] = swapped[[60, 3]]
    recorded = []
    for values in (grad, swapped):
        param = torch.zeros(100, dtype=torch.float64, requires_grad=True)
        param.grad = values
        recorded.append(collect_grads([("model.raw_weights", param)]))
    assert recorded[0].keys() == {"raw_weights.norm", "raw_weights.signed"}
    assert recorded[0]["raw_weights.norm"] == pytest.approx(recorded[1]["raw_weights.norm"])
    assert abs(recorded[0]["raw_weights.signed"][0] - recorded[1]["raw_weights.signed"][0]) > 0.1


def test_reference_skips_the_cases_it_does_not_compute(tmp_path):
    records = run_cli(tmp_path, "--variant", "reference", "--cases", "c,d", "--size", "small")
    assert [(r["case"], r["status"]) for r in records] == [("c", "skipped"), ("d", "skipped")]
    assert all("the reference does not compute case" in r["message"] for r in records)


def test_allocation_beyond_the_cap_is_recorded_as_oom():
    pytest.importorskip("torch")
    run = runner.Run("probe", "selftest", {"alloc_gib": 8, "sleep_s": 0}, "cpu")
    record = runner.run_one(run, pythonpath=None, cap_bytes=2 * 2**30, timeout=120)
    assert record["status"] == "oom", record
    assert "can't allocate memory" in record["message"]
    assert record["peak_bytes"] < 2 * 2**30 and record["params"]["cap_bytes"] == 2 * 2**30


def test_the_peak_is_that_of_the_measured_part():
    pytest.importorskip("torch")
    run = runner.Run("probe", "selftest", {"alloc_gib": 0.5, "sleep_s": 0}, "cpu")
    record = runner.run_one(run, pythonpath=None, cap_bytes=None, timeout=120)
    assert record["status"] == "ok", record
    assert record["peak_scope"] == "measured part"
    # The 0.5 GiB block is touched (torch.ones) in the measured part, on top of what was resident before it
    assert record["peak_bytes"] >= record["baseline_rss_bytes"] + 0.45 * 2**30
    assert record["peak_bytes"] <= record["host_peak_bytes"]


def test_prediction_inputs_name_every_row_exactly_beyond_float32():
    # The inputs of cases e and f are row numbers: at CUDA sizes (2.01e7 rows) they pass 2**24, where float32 rounds
    # them to even numbers (a wrong row, or one past the end)
    pytest.importorskip("torch")
    start = 2**24 - 1
    rows = models.row_inputs(start, start + 4, "cpu").squeeze(-1).long().tolist()
    assert rows == [start, start + 1, start + 2, start + 3]


def test_the_model_keeps_its_row_number_inputs_exact():
    # The model is cast to the data's dtype (float32): its training inputs must stay the float64 row numbers, or the
    # prediction (train and test rows together) selects rounded rows beyond 2**24
    torch = pytest.importorskip("torch")
    sparse = data.make_data(6, 4, torch.float32, "cpu")
    train_x = models.row_inputs(2**24 - 3, 2**24 + 3, "cpu")
    likelihood = models.make_likelihood("a", sparse)
    model = models.sparse_observation_gp(sparse, train_x, sparse.y, likelihood, lambda x: None)
    assert model.train_inputs[0].dtype == torch.float64
    assert model.train_inputs[0].squeeze(-1).long().tolist() == list(range(2**24 - 3, 2**24 + 3))


def test_reset_peak_rss_forgets_freed_memory():
    torch = pytest.importorskip("torch")
    from linear_operator_fork.verify import protocol

    block = torch.ones(2**28, dtype=torch.uint8)  # 256 MiB, touched
    del block
    before = protocol.self_peak_rss()
    assert protocol.reset_peak_rss()
    assert protocol.self_peak_rss() < before - 2**27
    block = torch.ones(2**28, dtype=torch.uint8)
    rss = protocol.self_rss()  # (read first: the RSS may grow between the two reads, the peak covers it)
    assert protocol.self_peak_rss() >= rss >= 2**28
    del block


def test_torch_that_does_not_fit_under_the_cap_is_oom():
    pytest.importorskip("torch")
    run = runner.Run("probe", "selftest", {"alloc_gib": 0, "sleep_s": 0}, "cpu")
    record = runner.run_one(run, pythonpath=None, cap_bytes=2**28, timeout=120)  # torch does not even import
    assert record["status"] == "oom", record


@pytest.mark.parametrize(("last_words", "status"), [("MemoryError", "oom"), ("Segmentation fault", "error")])
def test_a_child_that_dies_without_a_record(tmp_path, last_words, status):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import os, sys\nsys.stderr.write({last_words!r})\nos._exit(3)\n")
    run = runner.Run("probe", "selftest", {"alloc_gib": 0, "sleep_s": 0}, "cpu")
    record = runner.run_one(run, pythonpath=str(site), cap_bytes=None, timeout=120)
    assert record["status"] == status and record["exit_code"] == 3
    assert record["message"] == f"child died (exit code 3) without a record: {last_words}"


def test_timeout_is_recorded_as_limit():
    pytest.importorskip("torch")
    run = runner.Run("probe", "selftest", {"alloc_gib": 0, "sleep_s": 600}, "cpu")
    record = runner.run_one(run, pythonpath=None, cap_bytes=None, timeout=4)
    assert record["status"] == "limit" and "timed out after 4 s" in record["message"]
    assert record["total_seconds"] < 60


def test_cuda_without_a_gpu_gives_skipped_records(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    records = run_cli(tmp_path, "--variant", "fork", "--device", "cuda", "--size", "cuda")
    assert [r["case"] for r in records] == catalogue.DEFAULT_CASES
    assert all(r["status"] == "skipped" and r["message"] == runner.NO_CUDA for r in records)
    assert runner.NO_CUDA in capsys.readouterr().out


def test_new_rows_set_t_of_the_prediction_cases():
    from linear_operator_fork.__main__ import parser

    args = parser().parse_args(["cases", "run", "--variant", "fork", "--cases", "e,f", "--new-rows", "100000"])
    assert [run.params["T"] for run in runner.plan(args)] == [100000, 100000]
    args = parser().parse_args(["cases", "run", "--variant", "fork", "--cases", "f"])
    assert [run.params["T"] for run in runner.plan(args)] == [10000]  # the size's


@pytest.mark.parametrize(
    ("args", "named", "code"),
    [
        (["--cases", "a,zz"], "zz", 2),  # argparse: usage error
        (["--size", "huge"], "huge", 2),
        (["--cases", "probe", "--size", "cuda"], "probe", 1),  # ForkError: printed, exit status 1
        (["--cases", "e,a", "--new-rows", "10"], "case a predicts no new rows", 1),
    ],
)
def test_bad_case_or_size_is_an_error_naming_it(tmp_path, capsys, args, named, code):
    argv = ["cases", "run", "--variant", "fork", *args, "--out", str(tmp_path / "x.json")]
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    assert status == code
    assert named in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("own_class", [False, True], ids=["thread-class", "fork-class"])
def test_thread_script_trains_on_the_fork(installed_wheel, own_class):
    """The seed's script trains on the installed fork, with the thread's class and rewritten with the fork's."""
    import torch
    from linear_operator.operators import SparseLinearOperator

    from linear_operator_fork.verify import thread_script

    losses = []
    try:
        model = thread_script.main(
            m=11,  # M = 1331 > max_cholesky_size: the Lanczos root of the thread's run
            device="cpu",
            observe=lambda step, loss, model: losses.append(loss.item()),
            sparse_class=SparseLinearOperator if own_class else None,
        )
    finally:
        torch.set_default_device("cpu")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert model.root_shape[0] == 11**3
