"""The patch series: checkout, export, check, on a small synthetic upstream and on the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import TEST_AUTHOR

from linear_operator_fork import recipe, sdist, series
from linear_operator_fork.recipe import ForkError


def series_of(patches_dir: Path, series_file: Path) -> series.Series:
    return series.read_series(series_file, patches_dir)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_export_writes_series_and_dep3_headers(tiny_series):
    _, patches_dir, series_file = tiny_series
    listed = series_of(patches_dir, series_file)
    assert listed.names == ["0001-Spell-out-five.patch", "0002-Add-new-module.patch"]
    assert series.headers(listed.paths[0]) == {"Forwarded": "no"}
    assert series.headers(listed.paths[1])["Bug"] == "https://example.invalid/1"
    assert series.touched_files(listed.paths[1]) == ["tiny/new.py", "tiny/other.py"]


def test_export_is_deterministic(tmp_path, tiny_series):
    """Checkout + export with no edits gives byte-identical files: no dates, hashes, versions."""
    pristine, patches_dir, series_file = tiny_series
    before = snapshot(patches_dir)
    text = "".join(p.decode() for p in before.values())
    assert "Date:" not in text and "\n-- \n" not in text
    assert "From 0000000000000000000000000000000000000000" in text
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "again", "tiny 1.0")
    series.export(repo, series_file, patches_dir, TEST_AUTHOR)
    assert snapshot(patches_dir) == before
    series.round_trip(pristine, series_of(patches_dir, series_file), series_file, "tiny 1.0", TEST_AUTHOR)


def test_checkout_has_pristine_commit_then_one_commit_per_patch(tmp_path, tiny_series):
    pristine, patches_dir, series_file = tiny_series
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    log = series.git(repo, "log", "--format=%s", "--reverse").stdout.splitlines()
    assert log == ["tiny 1.0", "Spell out five", "Add new module"]
    assert (
        series.git(repo, "rev-list", "--max-parents=0", "HEAD").stdout
        == series.git(repo, "rev-parse", series.BASE_TAG).stdout
    )
    assert (repo / "tiny" / "new.py").read_text() == "NEW = True\n"


def test_patch_that_no_longer_applies_is_named_with_its_file(tmp_path, tiny_series):
    pristine, patches_dir, series_file = tiny_series
    moved = tmp_path / "tiny-1.1"
    shutil.copytree(pristine, moved)
    (moved / "tiny" / "other.py").write_text("x = 1\ny = 3\nz = 3\n")  # upstream changed the patched line
    with pytest.raises(series.PatchFailed) as info:
        series.round_trip(moved, series_of(patches_dir, series_file), series_file, "tiny 1.1", TEST_AUTHOR)
    assert info.value.patch == "0002-Add-new-module.patch"
    assert info.value.files == ["tiny/other.py"]
    assert "0002-Add-new-module.patch" in str(info.value) and "tiny/other.py" in str(info.value)


def test_no_fuzz_when_context_moved(tmp_path, tiny_series):
    """A hunk whose context lines changed is refused, not applied with fuzz."""
    pristine, patches_dir, series_file = tiny_series
    moved = tmp_path / "tiny-1.2"
    shutil.copytree(pristine, moved)
    init = moved / "tiny" / "__init__.py"
    init.write_text(init.read_text().replace("line 4\n", "line four\n"))
    with pytest.raises(series.PatchFailed) as info:
        series.round_trip(moved, series_of(patches_dir, series_file), series_file, "tiny 1.2", TEST_AUTHOR)
    assert info.value.patch == "0001-Spell-out-five.patch"
    assert info.value.files == ["tiny/__init__.py"]


def test_hand_edited_patch_is_reported(tiny_series):
    pristine, patches_dir, series_file = tiny_series
    patch = patches_dir / "0001-Spell-out-five.patch"
    patch.write_text(patch.read_text().replace("+line five", "+line 5ive"))  # the index line is now stale
    with pytest.raises(ForkError, match="0001-Spell-out-five.patch is not in exported form"):
        series.round_trip(pristine, series_of(patches_dir, series_file), series_file, "tiny 1.0", TEST_AUTHOR)


def test_missing_forwarded_header_is_refused(tmp_path, tiny_series):
    pristine, patches_dir, series_file = tiny_series
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    (repo / "tiny" / "other.py").write_text("x = 1\n")
    series.git(repo, "commit", "--quiet", "-am", "No header here")
    with pytest.raises(ForkError, match="lacks the DEP-3 trailer"):
        series.export(repo, series_file, patches_dir, TEST_AUTHOR)


def test_export_refuses_uncommitted_work(tmp_path, tiny_series):
    pristine, patches_dir, series_file = tiny_series
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    (repo / "tiny" / "other.py").write_text("dirty\n")
    with pytest.raises(ForkError, match="uncommitted changes"):
        series.export(repo, series_file, patches_dir, TEST_AUTHOR)


def test_series_naming_a_missing_patch(tmp_path):
    (tmp_path / "series").write_text("# comment\n0001-gone.patch\n")
    with pytest.raises(ForkError, match="series:2: patch 0001-gone.patch listed but not found"):
        series.read_series(tmp_path / "series", tmp_path)


def test_checkout_refuses_non_empty_folder(tmp_path, tiny_series):
    pristine, patches_dir, series_file = tiny_series
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ForkError, match="not empty"):
        series.checkout(pristine, series_of(patches_dir, series_file), target, "tiny 1.0")
    assert (target / "mine.txt").read_text() == "keep me"


def test_build_number_follows_series(tmp_path, tiny_series):
    _, patches_dir, series_file = tiny_series
    names = series_of(patches_dir, series_file).names
    digest = recipe.series_digest(patches_dir, names)
    assert digest != recipe.series_digest(patches_dir, names[:1])
    assert digest != recipe.series_digest(patches_dir, names[::-1])
    # A reworded message keeps the build (the wheel is built from the diffs); a changed diff does not
    first = patches_dir / names[0]
    text = first.read_text(encoding="utf-8")
    first.write_text(text.replace("\n\n", "\n\nMeasured: 1 s.\n\n", 1), encoding="utf-8")
    assert first.read_text(encoding="utf-8") != text
    assert recipe.series_digest(patches_dir, names) == digest
    first.write_text(text.replace("\n+", "\n+# changed\n+", 1), encoding="utf-8")
    assert recipe.series_digest(patches_dir, names) != digest
    first.write_text(text, encoding="utf-8")
    fork_toml = tmp_path / "fork.toml"
    shutil.copyfile(recipe.RECIPE, fork_toml)
    rec = recipe.load(fork_toml)
    recipe.write_build(rec, rec.build_number + 1, digest)
    again = recipe.load(fork_toml)
    assert (again.build_number, again.series_sha256) == (rec.build_number + 1, digest)
    assert again.sha256 == rec.sha256 and "# The fork's recipe" in fork_toml.read_text()


def test_real_series_applies_and_round_trips(real_recipe):
    """The project's own series against the real pinned archive (what `check` does)."""
    listed = series_of(real_recipe.patches_dir, real_recipe.series_file)
    assert listed.names, "the series must not be empty"
    series.round_trip(sdist.pristine_tree(real_recipe), listed, real_recipe.series_file, "real", real_recipe.author)
    assert recipe.series_digest(real_recipe.patches_dir, listed.names) == real_recipe.series_sha256
    for patch in listed.paths:
        assert "Forwarded" in series.headers(patch), patch.name


def test_trailers_are_read_by_git_not_by_a_regex(tmp_path, tiny_series):
    """A prose line that starts like a trailer is body text; only the last paragraph's trailers count."""
    pristine, patches_dir, series_file = tiny_series
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    (repo / "tiny" / "other.py").write_text("x = 1\n")
    body = "Prose first.\n\nForwarded: no, says this sentence, mid-body.\nTests: not a trailer either.\n\nMore prose."
    series.git(repo, "commit", "--quiet", "-am", f"Prose that looks like trailers\n\n{body}")
    with pytest.raises(ForkError, match="lacks the DEP-3 trailer"):
        series.export(repo, series_file, patches_dir, TEST_AUTHOR)
    series.git(repo, "commit", "--quiet", "--amend", "-m", f"Prose that looks like trailers\n\n{body}\n\nForwarded: no")
    series.export(repo, series_file, patches_dir, TEST_AUTHOR)
    parsed = series.message(series_of(patches_dir, series_file).paths[-1])
    assert parsed.subject == "Prose that looks like trailers"
    assert parsed.trailers == {"Forwarded": "no"}
    assert parsed.body.startswith("Prose first.") and parsed.body.endswith("More prose.")


@pytest.mark.parametrize("value", ["not-yet", "yes", "no, later"])
def test_forwarded_must_be_a_dep3_value(tmp_path, tiny_series, value):
    pristine, patches_dir, series_file = tiny_series
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    (repo / "tiny" / "other.py").write_text("x = 1\n")
    series.git(repo, "commit", "--quiet", "-am", f"Odd forward\n\nBody.\n\nForwarded: {value}")
    with pytest.raises(ForkError, match="is not a DEP-3 value"):
        series.export(repo, series_file, patches_dir, TEST_AUTHOR)


def test_export_sets_the_recipe_author(tmp_path, tiny_series):
    """Every exported patch is from the author given (fork.toml's pr.author), whoever made the commits."""
    pristine, patches_dir, series_file = tiny_series
    for patch in series_of(patches_dir, series_file).paths:
        assert f"\nFrom: {TEST_AUTHOR}\n" in patch.read_text()
    repo = series.checkout(pristine, series_of(patches_dir, series_file), tmp_path / "co", "tiny 1.0")
    assert series.git(repo, "log", "-1", "--format=%an <%ae>").stdout.strip() == TEST_AUTHOR
    series.export(repo, series_file, patches_dir, "Someone Else <else@example.invalid>")
    for patch in series_of(patches_dir, series_file).paths:
        assert "\nFrom: Someone Else <else@example.invalid>\n" in patch.read_text()
    with pytest.raises(ForkError, match="not in exported form"):
        series.round_trip(pristine, series_of(patches_dir, series_file), series_file, "tiny 1.0", TEST_AUTHOR)
    long_author = "A Person With A Rather Long Name For A Header <a.person.with.a.long.address@example.invalid>"
    series.export(repo, series_file, patches_dir, long_author)  # git folds this From: header; the export does not
    first = series_of(patches_dir, series_file).paths[0].read_text()
    assert f"\nFrom: {long_author}\nSubject: " in first
    series.round_trip(pristine, series_of(patches_dir, series_file), series_file, "tiny 1.0", long_author)
