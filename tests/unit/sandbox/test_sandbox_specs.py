"""What each backend is asked to do: the OCI spec, the bwrap command line, the root filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsigen.sandbox.bwrap import NPROC_BACKSTOP, bwrap_argv, limits_argv
from obsigen.sandbox.cgroups import Cgroup
from obsigen.sandbox.gvisor import oci_spec
from obsigen.sandbox.interfaces import Limits
from obsigen.sandbox.rootfs import build_rootfs
from obsigen.sandbox.workspace import Workspace

LIMITS = Limits(wall_time_s=10, memory_mb=300, pids=20, open_files=99, file_size_mb=5, cpus=0.5)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "run", mounted=False)


def test_oci_spec_is_unprivileged_read_only_and_limited(
    tmp_path: Path, workspace: Workspace
) -> None:
    spec = oci_spec(tmp_path / "rootfs", workspace, LIMITS, Cgroup("t-1"))
    process = spec["process"]

    assert process["user"] == {"uid": 65534, "gid": 65534, "additionalGids": []}
    assert all(caps == [] for caps in process["capabilities"].values())
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is False
    assert spec["root"]["readonly"] is True
    rlimits = {r["type"]: r["hard"] for r in process["rlimits"]}
    assert rlimits["RLIMIT_NPROC"] == 20  # forks fail with EAGAIN, not a gVisor panic
    assert rlimits["RLIMIT_NOFILE"] == 99
    assert rlimits["RLIMIT_FSIZE"] == 5 * 1024 * 1024
    assert rlimits["RLIMIT_CORE"] == 0
    resources = spec["linux"]["resources"]
    assert resources["memory"]["limit"] == 300 * 1024 * 1024
    assert resources["cpu"] == {"quota": 50_000, "period": 100_000}
    assert resources["pids"]["limit"] > 1000  # a backstop only
    assert spec["linux"]["cgroupsPath"] == "/obsigen-sandbox/t-1"
    assert {"type": "network"} in spec["linux"]["namespaces"]
    # Nothing from the server's environment: the list is the whole environment.
    assert all(not v.startswith(("OBSIGEN", "AWS", "VAULT")) for v in process["env"])


def test_oci_spec_mounts_only_the_runtime_and_the_runs_own_directories(
    tmp_path: Path, workspace: Workspace
) -> None:
    mounts = {
        m["destination"]: m for m in oci_spec(tmp_path, workspace, LIMITS, Cgroup("x"))["mounts"]
    }

    assert "ro" in mounts["/usr"]["options"]
    assert "ro" in mounts["/input"]["options"]
    assert mounts["/input"]["source"] == str(workspace.input_dir)
    for writable in ("/workspace", "/output", "/tmp"):  # noqa: S108 - paths inside the run
        assert "rw" in mounts[writable]["options"]
        assert mounts[writable]["source"].startswith(str(workspace.rw_dir))
    binds = {m["source"] for m in mounts.values() if m["type"] == "bind"}
    assert not any(b in ("/", "/etc", "/root", "/home", "/var", "/run") for b in binds)


def test_bwrap_argv_isolates_everything(workspace: Workspace) -> None:
    argv = bwrap_argv("/usr/bin/bwrap", Path("/x/etc"), workspace, 7)
    joined = " ".join(argv)

    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv", "--cap-drop ALL", "--uid 65534", "--gid 65534",
                 "--ro-bind /usr /usr", "--remount-ro /", "--seccomp 7", "--ro-bind /x/etc /etc",
                 f"--ro-bind {workspace.input_dir} /input"):  # fmt: skip
        assert flag in joined, flag
    assert "--share-net" not in argv
    assert argv[-3:] == ["/usr/bin/python3", "-I", "-"]


def test_limits_argv_drops_to_the_sandbox_user_with_rlimits() -> None:
    argv = limits_argv("/usr/bin/prlimit", "/usr/bin/setpriv", LIMITS, cgroup_limited=True)

    assert argv[0] == "/usr/bin/prlimit"
    assert f"--nproc={NPROC_BACKSTOP}" in argv
    assert "--nofile=99" in argv
    assert f"--fsize={5 * 1024 * 1024}" in argv
    assert not any(a.startswith("--as=") for a in argv)
    assert argv[argv.index("/usr/bin/setpriv") :] == [
        "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
    ]  # fmt: skip


def test_without_cgroups_rlimits_carry_processes_and_memory() -> None:
    argv = limits_argv("/usr/bin/prlimit", None, LIMITS, cgroup_limited=False)

    assert "--nproc=22" in argv  # the run's 20 and bwrap's own two
    assert f"--as={300 * 1024 * 1024}" in argv
    assert "/usr/bin/setpriv" not in argv


def test_rootfs_has_mount_points_and_a_minimal_etc(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    build_rootfs(rootfs)

    for name in ("usr", "proc", "dev", "tmp", "workspace", "input", "output"):
        assert (rootfs / name).is_dir()
        assert list((rootfs / name).iterdir()) == []
    etc = {p.name for p in (rootfs / "etc").iterdir()}
    assert {"passwd", "group", "hosts"} <= etc
    assert not etc & {"shadow", "gshadow", "ssh", "ssl", "sudoers", "machine-id", "hostname"}
    assert "nobody:x:65534:65534" in (rootfs / "etc" / "passwd").read_text()
