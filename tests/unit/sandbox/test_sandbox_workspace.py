"""The host side of a run: plain input names, read-only inputs, a size cap, nothing left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obsigen.sandbox.interfaces import SandboxInputError
from obsigen.sandbox.workspace import Workspace, check_file_name, is_mount_point

ROOT = os.geteuid() == 0


@pytest.mark.parametrize("name", ["data.csv", "Report 2024.xlsx", "a", "x_y-z.tar.gz"])
def test_plain_file_names_pass(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden", "x\x00y", "line\nbreak",
     "trailing.", "trailing ", "x" * 129, "naïve.txt"],
)  # fmt: skip
def test_other_file_names_are_refused(name: str) -> None:
    with pytest.raises(SandboxInputError):
        check_file_name(name)


def test_inputs_are_read_only_and_the_tree_goes_away(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "run", size_mb=4)
    workspace.write_inputs({"data.csv": b"a,b\n"})

    path = workspace.input_dir / "data.csv"
    assert path.read_bytes() == b"a,b\n"
    assert path.stat().st_mode & 0o777 == 0o444
    assert workspace.input_dir.stat().st_mode & 0o777 == 0o555
    for directory in (workspace.workspace_dir, workspace.output_dir, workspace.tmp_dir):
        assert directory.is_dir()
        if ROOT:
            assert (directory.stat().st_uid, directory.stat().st_gid) == (65534, 65534)

    workspace.destroy()
    workspace.destroy()  # twice is harmless
    assert not workspace.root.exists()


@pytest.mark.skipif(not ROOT, reason="the size-capped tmpfs needs root")
def test_the_writable_part_is_a_size_capped_tmpfs(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "run", size_mb=1)
    try:
        assert is_mount_point(workspace.rw_dir)
        with pytest.raises(OSError, match="No space left"):
            (workspace.workspace_dir / "fill").write_bytes(b"x" * (2 * 1024 * 1024))
    finally:
        workspace.destroy()
    assert not is_mount_point(workspace.rw_dir)
    assert not workspace.root.exists()
