"""A payload log shared by replicas on one store (``logs.shared``): the check ``cloche up``
makes before serving, this server's replica id, and who prunes the shared log.

The location's form is checked with the settings (config.py: an absolute folder, or an
object-store prefix as batch/places.py accepts them). At start, its S3-compatible endpoint
goes through the egress policy like any address the server connects to (a loopback or private
one must be listed in ``CLOCHE_EGRESS__ALLOW``), and the location is written once, so a missing
bucket, wrong credentials or an unreachable service stop the start with a message, rather than
every compaction failing quietly later.

Retention of the shared log runs in one replica at a time: the worker holding the
``payload-log-retention`` lease (the scheduler's lease table and pattern, under its own name)
asks its compaction child for it.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from cloche.config import Settings
from cloche.errors import InvalidInput, Unavailable
from cloche.logs.location import LogLocation
from cloche.store.layout import SharedLog, default_replica_id
from cloche.store.store import Store
from cloche.store.tables import SchedulerLeaseRow, utcnow

LEASE_NAME = "payload-log-retention"
# Taken or renewed when retention is due (hourly, server.RETAIN_EVERY_S): long enough that its
# holder keeps it from one pass to the next; a holder that died is replaced within it.
LEASE_S = 3 * 3600.0
# The start-up probe must fail fast: botocore's defaults retry a dead endpoint for minutes.
_PROBE_OPTIONS = {"config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 1}}}
_HINT = "set CLOCHE_LOGS__SHARED to an absolute folder or s3://bucket/prefix, or unset it"


def replica_id(settings: Settings) -> str:
    """This server's folder name in the shared log (``logs.replica``, or host and home)."""
    return settings.logs.replica or default_replica_id(settings.home)


def shared_log(settings: Settings) -> SharedLog | None:
    if not settings.logs.shared:
        return None
    return SharedLog(settings.logs.shared, settings.logs.endpoint_url)


def check_shared_log(settings: Settings) -> None:
    """Refuse to start with a shared log this server cannot write (see module docstring)."""
    shared = shared_log(settings)
    if shared is None:
        return
    if shared.endpoint_url:
        settings.egress.policy().check(shared.endpoint_url, what="shared log's endpoint_url")
    replica = replica_id(settings)
    s3 = shared.url.lower().startswith("s3://")
    try:
        location = LogLocation.shared(shared, replica=replica, options=_PROBE_OPTIONS if s3 else {})
        if s3:
            _check_bucket(location, shared)
        record = {"replica": replica, "host": socket.gethostname(), "started": _now()}
        location.put(f"{location.root}/_replicas/{replica}.json", json.dumps(record).encode())
    except (InvalidInput, Unavailable):
        raise
    except PermissionError as exc:
        raise InvalidInput(
            f"cannot write the shared payload log {shared.url}: {exc}",
            hint="give this server write access there (AWS_* credentials for a bucket)",
        ) from None
    except ImportError as exc:
        raise InvalidInput(
            f"the shared payload log {shared.url} needs a package this install lacks: {exc}",
            hint="pip install 'cloche[s3]' for s3:// URLs",
        ) from None
    except Exception as exc:  # connection refused, DNS, timeouts: botocore's many classes
        raise Unavailable(
            f"cannot reach the shared payload log {shared.url}"
            + (f" at {shared.endpoint_url}" if shared.endpoint_url else "")
            + f": {exc}",
            hint="check that the storage service runs and CLOCHE_LOGS__ENDPOINT_URL, or " + _HINT,
        ) from None


def _check_bucket(location: LogLocation, shared: SharedLog) -> None:
    bucket = shared.url.split("://", 1)[1].split("/", 1)[0]
    try:
        location.fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise InvalidInput(
            f"the bucket {bucket} of the shared payload log {shared.url} does not exist"
            + (f" at {shared.endpoint_url}" if shared.endpoint_url else ""),
            hint=f"create the bucket {bucket} (cloche does not create it), or " + _HINT,
        ) from None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def compaction_args(settings: Settings, store: Store, *, retention_due: bool) -> list[str]:
    """The compaction child's arguments for the shared log (none without one); with
    ``--shared-retention`` when retention is due and this worker holds, or now takes, the
    retention lease. Not at every compaction: pruning lists the whole shared log."""
    shared = shared_log(settings)
    if shared is None:
        return []
    args = [f"--shared={shared.url}", f"--replica={replica_id(settings)}"]
    if shared.endpoint_url:
        args.append(f"--endpoint-url={shared.endpoint_url}")
    if retention_due and hold_retention_lease(store, f"{socket.gethostname()}:{os.getpid()}"):
        args.append("--shared-retention")
    return args


def hold_retention_lease(store: Store, holder: str, *, seconds: float = LEASE_S) -> bool:
    """Take or renew the shared log's retention lease; True when ``holder`` holds it."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    table = SchedulerLeaseRow
    with store.transaction() as session:
        taken: Any = session.execute(
            update(table)
            .where(table.name == LEASE_NAME)
            .where((table.holder == holder) | (table.expires_at < now))
            .values(holder=holder, expires_at=until)
        )
        if taken.rowcount == 1:
            return True
    try:
        with store.transaction() as session:
            session.execute(insert(table).values(name=LEASE_NAME, holder=holder, expires_at=until))
        return True
    except IntegrityError:  # another worker or replica holds it
        return False
