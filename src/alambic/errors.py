"""The exceptions alambic raises.

Every error a user can cause derives from :class:`AlambicError`, so ``except AlambicError``
catches them all; each also derives from the matching builtin (``ValueError``, ``TypeError``...)
so code written against the builtins keeps working::

    AlambicError
    ├── AlambicUserError (ValueError)        a mistake in how alambic is used, caught early
    │   ├── InvalidNameError                 a step or pipeline name that cannot be used
    │   ├── MappingError                     an input/output mapping names an unknown column
    │   ├── ColumnTypeError (TypeError)      a column holds a value of the wrong type
    │   ├── MissingColumnError               a required input column nobody produces
    │   ├── PipelineValidationError          the DAG is wrong: cycles, duplicates, orphans...
    │   ├── RuntimeParameterError            unknown or missing runtime parameter
    │   └── TemplateError                    a Jinja2 template uses an unknown placeholder
    ├── MissingDependencyError (ImportError) an optional package is not installed
    ├── MissingAPIKeyError (ValueError)      no API key given and none in the environment
    ├── ModelNotAvailableError (OSError)     a model can neither be found locally nor downloaded
    ├── LLMRequestError (RuntimeError)       a request failed for good (after retries)
    ├── LLMConfigurationError (RuntimeError) no request of an LLM can succeed: the step stops
    ├── StructuredOutputError (ValueError)   a reply never validated against its schema
    ├── StoreError (RuntimeError)            the run store is corrupt, locked or incompatible
    └── HubError (RuntimeError)              a push to the Hugging Face Hub failed
"""

from __future__ import annotations

import builtins
from enum import Enum
from typing import Any, TypedDict, cast

from alambic.redaction import redact

METADATA_COLUMN = "alambic_metadata"
"""The row column holding per-row metadata: raw prompts and replies, token statistics, and the
errors of each step (``row[METADATA_COLUMN]["error_<step name>"]``). Defined here only."""

MAX_ERROR_MESSAGE = 2000
"""Error messages kept in rows are cut to this many characters."""


class AlambicError(Exception):
    """Base class of every exception alambic raises on purpose."""


class AlambicUserError(AlambicError, ValueError):
    """A mistake in how alambic is used; raised before any token is spent where possible."""


def _validation_error_base() -> type[ValueError]:
    """pydantic's ``ValidationError`` where pydantic-core lets it be subclassed (2.x recent);
    else ``ValueError``, so :class:`InvalidNameError` still is one."""
    from pydantic import ValidationError

    try:
        type("_Probe", (AlambicUserError, ValidationError), {})
    except TypeError:  # an older pydantic-core: its ValidationError is final
        return ValueError
    return ValidationError


class InvalidNameError(AlambicUserError, _validation_error_base()):  # type: ignore[misc]
    """A step or pipeline name contains characters that cannot be used.

    It is also pydantic's ``ValidationError`` (what distilabel raises for a bad step name),
    so ``except ValidationError``, ``except ValueError`` and ``except AlambicError`` all catch
    it. Build it with :meth:`for_name`.
    """

    @classmethod
    def for_name(cls, owner: str, name: object, message: str) -> InvalidNameError:
        """The error for the bad ``name`` of ``owner`` (a step class name, ``"Pipeline"``)."""
        from pydantic import ValidationError
        from pydantic_core import PydanticCustomError

        if not issubclass(cls, ValidationError):
            return cls(message)
        error = PydanticCustomError("invalid_name", "{message}", {"message": message})
        line = {"type": error, "loc": ("name",), "input": name}
        return cast(InvalidNameError, cls.from_exception_data(owner, [line]))  # type: ignore[list-item]


class MappingError(AlambicUserError):
    """An ``input_mappings`` / ``output_mappings`` key is not a column of the step."""


class ColumnTypeError(AlambicUserError, TypeError):
    """A column holds a value whose type the step cannot use."""


class MissingColumnError(AlambicUserError):
    """A step needs a column that no predecessor produces."""


class PipelineValidationError(AlambicUserError):
    """The pipeline's graph is invalid (cycle, duplicate name, unconnected step...)."""


class RuntimeParameterError(AlambicUserError):
    """A runtime parameter is unknown, or a required one was never set."""


class TemplateError(AlambicUserError):
    """A prompt template refers to a placeholder that is not declared."""


class MissingDependencyError(AlambicError, ImportError):
    """An optional package needed by a feature is not installed."""

    def __reduce__(self) -> tuple[Any, ...]:  # pickled between processes (Ray actors)
        return (type(self), (self.feature, self.package, self.extra))

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.feature = feature
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f'Install it with: pip install "alambic[{extra}]"'
        )


class MissingAPIKeyError(AlambicUserError):
    """No API key was given and the environment variable that holds it is empty."""


class ModelNotAvailableError(AlambicError, OSError):
    """A model is neither a local folder nor downloadable from the hub."""


class HubError(AlambicError, RuntimeError):
    """A push to the Hugging Face Hub failed: the message names the repo, the cause and the
    fix; the library's own exception is chained as ``__cause__``."""


class ErrorKind(str, Enum):
    """Why a request failed; decides whether it is retried."""

    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_REQUEST = "bad_request"
    AUTHENTICATION = "authentication"
    NOT_FOUND = "not_found"
    CONTEXT_LENGTH = "context_length"
    INVALID_RESPONSE = "invalid_response"
    STRUCTURED_OUTPUT = "structured_output"
    FORMAT_OUTPUT = "format_output"
    """The task's ``format_output`` raised or returned something other than a dict."""
    STEP = "step"
    """A step's ``process`` raised: every row of the batch carries the error."""
    INPUT = "input"
    """A row was refused before any request (a value of the wrong type, a missing column)."""
    STORE = "store"
    """The run store or request cache failed while the row was processed (disk full...)."""
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMIT,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.INVALID_RESPONSE,
    }
)


TRANSIENT_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMIT,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.AUTHENTICATION,
        ErrorKind.STEP,
        ErrorKind.STORE,
    }
)
"""Kinds a rerun retries by default (``Pipeline.run(retry_failed=True)``): failures that a
later run can succeed at once the server is back, the key fixed or the step's bug fixed."""


class ErrorEntry(TypedDict):
    """Why a row (or one generation of it) failed: ``{"type", "kind", "message"}``.

    Kept in ``row[METADATA_COLUMN]["error_<step name>"]``; build it with :func:`error_entry`.
    """

    type: str
    kind: str
    message: str


def error_entry(
    kind: ErrorKind | str, message: object, *, type: str | BaseException = "Error"
) -> ErrorEntry:
    """The one way to build an error entry for a row.

    ``type`` is the exception (its class name is used) or a short name such as
    ``"EmptyReply"``; ``message`` is redacted of API keys (:func:`alambic.redaction.redact`)
    and cut to :data:`MAX_ERROR_MESSAGE` characters::

        error_entry(ErrorKind.STEP, exc, type=exc)
        error_entry("invalid_response", "the LLM returned no text", type="EmptyReply")
    """
    name = type if isinstance(type, str) else builtins.type(type).__name__
    value = kind.value if isinstance(kind, ErrorKind) else str(ErrorKind(kind).value)
    return {"type": name, "kind": value, "message": redact(str(message))[:MAX_ERROR_MESSAGE]}


def error_key(step_name: str) -> str:
    """The metadata key under which step ``step_name`` records a row's error."""
    return f"error_{step_name}"


def set_row_error(row: dict[str, Any], step_name: str, entry: ErrorEntry) -> dict[str, Any]:
    """Record ``entry`` in ``row``'s metadata for ``step_name`` (in place; returns ``row``).

    The metadata dict is copied first, so rows sharing one metadata dict are not changed
    together.
    """
    existing = row.get(METADATA_COLUMN)
    meta = dict(existing) if isinstance(existing, dict) else {}
    meta[error_key(step_name)] = dict(entry)
    row[METADATA_COLUMN] = meta
    return row


def row_errors(row: dict[str, Any]) -> dict[str, ErrorEntry]:
    """The error entries of ``row`` by step name (empty when the row did not fail)."""
    meta = row.get(METADATA_COLUMN)
    if not isinstance(meta, dict):
        return {}
    return {
        key[len("error_") :]: cast(ErrorEntry, value)
        for key, value in meta.items()
        if key.startswith("error_") and isinstance(value, dict)
    }


REFUSED_TYPE = "ColumnTypeError"
"""The ``type`` of the error entry of a row refused for a value whose type does not match its
column (kind ``input``; see :mod:`alambic.pipeline.executor.column_types`)."""


def row_refusal(row: dict[str, Any]) -> str | None:
    """The message of the column-type refusal ``row`` carries, if any: no task sends a
    request for such a row."""
    meta = row.get(METADATA_COLUMN)
    if not meta or not isinstance(meta, dict):
        return None
    for key, value in meta.items():
        if (
            key.startswith("error_")
            and isinstance(value, dict)
            and value.get("type") == REFUSED_TYPE
        ):
            return str(value.get("message"))
    return None


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """Unpickle an exception whose constructor takes keyword-only options."""
    return cls(*args, **options)


class LLMRequestError(AlambicError, RuntimeError):
    """A request to an LLM failed for good; the row that needed it becomes a failed row."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.UNKNOWN,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:  # pickled between processes (Ray actors)
        return (
            _rebuild,
            (
                type(self),
                self.args,
                {"kind": self.kind, "retry_after": self.retry_after, "attempts": self.attempts},
            ),
        )


class LLMConfigurationError(AlambicError, RuntimeError):
    """No request of an LLM can succeed (wrong key, unknown model, wrong URL, a server that
    refuses every connection): the step stops at once instead of failing every row.

    ``setting`` names the setting to fix (``api_key``, ``model``, ``base_url``); ``kind`` is
    the error kind that tripped the check.
    """

    def __init__(self, message: str, *, kind: ErrorKind, setting: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.setting = setting

    def __reduce__(self) -> tuple[Any, ...]:  # pickled between processes (Ray actors)
        return (_rebuild, (type(self), self.args, {"kind": self.kind, "setting": self.setting}))


class StructuredOutputError(AlambicError, ValueError):
    """A reply never validated against the requested schema."""


class StoreError(AlambicError, RuntimeError):
    """The run store cannot be used: corrupt, from another version, locked, or its disk full."""

    disk_full: bool = False
    """True when the disk (or quota) holding the store is full."""
