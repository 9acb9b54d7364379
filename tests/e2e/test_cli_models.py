"""`cloche models` and `cloche audit` through CliRunner, in-process on a temporary CLOCHE_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloche import __version__
from cloche.auth import tokens
from cloche.config import Settings
from cloche.store.store import Store
from tests.e2e._cli import cloche, ok_json
from tests.integration.conftest import run_server


@pytest.fixture
def churn(sklearn_model_file: Path, sample_parquet: Path) -> Path:
    """Two versions of `churn` registered, v1 with the prod alias and a baseline."""
    first = cloche(
        "models", "upload", sklearn_model_file, "--name", "churn",
        "--baseline", sample_parquet, "--alias", "prod", "--label", "team=growth",
        "--metric", "auc=0.91", "--description", "first try",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    second = cloche("models", "upload", sklearn_model_file, "--name", "churn", "--json")
    assert second.exit_code == 0, second.output
    return sklearn_model_file


def test_version_option_prints_version() -> None:
    result = cloche("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_upload_prints_the_new_version_and_its_signature(
    sklearn_model_file: Path, sample_parquet: Path
) -> None:
    result = cloche(
        "models", "upload", sklearn_model_file, "--name", "churn", "--sample", sample_parquet
    )
    assert result.exit_code == 0, result.output
    assert "registered churn:1 (sklearn)" in result.stdout
    for column in ("tenure", "spend", "visits", "age", "classification", "churn.joblib"):
        assert column in result.stdout


def test_upload_json_is_only_the_version(sklearn_model_file: Path, sample_parquet: Path) -> None:
    version = ok_json(
        "models", "upload", sklearn_model_file, "--name", "churn", "--baseline", sample_parquet,
        "-a", "prod", "-a", "staging", "-l", "team=growth", "-m", "auc=0.91",
    )  # fmt: skip
    assert version["name"] == "churn" and version["version"] == 1
    assert version["aliases"] == ["prod", "staging"]
    assert version["labels"] == {"team": "growth"}
    assert version["metrics"] == {"auc": 0.91}
    assert version["baseline"]["rows"] == 200
    assert [f["name"] for f in version["signature"]["inputs"]] == [
        "tenure", "spend", "visits", "age",
    ]  # fmt: skip


def test_list_shows_a_table_and_filters(churn: Path) -> None:
    ok = cloche("models", "upload", churn, "--name", "fraud", "--label", "team=risk")
    assert ok.exit_code == 0, ok.output
    table = cloche("models", "list")
    assert table.exit_code == 0
    assert "churn" in table.stdout and "fraud" in table.stdout and "prod→1" in table.stdout
    assert [m["name"] for m in ok_json("models", "list")] == ["churn", "fraud"]
    assert [m["name"] for m in ok_json("models", "list", "--label", "team=risk")] == ["fraud"]
    assert [m["name"] for m in ok_json("models", "list", "--search", "chu")] == ["churn"]


def test_list_when_empty_says_how_to_upload() -> None:
    result = cloche("models", "list")
    assert result.exit_code == 0
    assert "cloche models upload" in result.stdout
    assert ok_json("models", "list") == []


def test_show_bare_name_lists_versions_and_latest_signature(churn: Path) -> None:
    result = cloche("models", "show", "churn")
    assert result.exit_code == 0, result.output
    assert "Versions" in result.stdout and "Signature of churn:2 (latest)" in result.stdout
    detail = ok_json("models", "show", "churn")
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["aliases"] == {"prod": 1}


def test_show_alias_prints_that_version_with_files_metrics_and_baseline(churn: Path) -> None:
    result = cloche("models", "show", "churn@prod")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "churn:1" in out and "auc=0.91" in out and "team=growth" in out
    assert "train.parquet" in out and "churn.joblib" in out and "first try" in out
    assert ok_json("models", "show", "churn:2")["version"] == 2


def test_alias_moves_and_unalias_removes(churn: Path) -> None:
    moved = cloche("models", "alias", "churn:2", "prod")
    assert moved.exit_code == 0, moved.output
    assert "churn@prod → churn:2" in moved.stdout
    assert ok_json("models", "show", "churn@prod")["version"] == 2
    assert ok_json("models", "alias", "churn:1", "staging")["aliases"] == ["staging"]
    assert ok_json("models", "unalias", "churn", "prod")["removed"] is True
    assert ok_json("models", "show", "churn")["aliases"] == {"staging": 1}


def test_baseline_attaches_a_dataset(churn: Path, sample_parquet: Path) -> None:
    result = cloche("models", "baseline", "churn:2", sample_parquet)
    assert result.exit_code == 0, result.output
    assert "200 rows" in result.stdout
    assert ok_json("models", "baseline", "churn:2", sample_parquet)["file"] == "train.parquet"
    assert ok_json("models", "show", "churn:2")["baseline"]["rows"] == 200


def test_delete_version_asks_first_and_keeps_it_when_declined(churn: Path) -> None:
    declined = cloche("models", "delete", "churn:1", input="n\n")
    assert declined.exit_code == 1
    assert "Delete version churn:1 (aliases: prod)?" in declined.stderr
    assert "Nothing deleted" in declined.stderr
    assert [v["version"] for v in ok_json("models", "show", "churn")["versions"]] == [1, 2]
    accepted = cloche("models", "delete", "churn:1", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert [v["version"] for v in ok_json("models", "show", "churn")["versions"]] == [2]


def test_delete_bare_name_names_every_version_and_json_needs_no_prompt(churn: Path) -> None:
    declined = cloche("models", "delete", "churn", input="n\n")
    assert "Delete model 'churn' and all 2 of its versions?" in declined.stderr
    result = ok_json("models", "delete", "churn")
    assert result == {"name": "churn", "deleted_versions": [1, 2], "model_deleted": True}
    assert cloche("models", "show", "churn").exit_code == 4


def test_delete_with_yes_does_not_ask(churn: Path) -> None:
    result = cloche("models", "delete", "churn:2", "--yes")
    assert result.exit_code == 0, result.output
    assert "deleted churn:2" in result.stdout


def test_audit_lists_changes_newest_first(churn: Path) -> None:
    assert cloche("models", "alias", "churn:2", "prod").exit_code == 0
    entries = ok_json("audit", "--resource-type", "model")
    assert entries[0]["action"] == "alias.move" and entries[0]["resource"] == "churn@prod"
    assert entries[0]["before"] == {"version": 1} and entries[0]["after"] == {"version": 2}
    assert len(ok_json("audit", "--limit", "1")) == 1
    assert ok_json("audit", "--resource", "churn:1")[0]["action"] == "model.upload"
    table = cloche("audit")
    assert table.exit_code == 0 and "alias.move" in table.stdout


@pytest.mark.parametrize(
    ("args", "exit_code", "code"),
    [
        (["models", "show", "nope"], 4, "model_not_found"),
        (["models", "show", "churn:9"], 4, "version_not_found"),
        (["models", "alias", "churn:9", "prod"], 4, "version_not_found"),
        (["models", "alias", "churn:1", "Not An Alias"], 2, "invalid_name"),
        (["models", "unalias", "churn", "nope"], 4, "alias_not_found"),
        (["models", "delete", "nope", "--yes"], 4, "model_not_found"),
        (["models", "show", "bad name!"], 2, "invalid_name"),
        (["models", "list", "--label", "team"], 2, "invalid_input"),
    ],
)
def test_errors_map_to_exit_codes(churn: Path, args: list[str], exit_code: int, code: str) -> None:
    result = cloche(*args)
    assert result.exit_code == exit_code, result.output
    assert result.stderr.startswith("error: ") and result.stdout == ""
    as_json = cloche(*args, "--json")
    assert as_json.exit_code == exit_code
    assert json.loads(as_json.stderr)["error"]["code"] == code
    assert as_json.stdout == ""


def test_upload_with_invalid_name_exits_2(sklearn_model_file: Path) -> None:
    result = cloche("models", "upload", sklearn_model_file, "--name", "no spaces please")
    assert result.exit_code == 2
    assert "invalid model name" in result.stderr and "hint:" in result.stderr


def test_upload_with_unknown_framework_exits_2(sklearn_model_file: Path) -> None:
    result = cloche("models", "upload", sklearn_model_file, "--name", "m", "--framework", "caffe")
    assert result.exit_code == 2
    assert "unknown framework 'caffe'" in result.stderr


def test_upload_of_a_file_that_is_not_a_model_exits_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    result = cloche("models", "upload", notes, "--name", "notes")
    assert result.exit_code == 2
    assert "error:" in result.stderr
    as_json = cloche("models", "upload", notes, "--name", "notes", "--json")
    assert json.loads(as_json.stderr)["error"]["code"] == "not_a_model"
    assert ok_json("models", "list") == []


def test_upload_with_a_bad_metric_exits_2(sklearn_model_file: Path) -> None:
    result = cloche("models", "upload", sklearn_model_file, "--name", "m", "--metric", "auc=hi")
    assert result.exit_code == 2
    assert "metric 'auc' must be a number" in result.stderr


def test_upload_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = cloche("models", "upload", tmp_path / "nope.joblib", "--name", "m")
    assert result.exit_code == 2


def test_unexpected_errors_exit_1_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, churn: Path
) -> None:
    from cloche.cli import models as models_cli

    def broken(ctx: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(models_cli, "get_client", broken)
    result = cloche("models", "list")
    assert result.exit_code == 1
    assert "unexpected error: RuntimeError: disk on fire" in result.stderr
    assert "Traceback" not in result.output
    monkeypatch.setenv("CLOCHE_DEBUG", "1")
    debug = cloche("models", "list")
    assert isinstance(debug.exception, RuntimeError)


def test_uploading_a_joblib_model_to_a_server_needs_a_publisher_token(
    settings: Settings, sklearn_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_server(settings) as server:
        store = Store.open(settings)
        try:
            deployer, publisher = (
                tokens.create_token(store, role=role).token for role in ("deployer", "publisher")
            )
        finally:
            store.close()
        monkeypatch.setenv("CLOCHE_URL", server.url)
        monkeypatch.setenv("CLOCHE_TOKEN", deployer)
        refused = cloche("models", "upload", sklearn_model_file, "--name", "churn")
        assert refused.exit_code == 3, refused.output
        assert "uploading a joblib model runs its code when loaded" in refused.stderr
        assert "publisher" in refused.stderr

        monkeypatch.setenv("CLOCHE_TOKEN", publisher)
        assert ok_json("models", "upload", sklearn_model_file, "--name", "churn")["version"] == 1
