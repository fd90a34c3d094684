"""The project's exception tree. The web edge maps each to an RFC 9457 problem type."""

from __future__ import annotations


class ObsigenError(Exception):
    """Base class. ``detail`` is safe to show to the caller."""

    status = 500
    type_slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class NotFound(ObsigenError):
    # Same answer for "missing" and "not yours": ids of other tenants must not leak.
    status = 404
    type_slug = "not-found"
    title = "Not found"


class Unauthenticated(ObsigenError):
    status = 401
    type_slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(ObsigenError):
    status = 403
    type_slug = "forbidden"
    title = "Permission denied"


class MfaRequired(Forbidden):
    """The principal holds the permission but this session has not proved a second factor:
    the client should step up (``POST /auth/mfa/step-up``) and retry."""

    type_slug = "mfa-required"
    title = "Second factor required"


class TooManyAttempts(ObsigenError):
    status = 429
    type_slug = "too-many-attempts"
    title = "Too many attempts"

    def __init__(self, detail: str = "", retry_after_s: int = 60) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class InvalidInput(ObsigenError):
    status = 422
    type_slug = "invalid-input"
    title = "Invalid input"


class Conflict(ObsigenError):
    status = 409
    type_slug = "conflict"
    title = "Conflict"


class UpstreamFailed(ObsigenError):
    status = 502
    type_slug = "inference-failed"
    title = "The model could not answer"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    type_slug = "inference-timeout"
    title = "The model did not answer in time"


class Unavailable(ObsigenError):
    status = 503
    type_slug = "unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(Unavailable):
    """The database refused the connection, dropped it or stopped answering within its
    timeouts (``connect_timeout``/``read_timeout``): nothing of the request was committed
    after that point, and a retry once the database is back may succeed."""

    type_slug = "database-unavailable"
    title = "Database unavailable"
