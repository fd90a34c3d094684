"""Retention of tenant data: uploads, artifacts and conversations (docs/retention.md)."""
