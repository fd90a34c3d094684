"""Why an upload was refused; each maps to a problem type at the web edge."""

from __future__ import annotations

from obsigen.errors import ObsigenError


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
