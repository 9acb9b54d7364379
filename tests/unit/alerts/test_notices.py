"""Notices: a message sent to alert channels by hand (a pipeline's send_alert), through the
same channel parsing and delivery as a monitor's digest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloche.alerts.notices import Notice, send_notice
from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.store.store import Store


def test_a_notice_reads_as_chat_text_an_email_subject_and_json() -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    notice = Notice(title="rollout stopped", body="accuracy 0.7 < 0.8", sender="ci", sent_at=at)
    assert notice.subject == "[cloche] rollout stopped"
    assert notice.text.splitlines() == [
        "cloche: rollout stopped", "", "accuracy 0.7 < 0.8", "",
        "Sent by ci at 2025-03-01T12:00:00+00:00.",
    ]  # fmt: skip
    assert notice.to_dict()["title"] == "rollout stopped"
    assert notice.to_dict()["kind"] == "notice"


def test_the_log_channel_is_delivered(store: Store, settings: Settings) -> None:
    [delivery] = send_notice(store, settings, ["log"], "scored", "3000 rows", actor="ci")
    assert delivery.ok and delivery.channel == "log" and delivery.attempts == 1


def test_a_bad_channel_is_refused_naming_the_forms_channels_take(
    store: Store, settings: Settings
) -> None:
    with pytest.raises(InvalidInput, match="is not one of: webhook:"):
        send_notice(store, settings, ["log", "pager:ops"], "scored", actor="ci")


@pytest.mark.parametrize(
    ("channels", "title"), [([], "scored"), (["log"], " "), (["log"], "x" * 201)]
)
def test_no_channel_or_a_bad_title_is_refused(
    store: Store, settings: Settings, channels: list[str], title: str
) -> None:
    with pytest.raises(InvalidInput):
        send_notice(store, settings, channels, title, actor="ci")
