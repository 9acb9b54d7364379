"""What `cloche notebook` prepares: the folder seeded with the starter notebooks only when
empty, the kernels' CLOCHE_URL/TOKEN/HOME, and a clear error without the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloche.config import Settings
from cloche.errors import InvalidInput, LocalTokenNotFound, MissingDependency
from cloche.notebook import workspace


def test_an_empty_folder_gets_the_starter_notebooks(tmp_path: Path) -> None:
    copied = workspace.prepare_dir(tmp_path / "notebooks")
    names = sorted(p.name for p in copied)
    assert names == [
        "continuous_rollout.ipynb",
        "monitor_runs.ipynb",
        "pipeline_in_a_notebook.ipynb",
        "weekly_scoring.ipynb",
    ]
    assert sorted(p.name for p in (tmp_path / "notebooks").iterdir()) == names


def test_a_folder_with_files_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "mine.ipynb").write_text("{}")
    assert workspace.prepare_dir(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["mine.ipynb"]


def test_a_file_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidInput, match="is a file"):
        workspace.prepare_dir(tmp_path / "f")


def test_the_kernels_get_the_url_the_local_token_and_the_home(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / "local-token").write_text("cl_secret\n")
    env = workspace.kernel_env(settings, "http://127.0.0.1:8080", None)
    assert env == {
        "CLOCHE_URL": "http://127.0.0.1:8080",
        "CLOCHE_TOKEN": "cl_secret",
        "CLOCHE_HOME": str(settings.home.resolve()),
    }
    assert workspace.kernel_env(settings, "http://127.0.0.1:8080", "cl_given")["CLOCHE_TOKEN"] == (
        "cl_given"
    )


def test_no_local_token_says_to_start_the_server(settings: Settings) -> None:
    with pytest.raises(LocalTokenNotFound) as caught:
        workspace.kernel_env(settings, "http://localhost:8080", None)
    assert "cloche up" in (caught.value.hint or "")


def test_the_local_token_never_goes_to_another_host(settings: Settings) -> None:
    with pytest.raises(InvalidInput) as caught:
        workspace.kernel_env(settings, "https://cloche.example.com", None)
    assert "--token" in (caught.value.hint or "")


def test_the_server_url_is_reached_on_loopback_and_https_with_tls(tmp_path: Path) -> None:
    assert workspace.server_url(Settings(home=tmp_path)) == "http://127.0.0.1:8080"
    everywhere = Settings(home=tmp_path, server={"host": "0.0.0.0", "port": 9000})
    assert workspace.server_url(everywhere) == "http://127.0.0.1:9000"
    tls = Settings(home=tmp_path, server={"tls_cert_file": "c.pem", "tls_key_file": "k.pem"})
    assert workspace.server_url(tls).startswith("https://")


def test_jupyterlab_listens_on_loopback_on_the_port_given(tmp_path: Path) -> None:
    command = workspace.jupyter_command(tmp_path, port=8899, browser=False)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in command and "--ServerApp.port=8899" in command
    assert "--ServerApp.port_retries=0" in command and "--no-browser" in command


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jupyterlab", None)  # as if it were not installed
    with pytest.raises(MissingDependency) as caught:
        workspace.require_extra()
    assert "jupyterlab" in caught.value.message
    assert caught.value.hint == "pip install 'cloche[notebook]'"
