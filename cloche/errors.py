"""The one exception tree of cloche.

Each class carries a stable ``code`` (also the JSON error code), an HTTP status and a CLI exit
code. The edges (REST app, HTTP client transport, CLI) map errors through this table only.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar


class ClocheError(Exception):
    """Base of every error cloche raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(ClocheError):
    code = "invalid_input"
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY
    exit_code = 2


class BadRequest(InvalidInput):
    code = "bad_request"
    http_status = HTTPStatus.BAD_REQUEST


class InvalidPage(BadRequest):
    """A listing asked for with an unknown sort key, a negative offset or a limit below 1."""

    code = "invalid_page"


class InvalidShape(BadRequest):
    """A tensor's shape no tensor can have: too many dimensions, negative or overflowing sizes,
    or one that disagrees with the data or binary size sent with it."""

    code = "invalid_shape"


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidReference(InvalidInput):
    code = "invalid_reference"


class UnknownFramework(InvalidInput):
    code = "unknown_framework"


class NotAModel(InvalidInput):
    code = "not_a_model"


class CorruptArtifact(InvalidInput):
    code = "corrupt_artifact"


class InvalidDataset(InvalidInput):
    code = "invalid_dataset"


class BatchSchemaMismatch(InvalidDataset):
    """A batch input lacks the model's feature columns or holds them in the wrong types."""

    code = "batch_schema_mismatch"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedEncoding(InvalidInput):
    code = "unsupported_encoding"
    http_status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class MissingDependency(InvalidInput):
    """A framework's optional extra is not installed."""

    code = "missing_dependency"


class ConversionFailed(InvalidInput):
    """A model that cannot be converted (to ONNX, for an edge bundle)."""

    code = "conversion_failed"


class ParityFailed(InvalidInput):
    """A converted model whose outputs differ from the original's beyond the tolerance."""

    code = "parity_failed"


class PipelineDefinitionError(InvalidInput):
    """A pipeline or component is ill-formed: a wrong type, an unknown input or output, a cycle.

    Raised when the pipeline is defined (decorated or loaded), naming the step and the field.
    """

    code = "pipeline_definition_error"


class Unauthorized(ClocheError):
    code = "unauthorized"
    http_status = HTTPStatus.UNAUTHORIZED
    exit_code = 3


class Forbidden(ClocheError):
    code = "forbidden"
    http_status = HTTPStatus.FORBIDDEN
    exit_code = 3


class SessionExpired(Unauthorized):
    """A console session that is unknown, signed out, idle too long, past its lifetime, or whose
    token was revoked."""

    code = "session_expired"


class CsrfRejected(Forbidden):
    """A console form or htmx request without the session's CSRF token, or from another origin."""

    code = "csrf_rejected"


class CodeUploadForbidden(Forbidden):
    """An upload whose loading runs code (pickle, joblib, TorchScript, custom Python) by a role
    that may not publish code to the server."""

    code = "code_upload_forbidden"


class DestinationRefused(Forbidden):
    """An outbound connection to an address the server does not reach unless an operator
    allows it (loopback, private, link-local...), or a batch path outside the allowed places."""

    code = "destination_refused"


class NotFound(ClocheError):
    code = "not_found"
    http_status = HTTPStatus.NOT_FOUND
    exit_code = 4


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class LocalTokenNotFound(NotFound):
    """No local admin token in ``$CLOCHE_HOME/local-token``: `cloche up` writes it."""

    code = "local_token_not_found"


class EndpointNotFound(NotFound):
    code = "endpoint_not_found"


class DeploymentNotFound(NotFound):
    code = "deployment_not_found"


class BatchJobNotFound(NotFound):
    code = "batch_job_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class MonitorNotFound(NotFound):
    code = "monitor_not_found"


class AlertNotFound(NotFound):
    code = "alert_not_found"


class MonitorRunNotFound(NotFound):
    code = "monitor_run_not_found"


class FeatureNotFound(NotFound):
    code = "feature_not_found"


class PipelineRunNotFound(NotFound):
    code = "pipeline_run_not_found"


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class StepNotFound(NotFound):
    code = "step_not_found"


class Conflict(ClocheError):
    code = "conflict"
    http_status = HTTPStatus.CONFLICT
    exit_code = 5


class NotWaitingForApproval(Conflict):
    """A decision for a pipeline step that is not an approval waiting for one."""

    code = "not_waiting_for_approval"


class RunStateConflict(Conflict):
    """A pipeline run asked to do what its state forbids (cancel a finished one, retry one
    that succeeded)."""

    code = "run_state_conflict"


class ModelInUse(Conflict):
    code = "model_in_use"


class BatchOutputExists(Conflict):
    """A batch job's output folder already holds files it may not replace."""

    code = "batch_output_exists"


class BatchResumeMismatch(Conflict):
    """A batch job cannot resume: its input or model changed since it was planned."""

    code = "batch_resume_mismatch"


class JobStateConflict(Conflict):
    """A batch job asked to do what its state forbids (resume a finished one, cancel twice)."""

    code = "job_state_conflict"


class ExportOutputExists(Conflict):
    """An export's output folder already holds files it may not replace."""

    code = "export_output_exists"


class BackupExists(Conflict):
    """A backup archive would replace a file that is already there."""

    code = "backup_exists"


class RestoreTargetNotEmpty(Conflict):
    """A restore into a store that already holds data (without ``--force``)."""

    code = "restore_target_not_empty"


class BackupInconsistent(Conflict):
    """The store changed under a backup in a way the archive cannot hold (a model deleted
    while its files were being copied); running the backup again succeeds."""

    code = "backup_inconsistent"


class HashMismatch(ClocheError):
    """A stored artifact no longer matches the hash recorded at upload."""

    code = "hash_mismatch"
    http_status = HTTPStatus.INTERNAL_SERVER_ERROR
    exit_code = 1


class PredictFailed(ClocheError):
    """The model raised on input that passed validation (a model bug or a data edge case)."""

    code = "predict_failed"


class StepFailed(ClocheError):
    """A pipeline step's own code raised; the message holds the end of its traceback."""

    code = "step_failed"


class Unavailable(ClocheError):
    code = "unavailable"
    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    exit_code = 6


class Overloaded(Unavailable):
    """The model's queue is full; the client should retry after a moment."""

    code = "overloaded"


class SignInThrottled(Unavailable):
    """Too many failed console sign-ins from one address in a short time."""

    code = "sign_in_throttled"
    http_status = HTTPStatus.TOO_MANY_REQUESTS


class NotReady(Unavailable):
    code = "not_ready"


class DownloadFailed(Unavailable):
    """Packages could not be fetched from their index (no network, or no such build)."""

    code = "download_failed"


class SchemaTooNew(Unavailable):
    """A database (or backup) at a schema revision this cloche does not know: a newer version
    of cloche wrote it."""

    code = "schema_too_new"


class Timeout(ClocheError):
    code = "timeout"
    http_status = HTTPStatus.GATEWAY_TIMEOUT
    exit_code = 6


class InspectionTimeout(Timeout):
    """Loading an upload to read its signature took longer than the configured limit."""

    code = "inspection_timeout"


class BundleInvalid(InvalidInput):
    """A folder that is not a readable edge bundle (no manifest, or one that makes no sense)."""

    code = "bundle_invalid"


class BundleIncompatible(InvalidInput):
    """An edge bundle written in a format this cloche does not read."""

    code = "bundle_incompatible"


class BundleTampered(HashMismatch):
    """A file of an edge bundle differs from what its manifest recorded, or was added to it."""

    code = "bundle_tampered"


class BackupInvalid(InvalidInput):
    """A file that is not a whole, untampered cloche backup: no manifest, truncated, a member
    whose hash differs from the manifest's, or a member that would land outside the store."""

    code = "backup_invalid"


def all_error_classes() -> list[type[ClocheError]]:
    """Every ClocheError subclass, the base included."""
    seen: list[type[ClocheError]] = [ClocheError]
    stack = list(ClocheError.__subclasses__())
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_class_for_code(code: str) -> type[ClocheError]:
    """The class whose ``code`` is ``code``; the base class for unknown codes."""
    for cls in all_error_classes():
        if cls.code == code:
            return cls
    return ClocheError
