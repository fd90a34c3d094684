"""Why an upload was refused; each maps to a problem type at the web edge."""

from __future__ import annotations

from obsigen.errors import ObsigenError, Unavailable


class UploadTooLarge(ObsigenError):
    status = 413
    type_slug = "too-large"
    title = "Request too large"


class UnsupportedFile(ObsigenError):
    """The content is not an allowed type, or not the type the file name claims."""

    status = 415
    type_slug = "unsupported-file-type"
    title = "File type not accepted"


class UnsafeArchive(ObsigenError):
    """A zip container (OOXML document) breaks a limit or is malformed: bombs, nesting,
    overlapping or mis-declared entries, paths that escape, encryption."""

    status = 422
    type_slug = "unsafe-archive"
    title = "Archive refused"


class ObjectStoreUnavailable(Unavailable):
    """The object store (S3) could not be reached, dropped the connection, timed out or
    answered 5xx: an upload is not stored (and leaves no file behind), a download did not
    start. Retrying once the store is back may succeed."""

    type_slug = "object-store-unavailable"
    title = "Object store unavailable"
