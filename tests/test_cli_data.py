"""The data commands, called in-process as a user would."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from earmark.cli.main import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output and "datasets" in result.output


def test_info_json_on_fsdd(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "fsdd" / "manifest.csv"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_files"] == 2500 and data["n_ok"] == 2500
    assert data["classes"] == {str(d): 250 for d in range(10)}
    assert len(data["groups"]) == 5 and data["errors"] == [] and data["duplicates"] == []


def test_info_lists_bad_files_and_still_succeeds(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "bad-audio"), "--pattern", "{label}", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["n_files"] == 17 and data["n_ok"] == 12
    assert {Path(e["path"]).name for e in data["errors"]} == {
        "empty.wav", "text_as_wav.wav", "png_as_wav.wav", "float32_nan_inf.wav", "truncated_in_first_frame.flac"
    }
    table = runner.invoke(app, ["info", str(shared / "bad-audio"), "--pattern", "{label}"])
    assert table.exit_code == 0 and "unreadable files" in table.output


def test_info_reports_a_missing_column(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "fsdd" / "manifest.csv"), "--label-column", "digit"])
    assert result.exit_code == 3 and "digit" in result.output


def test_datasets_list_and_download(tmp_path: Path, shared: Path) -> None:
    listing = runner.invoke(app, ["datasets", "list"])
    assert listing.exit_code == 0 and "fsdd" in listing.output and "esc50" in listing.output
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/recordings/0_a_0.wav", (shared / "fsdd" / "recordings" / "0_george_0.wav").read_bytes())
    bad = runner.invoke(app, ["datasets", "download", "fsdd", "--to", str(tmp_path / "d"), "--url", archive.as_uri()])
    assert bad.exit_code == 3 and "expected 2500" in bad.output
