"""Retrieval over uploaded files: extraction, chunking, embeddings, hybrid search.

See docs/retrieval.md.
"""
