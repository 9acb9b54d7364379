"""In-process transport: the SDK calls the service layer directly on CLOCHE_HOME's store."""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from cloche import audit
from cloche.audit import AuditEntry
from cloche.auth import tokens
from cloche.auth.roles import Principal
from cloche.auth.tokens import NewToken, TokenInfo
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.export.entities import ExportResult
from cloche.logs import service as logs
from cloche.logs.service import LogStats, ShadowAgreement
from cloche.registry import service as registry
from cloche.registry import upload
from cloche.registry.entities import DeleteResult, ModelDetail, ModelSummary, ModelVersion
from cloche.registry.inspection import inspect_here
from cloche.runtimes.base import LoadedModel
from cloche.store.artifacts import Progress
from cloche.store.store import Store


def local_actor() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


class LocalTransport:
    """Holds the Store; opened on first use so building a Client costs nothing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.actor = local_actor()
        # Whoever can open CLOCHE_HOME owns it (it is owner-only): the local user is its admin.
        self.principal = Principal(actor=self.actor, role="admin")

    @cached_property
    def store(self) -> Store:
        return Store.open(self.settings)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


class LocalModels:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def upload(
        self,
        path: str | Path,
        *,
        name: str,
        framework: str | None = None,
        sample: str | Path | None = None,
        baseline: str | Path | None = None,
        aliases: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        progress: Progress | None = None,
    ) -> ModelVersion:
        return upload.upload_model(
            self._t.store,
            source=Path(path),
            name=name,
            framework=framework,
            sample=_path(sample),
            baseline=_path(baseline),
            aliases=aliases,
            labels=labels,
            metrics=metrics,
            description=description,
            principal=self._t.principal,
            # The local owner runs their own model in their own process, as they would with
            # its framework's loader; no server secrets live here.
            inspector=inspect_here,
            progress=progress,
        )

    def list(
        self, *, labels: Mapping[str, str] | None = None, search: str | None = None
    ) -> list[ModelSummary]:
        return registry.list_models(self._t.store, labels=labels, search=search)

    def get(self, name: str) -> ModelDetail:
        return registry.get_model(self._t.store, name)

    def show(self, ref: str) -> ModelVersion:
        return registry.get_version(self._t.store, ref)

    def alias(self, ref: str, alias: str) -> ModelVersion:
        return registry.set_alias(self._t.store, ref=ref, alias=alias, actor=self._t.actor)

    def remove_alias(self, name: str, alias: str) -> None:
        registry.remove_alias(self._t.store, name=name, alias=alias, actor=self._t.actor)

    def attach_baseline(self, ref: str, path: str | Path) -> dict[str, Any]:
        return registry.attach_baseline(
            self._t.store, ref=ref, path=Path(path), actor=self._t.actor
        )

    def delete(self, ref: str) -> DeleteResult:
        return registry.delete(self._t.store, ref=ref, actor=self._t.actor)

    def load(self, ref: str) -> LoadedModel:
        return registry.load_model(self._t.store, ref)

    def export(
        self,
        ref: str,
        out: str | Path,
        *,
        format: str = "bundle",
        native: bool = False,
        with_wheels: bool = False,
        slim: bool = True,
        platform: str | None = None,
        overwrite: bool = False,
    ) -> ExportResult:
        # Imported here: the converters and pip are only needed by an export.
        from cloche.export.service import export_model

        return export_model(
            self._t.store,
            ref,
            Path(out),
            fmt=format,
            native=native,
            with_wheels=with_wheels,
            slim=slim,
            platform=platform,
            overwrite=overwrite,
        )


class LocalEndpoints:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def create(self, name: str, *, description: str = "", log_sample_rate: float = 1.0) -> Endpoint:
        return endpoints.create_endpoint(
            self._t.store,
            name=name,
            description=description,
            log_sample_rate=log_sample_rate,
            actor=self._t.actor,
        )

    def update(
        self, name: str, *, description: str | None = None, log_sample_rate: float | None = None
    ) -> Endpoint:
        return endpoints.update_endpoint(
            self._t.store,
            name=name,
            description=description,
            log_sample_rate=log_sample_rate,
            actor=self._t.actor,
        )

    def list(self) -> list[Endpoint]:
        return endpoints.list_endpoints(self._t.store)

    def get(self, name: str) -> Endpoint:
        return endpoints.get_endpoint(self._t.store, name)

    def delete(self, name: str) -> None:
        endpoints.delete_endpoint(self._t.store, name=name, actor=self._t.actor)

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
    ) -> Endpoint:
        return endpoints.deploy(
            self._t.store,
            endpoint=name,
            ref=ref,
            traffic=traffic,
            shadow=shadow,
            max_batch_size=max_batch_size,
            timeout_ms=timeout_ms,
            actor=self._t.actor,
        )

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        return endpoints.set_traffic(self._t.store, endpoint=name, split=split, actor=self._t.actor)

    def undeploy(self, name: str, ref: str) -> Endpoint:
        return endpoints.undeploy(self._t.store, endpoint=name, ref=ref, actor=self._t.actor)


class LocalLogs:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def read(
        self,
        endpoint: str,
        *,
        since: str | datetime | None = "1h",
        until: str | datetime | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        return logs.read_endpoint_log(
            self._t.store, endpoint=endpoint, since=since, until=until, limit=limit
        )

    def stats(self) -> LogStats:
        return logs.endpoint_log_stats(self._t.store)

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        return logs.shadow_agreement(self._t.store, endpoint=endpoint, since=since)


class LocalTokens:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def create(self, *, role: str, name: str = "") -> NewToken:
        return tokens.create_token(self._t.store, role=role, name=name, actor=self._t.actor)

    def list(self) -> list[TokenInfo]:
        return tokens.list_tokens(self._t.store)

    def revoke(self, token_id: str) -> TokenInfo:
        return tokens.revoke_token(self._t.store, token_id=token_id, actor=self._t.actor)


class LocalAudit:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        return audit.list_audit(
            self._t.store, resource_type=resource_type, resource=resource, limit=limit
        )
