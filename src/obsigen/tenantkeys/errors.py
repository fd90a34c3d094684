"""What tenant encryption can refuse, as problem types."""

from __future__ import annotations

from obsigen.errors import ObsigenError


class TenantKeyError(ObsigenError):
    status = 500
    type_slug = "tenant-key"
    title = "Tenant key error"


class TenantKeysDestroyed(TenantKeyError):
    """The tenant was erased: its data keys are gone, and so is everything they sealed."""

    status = 410
    type_slug = "tenant-keys-destroyed"
    title = "Tenant data keys destroyed"


class CiphertextInvalid(TenantKeyError):
    """Stored ciphertext does not authenticate: tampered, moved to another row or object, or
    sealed under a key this tenant no longer has. Stored data, not user input: a server fault."""

    type_slug = "tenant-ciphertext-invalid"
    title = "Stored ciphertext is invalid"
