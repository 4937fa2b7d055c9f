"""The capability file: a JSON description of the sandbox for the program inside.

Its path is passed as ``NONO_CAP_FILE``; ``nono why --self`` reads it. It
holds no secrets: only what the sandbox allows, so the agent can explain its
own failures.
"""

from __future__ import annotations

import os

from .. import _jsonlite
from ..kernel import landlock as ll

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import Plan


def describe(plan: Plan, status: dict[str, object]) -> dict[str, object]:
    return {
        "version": 1,
        "sandbox": "landlock",
        "landlock_abi": ll.abi_version(),
        "filesystem": [
            {"path": r.path, "access": r.access, "kind": "dir" if r.is_dir else "file", "source": r.source}
            for r in plan.rules.values()
        ],
        "deny": [{"path": p, "source": s} for p, s in plan.denies],
        "decomposed": [{"path": p, "denied_inside": d} for p, d in plan.decomposed],
        "network": {
            "mode": "blocked" if plan.restrict_network else "allowed",
            "connect_ports": list(plan.connect_ports),
            "bind_ports": list(plan.bind_ports),
        },
        "unix_socket_roots": plan.socket_roots,
        "executable": plan.executable,
        "protections": status,
    }


def write(plan: Plan, status: dict[str, object]) -> str:
    """Write the capability file into the temp directory; return its path."""
    tmp = os.environ.get("TMPDIR") or "/tmp"
    if not os.path.isdir(tmp):
        tmp = "/tmp"
    path = os.path.join(tmp, f".nono-{os.getpid()}-{os.urandom(6).hex()}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_jsonlite.dumps_compact(describe(plan, status)))
    return path


def read(path: str) -> dict[str, object]:
    with open(path, encoding="utf-8") as f:
        return _jsonlite.loads(f.read())  # type: ignore[no-any-return]
