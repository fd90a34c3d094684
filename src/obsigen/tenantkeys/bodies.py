"""Message bodies: sealed on the way into ``messages.content``, opened on the way out.

The cipher rides on the session (``session.info``), put there by the session factory that
:func:`attach_cipher` configured, so the conversation code keeps its signatures and a session
without a cipher (encryption off, or a tool that only deletes) stores and reads plaintext.
Opened rows get their plaintext as the *committed* value: it is never written back.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from obsigen.db.base import new_id
from obsigen.db.models import Message
from obsigen.tenantkeys.aead import is_envelope
from obsigen.tenantkeys.cipher import TenantCipher

_INFO_KEY = "obsigen.tenant_cipher"
_OPENED_KEY = "obsigen.opened_bodies"
TABLE, COLUMN = "messages", "content"


def attach_cipher(sessions: async_sessionmaker[AsyncSession], cipher: TenantCipher) -> None:
    """Every session from ``sessions`` carries ``cipher`` from now on."""
    info = dict(sessions.kw.get("info") or {})
    info[_INFO_KEY] = cipher
    sessions.configure(info=info)


async def prepare_sealing(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> None:
    """Make sure the tenant's data key exists before a transaction that seals bodies begins.

    On MariaDB a first key is created in a transaction of its own; doing that from inside a
    turn's transaction needs a second pooled connection per turn, and enough concurrent first
    turns of one tenant would hold the whole pool while waiting for it.
    """
    found = (sessions.kw.get("info") or {}).get(_INFO_KEY)
    if isinstance(found, TenantCipher):
        await found.keyring.active_key(tenant_id)


def cipher_of(session: AsyncSession) -> TenantCipher | None:
    found = session.info.get(_INFO_KEY)
    return found if isinstance(found, TenantCipher) else None


async def seal_body(session: AsyncSession, row: Message, text: str) -> None:
    """Set ``row.content`` to ``text`` sealed for this row (the row gets its id here)."""
    cipher = cipher_of(session)
    if cipher is None:
        row.content = text
        return
    if not row.id:
        row.id = new_id()
    row.content = await cipher.encrypt_text(
        row.tenant_id, text, table=TABLE, column=COLUMN, row_id=row.id, session=session
    )


def show_plaintext(session: AsyncSession, row: Message, text: str) -> None:
    """After a flush: the in-memory row reads as ``text`` while the database keeps ciphertext."""
    set_committed_value(row, COLUMN, text)
    session.info.setdefault(_OPENED_KEY, set()).add(row.id)


async def open_bodies(session: AsyncSession, rows: Iterable[Message]) -> None:
    """Replace sealed bodies of loaded rows with their plaintext, in memory only."""
    cipher = cipher_of(session)
    if cipher is None:
        return
    # The identity map hands back rows opened earlier in this session: open each once.
    opened: set[str] = session.info.setdefault(_OPENED_KEY, set())
    for row in rows:
        stored = row.content
        if row.id in opened and not is_envelope(stored):
            continue
        text = await cipher.decrypt_text(
            row.tenant_id, stored, table=TABLE, column=COLUMN, row_id=row.id, session=session
        )
        set_committed_value(row, COLUMN, text)
        opened.add(row.id)


async def seal_update(session: AsyncSession, tenant_id: str, message_id: str, text: str) -> str:
    """The value to store when an UPDATE statement replaces a body (approvals)."""
    cipher = cipher_of(session)
    if cipher is None:
        return text
    return await cipher.encrypt_text(
        tenant_id, text, table=TABLE, column=COLUMN, row_id=message_id, session=session
    )
