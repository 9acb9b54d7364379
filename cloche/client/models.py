"""Models: register, list, alias, baseline, delete, load and export model versions.

The interface (`ModelsAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from cloche import errors
from cloche.client import _files
from cloche.client._http import API, HttpTransport, path_segment, version_path
from cloche.client._local import LocalTransport, as_path
from cloche.client._paging import collect, http_page
from cloche.config import Settings
from cloche.export.entities import ExportResult
from cloche.registry import listing, upload
from cloche.registry import service as registry
from cloche.registry.entities import (
    DeleteResult,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    ResidentModel,
)
from cloche.registry.inspection import inspect_here
from cloche.registry.refs import ModelRef, check_alias, check_name, parse_ref
from cloche.runtimes.base import LoadedModel
from cloche.store.artifacts import Progress, list_source_files
from cloche.store.paging import Order


class ModelsAPI(Protocol):
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
        """Register a model file or folder as the next version of ``name``."""
        ...

    def list(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        search: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelSummary]:
        """Registered models, optionally those with versions carrying all ``labels``; ``q``
        (or ``search``) searches name and description; ``sort`` is name (default), created,
        updated or latest_version; ``limit`` None means all."""
        ...

    def get(self, name: str) -> ModelDetail:
        """A model with all its versions and aliases."""
        ...

    def show(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``name`` (newest), ``name:3`` or ``name@prod``."""
        ...

    def alias(self, ref: str, alias: str) -> ModelVersion:
        """Point ``alias`` at the version ``ref`` names."""
        ...

    def remove_alias(self, name: str, alias: str) -> None:
        """Remove an alias from a model."""
        ...

    def attach_baseline(self, ref: str, path: str | Path) -> dict[str, Any]:
        """Attach (or replace) the baseline dataset of a version."""
        ...

    def delete(self, ref: str) -> DeleteResult:
        """Delete a model (bare name) or one version (``name:3``, ``name@alias``)."""
        ...

    def loaded(self, *, all: bool = False) -> builtins.list[ResidentModel]:
        """Models the serving workers of the servers on this store hold in memory, one per
        model per worker; with ``all``, also those loaded before and evicted since."""
        ...

    def load(self, ref: str) -> LoadedModel:
        """Load a version into this process (hashes verified) and return its runtime model."""
        ...

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
        """Write the version as an edge bundle (or, with ``format="onnx"``, one ONNX file) to
        the local folder ``out``: converted to ONNX and parity checked unless ``native``.
        With wheels, ``slim=False`` keeps every wheel as the index served it (by default a
        wheel holding a library its runtime never loads, onnxruntime's, is rewritten without it
        and versioned ``+slim``).

        In-process only: it reads the registry's files and baseline where the store is. Over
        HTTP it raises InvalidInput; run it on the server's machine, without a URL.
        """
        ...


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
            sample=as_path(sample),
            baseline=as_path(baseline),
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
        self,
        *,
        labels: Mapping[str, str] | None = None,
        search: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelSummary]:
        return collect(
            lambda page: listing.page_models(self._t.store, page, labels=labels),
            q=q or search,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

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

    def loaded(self, *, all: bool = False) -> builtins.list[ResidentModel]:
        return registry.loaded_models(self._t.store, resident_only=not all)

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


class HttpModels:
    def __init__(self, transport: HttpTransport) -> None:
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
        source = Path(path)
        files = list_source_files(source)
        form: dict[str, Any] = {
            "name": name,
            "description": description,
            "aliases": list(aliases),
            "folder": "true" if source.is_dir() else "false",
            "labels": json.dumps(dict(labels or {})),
            "metrics": json.dumps(dict(metrics or {})),
        }
        if framework:
            form["framework"] = framework
        report = _files.meter(sum(p.stat().st_size for p in files.values()), progress)
        with ExitStack() as stack:
            parts: list[tuple[str, Any]] = [
                ("files", (rel, stack.enter_context(_files.MeteredFile(p, report))))
                for rel, p in files.items()
            ]
            for field, extra in (("sample", sample), ("baseline", baseline)):
                if extra is not None:
                    dataset = stack.enter_context(_files.open_dataset(extra))
                    parts.append((field, (Path(extra).name, dataset)))
            response = self._t.request("POST", f"{API}/models", data=form, files=parts)
        return ModelVersion.model_validate(response.json())

    def list(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        search: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelSummary]:
        filters = [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        return collect(
            lambda page: http_page(self._t, f"{API}/models", page, ModelSummary, filters),
            q=q or search,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, name: str) -> ModelDetail:
        model = parse_ref(name).name
        response = self._t.request("GET", f"{API}/models/{path_segment(model)}")
        return ModelDetail.model_validate(response.json())

    def show(self, ref: str) -> ModelVersion:
        response = self._t.request("GET", version_path(parse_ref(ref)))
        return ModelVersion.model_validate(response.json())

    def loaded(self, *, all: bool = False) -> builtins.list[ResidentModel]:
        params = {"all": "true"} if all else None
        response = self._t.request("GET", f"{API}/models/loaded", params=params)
        return [ResidentModel.model_validate(row) for row in response.json()]

    def alias(self, ref: str, alias: str) -> ModelVersion:
        check_alias(alias)
        parsed = parse_ref(ref)
        path = f"{API}/models/{path_segment(parsed.name)}/aliases/{path_segment(alias)}"
        response = self._t.request("PUT", path, json={"ref": str(parsed)})
        return ModelVersion.model_validate(response.json())

    def remove_alias(self, name: str, alias: str) -> None:
        path = f"{API}/models/{path_segment(check_name(name))}/aliases/{path_segment(alias)}"
        self._t.request("DELETE", path)

    def attach_baseline(self, ref: str, path: str | Path) -> dict[str, Any]:
        target = version_path(parse_ref(ref)) + "/baseline"
        with _files.open_dataset(path) as fh:
            response = self._t.request("PUT", target, files={"file": (Path(path).name, fh)})
        result: dict[str, Any] = response.json()
        return result

    def delete(self, ref: str) -> DeleteResult:
        parsed = parse_ref(ref)
        whole = parsed.version is None and parsed.alias is None
        path = f"{API}/models/{path_segment(parsed.name)}" if whole else version_path(parsed)
        return DeleteResult.model_validate(self._t.request("DELETE", path).json())

    def load(self, ref: str) -> LoadedModel:
        from cloche.runtimes import get_runtime

        version = self.show(ref)
        files_path = version_path(ModelRef(version.name, version.version)) + "/files/"
        folder = _files.fetch_version(
            version,
            cache_root=Settings().home.resolve() / "cache" / "remote",
            open_stream=lambda rel: self._t.stream("GET", files_path + quote(rel)),
        )
        return get_runtime(version.framework).load(folder)

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
        # An export reads the version's files and its baseline (for the parity check), and the
        # API serves no baselines: a bundle made here would be checked on weaker, generated rows.
        parse_ref(ref)
        raise errors.InvalidInput(
            f"cloche export does not run through a server ({self._t.url}): it reads the "
            "registry's files and baseline where the store is",
            hint="run it on the server's machine without --url/CLOCHE_URL, with CLOCHE_HOME "
            "(or CLOCHE_DB_URL) naming the server's store",
        )
