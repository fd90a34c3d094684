"""Obsigen: a self-hosted AI assistant platform with layered security controls."""

__version__ = "0.1.0"
