"""Shared fixtures: run the real ``nono`` against the real kernel.

Enforcement tests never mock Landlock, seccomp or sockets. They start nono as
a user would, attack from inside, and assert what the kernel answered.

* ``NONO_TEST_REQUIRED_ABI`` (default 4): the Landlock ABI this machine must
  have. Below it, the whole session FAILS (it does not skip): a green run with
  the sandbox untested proves nothing.
* Test homes live under ``/var/lib/nono-tests`` (not /tmp: a home inside /tmp
  makes nono decompose the /tmp grant, see docs/security.md).
* ``as_user`` runs the same test as root and as the unprivileged user
  ``nobody`` (via ``setpriv``), with a copy of the package readable by it and
  an interpreter it may execute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
TEST_ROOT = Path(os.environ.get("NONO_TEST_ROOT", "/var/lib/nono-tests"))
NOBODY = 65534


def _landlock_abi() -> int:
    sys.path.insert(0, str(SRC))
    try:
        from nono.kernel.landlock import abi_version

        return abi_version()
    finally:
        sys.path.pop(0)


def pytest_sessionstart(session: pytest.Session) -> None:
    required = int(os.environ.get("NONO_TEST_REQUIRED_ABI", "4"))
    abi = _landlock_abi()
    if abi < required:
        raise pytest.UsageError(
            f"Landlock ABI {abi} < required {required}: the enforcement tests cannot run here and must not pass. "
            "Run on Linux 6.7+ with Landlock enabled (or lower NONO_TEST_REQUIRED_ABI deliberately)."
        )


def pytest_report_header(config: pytest.Config) -> str:
    return f"landlock abi: {_landlock_abi()}; uid: {os.getuid()}; kernel: {os.uname().release}"


@dataclass
class User:
    """Who runs nono: ``root`` (uid 0) or ``nobody`` (uid 65534)."""

    name: str
    uid: int
    python: str
    pythonpath: str
    prefix: list[str] = field(default_factory=list)


def _copy_package_for(uid: int) -> str:
    """A world-readable copy of src/ so an unprivileged user can import nono."""
    dest = TEST_ROOT / f"pkg-{os.getpid()}"
    if not dest.exists():
        shutil.copytree(SRC, dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for root, _dirs, files in os.walk(dest):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
    return str(dest / "src")


def _python_for_nobody() -> str:
    """An interpreter uid 65534 can really use (exec it, read its stdlib, spawn it again)."""
    check = "import json, os, subprocess, sys; assert os.access(sys.executable, os.X_OK)"
    for cand in ("/usr/bin/python3", os.path.realpath(sys.executable)):
        if not os.path.exists(cand):
            continue
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                            cand, "-c", check], capture_output=True, timeout=30)
        if r.returncode == 0:
            return cand
    raise RuntimeError("no Python interpreter is executable by uid 65534 (nobody); install python3")


@pytest.fixture(scope="session", autouse=True)
def _test_root() -> Iterator[None]:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    yield
    shutil.rmtree(TEST_ROOT / f"pkg-{os.getpid()}", ignore_errors=True)


@pytest.fixture(scope="session")
def root_user() -> User:
    return User("root", 0, sys.executable, str(SRC))


@pytest.fixture(scope="session")
def nobody_user() -> User:
    if os.getuid() != 0:
        pytest.fail("the unprivileged variants need the test run to start as root (they switch to nobody)")
    return User("nobody", NOBODY, _python_for_nobody(), _copy_package_for(NOBODY),
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all"])


@pytest.fixture(params=["root", "nobody"])
def as_user(request: pytest.FixtureRequest) -> User:
    """Parametrise a test over root and the unprivileged user."""
    if request.param == "root":
        return request.getfixturevalue("root_user")  # type: ignore[no-any-return]
    return request.getfixturevalue("nobody_user")  # type: ignore[no-any-return]


@dataclass
class World:
    """A per-test directory tree owned by the test's user.

    ``home`` has planted secrets (``~/.ssh/id_rsa``, ``~/.aws/credentials``,
    ``~/.bashrc``); ``work`` is the agent's project; ``outside`` is a directory
    no test grants.
    """

    user: User
    base: Path
    home: Path
    work: Path
    outside: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NONO_"))}
        env.update(HOME=str(self.home), PYTHONPATH=self.user.pythonpath, TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1")
        env.update(extra)
        return env

    def drive(self, script: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
        """Run a Python driver script (unsandboxed) as this world's user; return its last JSON line.

        The script gets ``home work outside`` as arguments.
        """
        import json

        path = self.work / "driver.py"
        path.write_text(script)
        os.chown(path, self.user.uid, self.user.uid)
        cmd = self.user.prefix + [self.user.python, str(path), str(self.home), str(self.work), str(self.outside)]
        r = subprocess.run(cmd, cwd=self.work, env=self.env(), capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def nono(self, *args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``python -m nono ARGS`` as this world's user; capture text output."""
        cmd = self.user.prefix + [self.user.python, "-m", "nono", *args]
        return subprocess.run(cmd, cwd=cwd or self.work, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def world(as_user: User) -> Iterator[World]:
    yield from _make_world(as_user)


@pytest.fixture
def root_world(root_user: User) -> Iterator[World]:
    yield from _make_world(root_user)


def _make_world(user: User) -> Iterator[World]:
    base = TEST_ROOT / f"w-{uuid.uuid4().hex[:10]}"
    home, work, outside = base / "home", base / "work", base / "outside"
    for d in (home / ".ssh", home / ".aws", work, outside):
        d.mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nPLANTED-SECRET\n")
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=PLANTED\n")
    (home / ".bashrc").write_text("# rc\n")
    (home / "notes.txt").write_text("notes\n")
    (outside / "secret.txt").write_text("outside-secret\n")
    (work / "input.txt").write_text("input\n")
    os.chmod(base, 0o755)
    if user.uid:
        for root, _dirs, files in os.walk(base):
            os.chown(root, user.uid, user.uid)
            for f in files:
                os.chown(os.path.join(root, f), user.uid, user.uid)
    try:
        yield World(user, base, home, work, outside)
    finally:
        shutil.rmtree(base, ignore_errors=True)
