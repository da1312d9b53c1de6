"""What a pull request costs SGPR users (linear_operator_fork.sgpr): real, small runs of gpytorch's SGPR."""

from __future__ import annotations

import shutil
from pathlib import Path

import linear_operator
import pytest

from linear_operator_fork import sgpr

SMALL = ["--size", "200", "--inducing", "20", "--steps", "2", "--rounds", "1"]


def copy_of_installed(folder: Path) -> Path:
    """A directory variant: a copy of the installed linear_operator package."""
    shutil.copytree(Path(linear_operator.__file__).parent, folder / "linear_operator")
    return folder


def test_installed_and_a_copy_of_it_train_to_the_same_loss(tmp_path, capsys):
    site = copy_of_installed(tmp_path / "site")
    assert sgpr.main(["--variant", sgpr.INSTALLED, "--variant", str(site), *SMALL]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(f"| {sgpr.INSTALLED}")]
    rows += [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(f"| {site}")]
    assert len(rows) == 2, out
    (_, version, step, predict, loss, variance), other = rows
    assert version.strip() == linear_operator.__version__
    assert float(step) > 0 and float(predict) > 0
    # The same code on the same data: the same loss and variances
    assert other[4:] == [loss, variance]
    assert 0 < float(variance) < 10, out


def test_a_directory_without_linear_operator_is_refused_before_any_run(tmp_path, capsys):
    assert sgpr.main(["--variant", sgpr.INSTALLED, "--variant", str(tmp_path), *SMALL]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "linear_operator/__init__.py" in err


def test_a_failing_variant_names_itself_and_its_error(tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / "linear_operator").mkdir(parents=True)
    (broken / "linear_operator" / "__init__.py").write_text("raise ImportError('planted import error')\n")
    assert sgpr.main(["--variant", str(broken), *SMALL]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err and "planted import error" in err


def test_a_variant_that_imports_another_linear_operator_is_refused(tmp_path, monkeypatch):
    site = copy_of_installed(tmp_path / "site")
    # The copy is put first on PYTHONPATH; a run whose linear_operator came from elsewhere did not test it
    monkeypatch.setattr(sgpr, "CHILD", sgpr.CHILD.replace("linear_operator.__file__", "'/elsewhere/__init__.py'"))
    with pytest.raises(sgpr.SGPRError, match="not from that directory"):
        sgpr.run(str(site), 200, 20, 2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--size", "10", "--inducing", "20"], "at most --size"), (["--rounds", "0"], "--rounds must be at least 1")],
)
def test_bad_sizes_are_usage_errors(arguments, message, capsys):
    with pytest.raises(SystemExit) as raised:
        sgpr.main(["--variant", sgpr.INSTALLED, *arguments])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
