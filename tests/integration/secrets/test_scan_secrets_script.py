"""scripts/scan-secrets.sh: fails on a planted credential, passes on the repository as-is."""

from __future__ import annotations

import secrets
import shutil
import string
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "scan-secrets.sh"
BASELINE = REPO / ".secrets.baseline"


def _scan(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), str(root)], capture_output=True, text=True, timeout=300, check=False
    )


def _fake_aws_key_id() -> str:
    # Built at test time: the repository itself must hold nothing the scanner would flag.
    alphabet = string.ascii_uppercase + string.digits
    return "AK" + "IA" + "".join(secrets.choice(alphabet) for _ in range(16))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text('GREETING = "hello"\n')
    shutil.copy(BASELINE, root / ".secrets.baseline")
    # The hook runs git; new files count without being committed.
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=60)
    return root


def test_a_clean_tree_passes(tree: Path) -> None:
    result = _scan(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_planted_aws_key_fails_the_scan(tree: Path) -> None:
    (tree / "src" / "settings.py").write_text(f'AWS_KEY_ID = "{_fake_aws_key_id()}"\n')
    result = _scan(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AWS Access Key" in result.stdout
    assert "src/settings.py" in result.stdout


def test_the_scan_never_rewrites_the_baseline(tree: Path) -> None:
    before = (tree / ".secrets.baseline").read_bytes()
    _scan(tree)
    assert (tree / ".secrets.baseline").read_bytes() == before


def test_a_missing_baseline_is_an_error(tree: Path) -> None:
    (tree / ".secrets.baseline").unlink()
    assert _scan(tree).returncode == 2


def test_the_repository_passes_with_its_baseline() -> None:
    before = BASELINE.read_bytes()
    result = _scan(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert BASELINE.read_bytes() == before
