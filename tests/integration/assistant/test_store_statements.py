"""Turn persistence asks the database only what it does not know: a conversation created in
the session is inserted with its title and first messages, and its history and next seq come
from memory; an answer is stored with its token counts in the same INSERT."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from tests.conftest import Platform

from obsigen.assistant import store
from obsigen.authz.principal import Principal
from obsigen.db.models import Conversation, Message
from obsigen.identity.apikeys import authenticate_api_key
from obsigen.inference.interfaces import ChatMessage
from obsigen.tenantkeys import bodies


@contextmanager
def statements(platform: Platform) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0].upper())

    engine = platform.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def principal_of(platform: Platform) -> Principal:
    key = await platform.api_key()
    async with platform.services.sessions() as session:
        principal = await authenticate_api_key(session, key)
    assert principal is not None
    # As a turn does: the tenant's data key exists before the transaction that seals bodies.
    await bodies.prepare_sealing(platform.services.sessions, principal.tenant_id)
    return principal


async def test_a_new_conversation_is_inserted_once_and_its_history_needs_no_query(
    platform: Platform,
) -> None:
    principal = await principal_of(platform)
    prompt = (ChatMessage("system", "Be brief."), ChatMessage("user", "  Hello\nthere  "))
    with statements(platform) as seen:
        async with platform.services.sessions.begin() as session:
            conversation = await store.open_conversation(session, principal, None, "m")
            rows = await store.append_messages(session, conversation, prompt, "i1")
            history = await store.history(session, conversation)
    # The conversation (titled), then its messages: no UPDATE for the title, no SELECT for
    # the next seq or the history.
    assert "SELECT" not in seen
    assert "UPDATE" not in seen
    assert seen.count("INSERT") in (2, 3)  # the messages in one statement or two
    assert history == prompt
    assert [row.seq for row in rows] == [0, 1]
    async with platform.services.sessions() as session:
        stored = await session.get(Conversation, conversation.id)
        assert stored is not None
        assert stored.title == "Hello there"


async def test_an_answer_carries_its_tokens_and_follows_the_stored_messages(
    platform: Platform,
) -> None:
    principal = await principal_of(platform)
    async with platform.services.sessions.begin() as session:
        conversation = await store.open_conversation(session, principal, None, "m")
        await store.append_messages(session, conversation, (ChatMessage("user", "Hi"),), "i1")
    with statements(platform) as seen:
        async with platform.services.sessions.begin() as session:
            opened = await store.open_conversation(session, principal, conversation.id, "m")
            (answer,) = await store.append_messages(
                session, opened, (ChatMessage("assistant", "Hello!"),), "i1", tokens=(7, 3)
            )
    # The access check, the next seq, the answer, the conversation's updated_at: no UPDATE
    # of the answer for its token counts.
    assert seen.count("UPDATE") == 1
    assert seen.count("INSERT") == 1
    async with platform.services.sessions() as session:
        row = await session.scalar(select(Message).where(Message.id == answer.id))
        assert row is not None
        assert (row.seq, row.prompt_tokens, row.completion_tokens) == (1, 7, 3)
        again = await store.history(session, await session.get_one(Conversation, opened.id))
    assert [m.content for m in again] == ["Hi", "Hello!"]


async def test_another_owner_cannot_append_to_a_conversation(platform: Platform) -> None:
    owner, stranger = await principal_of(platform), await principal_of(platform)
    async with platform.services.sessions.begin() as session:
        conversation = await store.open_conversation(session, owner, None, "m")
        await store.append_messages(session, conversation, (ChatMessage("user", "Hi"),), "i1")
    async with platform.services.sessions() as session:
        try:
            await store.open_conversation(session, stranger, conversation.id, "m")
        except Exception as exc:  # noqa: BLE001 - the type is asserted below
            refused: Exception | None = exc
        else:
            refused = None
    assert refused is not None
    assert type(refused).__name__ == "NotFound"
