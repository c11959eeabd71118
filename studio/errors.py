"""Errors the core raises on purpose. Each carries the HTTP status and the seed's error body.

The REST layer turns them into ``{error, detail, type}`` responses, the UI into ``gr.Error``
messages; anything else that escapes is an internal error and its text is never shown.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every deliberate error: ``title`` is the seed's ``error``, ``str(self)`` its detail."""

    status_code = 500
    title = "Internal error"
    type_name: str | None = None  # defaults to the class name

    def __init__(self, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return self.type_name or type(self).__name__

    def body(self) -> dict[str, str]:
        """The seed's error shape."""
        return {"error": self.title, "detail": self.detail, "type": self.type}


class InvalidRequest(StudioError):
    """A field is out of range or malformed (the seed calls this type ``ValueError``)."""

    status_code = 400
    title = "Validation error"
    type_name = "ValueError"


class TaskNotFound(StudioError):
    status_code = 404
    title = "Task not found"


class RouteNotFound(StudioError):
    status_code = 404
    title = "Not found"


class MethodNotAllowed(StudioError):
    status_code = 405
    title = "Method not allowed"


class TaskNotReady(StudioError):
    """The result was asked for before the task finished, or the task ended without one."""

    status_code = 409
    title = "Result not available"


class TaskInUse(StudioError):
    """A task asked to be deleted while it still runs, or while another task waits on it."""

    status_code = 409
    title = "Task in use"


class IdempotencyConflict(StudioError):
    """An ``Idempotency-Key`` reused with a different request body."""

    status_code = 422
    title = "Idempotency key reuse"


class AuthenticationFailed(StudioError):
    """No API key, or one the server does not know."""

    status_code = 401
    title = "Unauthorized"
    type_name = "AuthenticationError"


class PermissionDenied(StudioError):
    """A known key that may not do this (revoked)."""

    status_code = 403
    title = "Forbidden"


class RateLimited(StudioError):
    status_code = 429
    title = "Too many requests"
    type_name = "RateLimitExceeded"


class PayloadTooLarge(StudioError):
    status_code = 413
    title = "Payload too large"


class ModelUnavailable(StudioError):
    """The chosen model cannot be loaded here (not cached and no hub access, or no GPU)."""

    status_code = 503
    title = "Model unavailable"


class VramExceeded(StudioError):
    """CUDA ran out of memory; the worker freed what it could and keeps serving.
    ``leaner_profile``: the leaner memory profile the model's next load takes (the worker runs
    the task again with it), or None when none is left."""

    status_code = 500
    title = "VRAM exceeded"

    def __init__(self, detail: str, leaner_profile: str | None = None):
        super().__init__(detail)
        self.leaner_profile = leaner_profile


class TaskCancelled(StudioError):
    status_code = 409
    title = "Task cancelled"


class ServiceUnavailable(StudioError):
    status_code = 503
    title = "Service unavailable"


class InternalError(StudioError):
    """Something failed that the server did not expect; the details are logged, never shown."""


class StorageFull(StudioError):
    """The data folder's disk (or the task database on it) has no room left: new work is refused
    and a run whose write failed ends with this type. Recovers by itself once space is freed."""

    status_code = 507
    title = "Insufficient storage"


class StoreUnavailable(StudioError):
    """The task database answered with an error that is not the client's (busy, I/O error)."""

    status_code = 503
    title = "Service unavailable"


class MediaUnavailable(StudioError):
    """The object storage holding media (``ECHOEL_MEDIA_URL``) refused or did not answer."""

    status_code = 503
    title = "Service unavailable"


class EncodingFailed(StudioError):
    """The video encoder exited with an error or wrote a file that does not hold every frame."""

    status_code = 500
    title = "Encoding failed"


# The database driver's exception classes (any error, operational errors), registered by
# ``studio.db`` (the one layer that knows the driver), so this bottom layer can classify storage
# faults without importing a driver. Empty until ``studio.db`` is imported.
_database_errors: tuple[type[BaseException], ...] = ()
_operational_errors: tuple[type[BaseException], ...] = ()


def register_database_errors(any_error: type[BaseException], operational: type[BaseException]) -> None:
    """Teach ``storage_fault`` a database driver's ``Error`` and ``OperationalError`` classes."""
    global _database_errors, _operational_errors
    if any_error not in _database_errors:
        _database_errors = (*_database_errors, any_error)
    if operational not in _operational_errors:
        _operational_errors = (*_operational_errors, operational)


def storage_fault(error: BaseException) -> StudioError | None:
    """The deliberate error behind a storage failure anywhere in ``error``'s chain: a full disk
    (``ENOSPC``/``EDQUOT`` from any write, SQLite's "database or disk is full") is
    ``StorageFull``; any other database operational error (busy timeout, disk I/O) is
    ``StoreUnavailable``. None for everything else."""
    import errno

    seen: set[int] = set()
    cause: BaseException | None = error
    store_error: StudioError | None = None
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, StorageFull):
            return cause
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFull("the server's disk is full; the task could not be stored or written")
        if isinstance(cause, _database_errors):
            if "full" in str(cause).lower():
                return StorageFull("the server's disk is full; the task database cannot grow")
            if store_error is None and isinstance(cause, _operational_errors):
                store_error = StoreUnavailable("the task database is busy or failing; retry shortly")
        cause = cause.__cause__ or cause.__context__
    return store_error
