"""Real key backends on loopback for tests and benchmarks: a fresh SoftHSM2 token, moto KMS.

Plain context managers, so the test fixtures and ``bench/keys.py`` start them the same way.
Neither touches the network beyond 127.0.0.1, and both clean up what they started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import httpx

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
HSM_PIN_ENV = "OBSIGEN_TEST_HSM_PIN"
AWS_KEY_ENV = "OBSIGEN_TEST_AWS_ACCESS_KEY_ID"
AWS_SECRET_ENV = "OBSIGEN_TEST_AWS_SECRET_ACCESS_KEY"
KMS_REGION = "eu-central-1"


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


# --- SoftHSM2 -------------------------------------------------------------------------------------


def softhsm_available() -> bool:
    return (
        Path(SOFTHSM_LIB).exists()
        and shutil.which("softhsm2-util") is not None
        and find_spec("pkcs11") is not None
    )


@dataclass(frozen=True)
class SoftHsmToken:
    label: str
    pin: str
    conf: Path

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label};pin=env:{HSM_PIN_ENV};lib={SOFTHSM_LIB}"


@contextlib.contextmanager
def softhsm_token(root: Path | None = None) -> Iterator[SoftHsmToken]:
    """A freshly initialised token in its own directory, selected through SOFTHSM2_CONF.

    The PKCS#11 library reads SOFTHSM2_CONF once, when python-pkcs11 first loads it: use
    one token per process (the test session), not one per test.
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="softhsm-")))
        tokens = root / "tokens"
        tokens.mkdir(mode=0o700)
        conf = root / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n"
        )
        token = SoftHsmToken(label="obsigen-test", pin="test-pin-4711", conf=conf)
        stack.enter_context(_env(SOFTHSM2_CONF=str(conf), **{HSM_PIN_ENV: token.pin}))
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                token.label,
                "--pin",
                token.pin,
                "--so-pin",
                "test-so-pin-4711",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield token


# --- moto KMS -------------------------------------------------------------------------------------


def moto_available() -> bool:
    return all(find_spec(name) is not None for name in ("moto", "boto3", "flask", "flask_cors"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str

    @property
    def uri(self) -> str:
        return (
            f"awskms:region={KMS_REGION};endpoint_url={self.endpoint_url};"
            f"access_key_id=env:{AWS_KEY_ENV};secret_access_key=env:{AWS_SECRET_ENV}"
        )

    def reset(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            client.post(f"{self.endpoint_url}/moto-api/reset").raise_for_status()


@contextlib.contextmanager
def moto_server(log_dir: Path | None = None, start_timeout_s: float = 60.0) -> Iterator[MotoServer]:
    """``moto_server`` on 127.0.0.1 with dummy credentials; boto3 can reach nothing else."""
    port = free_port()
    dummy = {
        AWS_KEY_ENV: "testing",
        AWS_SECRET_ENV: "testing",
        # Belt and braces: if some client fell back to the default chain, it finds only
        # dummies and never asks the instance metadata service.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    with contextlib.ExitStack() as stack:
        stack.enter_context(_env(**dummy))
        log = stack.enter_context(
            (log_dir / "moto.log" if log_dir else Path(os.devnull)).open("wb")
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited with {proc.returncode}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("moto_server did not start in time") from None
                    time.sleep(0.1)
            yield MotoServer(f"http://127.0.0.1:{port}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
