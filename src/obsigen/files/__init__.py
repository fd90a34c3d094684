"""Uploaded files: the upload pipeline, content checks and the object stores (docs/files.md)."""
