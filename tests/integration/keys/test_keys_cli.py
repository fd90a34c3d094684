"""`obsigen keys list` and `obsigen keys rotate`, driven as a user would (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

OBSIGEN = str(Path(sys.executable).parent / "obsigen")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OBSIGEN_PATHS__DATA_DIR": str(data_dir)}
    env.pop("OBSIGEN_CONFIG", None)
    return subprocess.run(
        [OBSIGEN, "keys", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_rotation_keeps_the_old_signing_key_verifying_and_lists_states(tmp_path: Path) -> None:
    assert "no keys yet" in cli(tmp_path, "list").stdout

    first = cli(tmp_path, "rotate", "--kind", "signing")
    second = cli(tmp_path, "rotate", "--kind", "signing", "--overlap", "2h")
    kek = cli(tmp_path, "rotate", "--kind", "kek")
    listed = cli(tmp_path, "list", "--json")

    assert [first.returncode, second.returncode, kek.returncode, listed.returncode] == [0] * 4
    rows = json.loads(listed.stdout)
    signing = {r["kid"]: r for r in rows if r["kind"] == "signing"}
    old_kid = first.stdout.split()[3]
    new_kid = second.stdout.split()[3]
    assert signing[old_kid]["state"] == "verify-only"
    assert signing[old_kid]["retire_after"] is not None
    assert signing[new_kid]["state"] == "active"
    assert [r["state"] for r in rows if r["kind"] == "kek"] == ["active"]
    assert "PRIVATE" not in listed.stdout


def test_bad_input_fails_cleanly_and_creates_nothing(tmp_path: Path) -> None:
    for args in (
        ("rotate", "--kind", "signing", "--overlap", "soon"),
        # Shorter than an access token lives (15 min): issued tokens would die early.
        ("rotate", "--kind", "signing", "--overlap", "5m"),
        ("rotate", "--kind", "kek", "--tenant", "acme"),
        ("rotate", "--kind", "banana"),
    ):
        done = cli(tmp_path, *args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
    assert json.loads(cli(tmp_path, "list", "--json").stdout) == []
