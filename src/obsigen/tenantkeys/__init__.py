"""Customer-held keys: per-tenant data keys under the KEK, text and object encryption, erasure."""
