"""docs/rbac.md's role table says what ROLE_PERMISSIONS and MFA_REQUIRED say."""

from __future__ import annotations

from pathlib import Path

from obsigen.authz.permissions import MFA_REQUIRED, ROLE_PERMISSIONS, Permission, Role

DOC = Path(__file__).resolve().parents[3] / "docs" / "rbac.md"


def role_table() -> tuple[list[str], dict[str, list[str]]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Permission | owner |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return header[1:], rows


def test_the_documented_role_table_matches_the_code() -> None:
    columns, rows = role_table()
    assert columns == [role.value for role in Role] + ["MFA"]
    assert set(rows) == {permission.value for permission in Permission}
    for value, cells in rows.items():
        permission = Permission(value)
        expected = ["✓" if permission in ROLE_PERMISSIONS[role] else "" for role in Role]
        expected.append("yes" if permission in MFA_REQUIRED else "")
        assert cells == expected, value


def test_every_permission_is_described() -> None:
    text = DOC.read_text()
    for permission in Permission:
        assert f"| `{permission.value}` | " in text.split("## Built-in roles")[0], permission
