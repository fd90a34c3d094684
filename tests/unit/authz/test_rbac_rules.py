"""RBAC rules that need no database: scopes, what a role grants, workspace grants, API key
lifetimes and roles, and the audit record of a change."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from obsigen.authz.permissions import (
    MFA_REQUIRED,
    ROLE_PERMISSIONS,
    Permission,
    Role,
)
from obsigen.authz.principal import Principal
from obsigen.authz.roles import (
    AdminChange,
    RoleInfo,
    denial_event,
    ensure_key_assignable,
    parse_scope,
    role_permissions,
    stored_permissions,
    workspace_of,
)
from obsigen.errors import InvalidInput
from obsigen.identity.apikeys import DEFAULT_MAX_AGE, key_lifetime
from obsigen.identity.users import role_needs_mfa


@pytest.mark.parametrize("scope", ["tenant", "workspace:w1", "workspace:Data-Team_2"])
def test_valid_scopes(scope: str) -> None:
    assert parse_scope(scope) == scope


@pytest.mark.parametrize(
    "scope",
    ["", "global", "workspace:", "workspace:-x", "workspace:a b", "workspace:a/b", "x" * 65],
)
def test_invalid_scopes(scope: str) -> None:
    with pytest.raises(InvalidInput):
        parse_scope(scope)


def test_workspace_of() -> None:
    assert workspace_of("workspace:w1") == "w1"
    assert workspace_of("tenant") is None
    assert workspace_of("workspace:" + "a" * 55) is None  # longer than the column holds


def test_stored_permissions_ignore_unknown_strings() -> None:
    # A permission removed in a later version must not break everyone holding the role.
    assert stored_permissions(["tenant:chat:create", "tenant:gone:away", 7]) == {
        Permission.CHAT_COMPLETIONS_CREATE
    }


def test_role_permissions_builtin_custom_and_missing() -> None:
    custom = {"ops": frozenset({Permission.AUDIT_READ})}
    assert role_permissions("member", custom) == ROLE_PERMISSIONS[Role.MEMBER]
    assert role_permissions("ops", custom) == frozenset({Permission.AUDIT_READ})
    assert role_permissions("deleted", custom) is None


def test_workspace_grant_holds_only_in_its_workspace() -> None:
    principal = Principal(
        tenant_id="t",
        kind="user",
        id="u",
        roles=frozenset({Role.VIEWER}),
        workspace_grants=MappingProxyType({"w1": frozenset({Permission.CODE_RUN})}),
    )
    assert principal.can(Permission.CODE_RUN, workspace="w1")
    assert not principal.can(Permission.CODE_RUN, workspace="w2")
    assert not principal.can(Permission.CODE_RUN)
    assert principal.can(Permission.MODELS_READ, workspace="w2")


@pytest.mark.parametrize("role", list(Role))
def test_only_roles_without_admin_permissions_can_go_to_api_keys(role: Role) -> None:
    info = RoleInfo(role.value, ROLE_PERMISSIONS[role], True)
    if ROLE_PERMISSIONS[role] & MFA_REQUIRED:
        with pytest.raises(InvalidInput, match="MFA"):
            ensure_key_assignable(info)
    else:
        ensure_key_assignable(info)


def test_custom_role_with_one_admin_permission_cannot_go_to_an_api_key() -> None:
    info = RoleInfo("reader", frozenset({Permission.MODELS_READ, Permission.AUDIT_READ}), False)
    with pytest.raises(InvalidInput, match="tenant:audit:read"):
        ensure_key_assignable(info)


def test_builtin_roles_that_need_a_second_factor() -> None:
    assert {role for role in Role if role_needs_mfa(role)} == {
        Role.OWNER,
        Role.ADMIN,
        Role.AUDITOR,
    }


def test_key_lifetime_defaults_to_the_maximum() -> None:
    assert key_lifetime(None, timedelta(days=30)) == timedelta(days=30)
    assert key_lifetime(timedelta(days=7), timedelta(days=30)) == timedelta(days=7)
    assert key_lifetime(timedelta(days=30), timedelta(days=30)) == timedelta(days=30)
    assert key_lifetime(None, DEFAULT_MAX_AGE) == timedelta(days=365)


@pytest.mark.parametrize("lifetime", [timedelta(days=31), timedelta(0), timedelta(days=-1)])
def test_key_lifetime_refuses_too_long_or_not_positive(lifetime: timedelta) -> None:
    with pytest.raises(InvalidInput):
        key_lifetime(lifetime, timedelta(days=30))


def test_too_long_key_lifetime_names_the_limit() -> None:
    with pytest.raises(InvalidInput, match="30 days"):
        key_lifetime(timedelta(days=31), timedelta(days=30))


def test_admin_change_event_carries_before_and_after() -> None:
    actor = Principal(tenant_id="t", kind="user", id="u", roles=frozenset({Role.ADMIN}), mfa=True)
    change = AdminChange(
        "role.grant",
        {"kind": "user", "id": "v"},
        [],
        [{"role": "member", "scope": "tenant"}],
        {"role": "member", "scope": "tenant"},
    )
    event = change.event(actor, "10.0.0.1")
    assert (event.type, event.outcome, event.tenant_id) == ("admin.change", "success", "t")
    assert event.actor == {"kind": "user", "id": "u"}
    assert event.target == {"kind": "user", "id": "v"}
    assert event.source_ip == "10.0.0.1"
    assert event.data == {
        "action": "role.grant",
        "role": "member",
        "scope": "tenant",
        "before": [],
        "after": [{"role": "member", "scope": "tenant"}],
    }


def test_denial_event_is_an_authorisation_decision() -> None:
    actor = Principal(tenant_id="t", kind="user", id="u", roles=frozenset({Role.ADMIN}))
    event = denial_event(actor, "role.grant", {"kind": "user", "id": "v"}, "no")
    assert (event.type, event.outcome) == ("authz.decision", "denied")
    assert event.data == {"action": "role.grant", "reason": "no"}
    assert event.severity_name == "medium"
