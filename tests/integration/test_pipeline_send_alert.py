"""``send_alert`` in a pipeline on a real home: it reaches a real webhook and records where
the message went; a message that reaches no channel fails the step, unless told not to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche.config import Settings
from cloche.pipelines import pipeline
from cloche.pipelines.components import send_alert
from cloche.pipelines.runner import run_pipeline
from cloche.store.store import Store
from tests.integration._receivers import Webhook, webhook_receiver

REFUSED = "webhook:http://10.255.255.1/hook"  # private: the default egress policy refuses it


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    # Steps build their client from the environment, as in `cloche pipelines run`.
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def settings(tmp_path: Path, hook: Webhook) -> Settings:
    return Settings(home=tmp_path / "home", egress={"allow": ["127.0.0.1"]})


@pipeline(name="tell")
def tell(channels: list, fail_if_undelivered: bool = True) -> None:  # type: ignore[type-arg]
    send_alert(
        channels=channels,
        title="scores are late",
        text="the weekly job has not finished",
        fail_if_undelivered=fail_if_undelivered,
    )


def test_the_alert_reaches_the_webhook_and_the_step_says_where(store: Store, hook: Webhook) -> None:
    run = run_pipeline(store, tell, {"channels": [f"webhook:{hook.url}", REFUSED]}, actor="t")
    assert run.state == "succeeded", run.steps[-1].error
    outputs = run.latest()[("send_alert", -1)].outputs
    port = hook.url.split(":")[2].split("/")[0]
    assert outputs["delivered"] == [f"webhook:http://127.0.0.1:{port}/..."]  # path masked
    [failed] = outputs["failed"]
    assert failed.startswith("webhook:http://10.255.255.1/...: ") and "not a public" in failed
    [body] = hook.bodies
    assert body["alert"]["title"] == "scores are late"


def test_an_alert_that_reaches_no_channel_fails_the_step_unless_told_not_to(
    store: Store, hook: Webhook
) -> None:
    run = run_pipeline(store, tell, {"channels": [REFUSED]}, actor="t")
    assert run.state == "failed"
    assert "the alert reached no channel" in run.latest()[("send_alert", -1)].error
    quiet = run_pipeline(
        store, tell, {"channels": [REFUSED], "fail_if_undelivered": False}, actor="t"
    )
    assert quiet.state == "succeeded"
    assert hook.bodies == []
