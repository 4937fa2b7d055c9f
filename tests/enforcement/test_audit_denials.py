"""Landlock denials from the kernel audit log (ABI 7).

``test_probe_matches_the_host`` always runs: it checks that nono's answer ("observable" or
"not observable (why)") is true of this machine. The live collection test changes a
machine-wide setting (it enables kernel auditing for a second, then restores it), so it
runs only with ``NONO_TEST_KERNEL_AUDIT=1``, as root.
"""

from __future__ import annotations

import os
import time

import pytest

from nono.audit import denials
from nono.kernel import landlock as ll


def test_probe_matches_the_host() -> None:
    ok, why = denials.probe(refresh=True)
    if ll.abi_version() < 7:
        assert not ok and "ABI" in why
        return
    if os.geteuid() != 0:
        assert not ok and "CAP_AUDIT_READ" in why
        return
    status = denials.audit_status()
    assert ok == bool(status["enabled"]), (status, why)
    if not ok:
        assert "audit_enabled=0" in why


def test_parse_record() -> None:
    rec = denials.parse_record('audit(1795461062.185:1234): domain=1a00123ab blockers=fs.read_file,fs.refer '
                               'path="/etc/host name" dev="vda" ino=612 comm=636174')
    assert rec["_serial"] == "1234" and rec["domain"] == "1a00123ab"
    assert rec["blockers"] == "fs.read_file,fs.refer" and rec["path"] == "/etc/host name" and rec["ino"] == "612"
    assert rec["comm"] == "cat"  # hex-encoded by audit


def _audit_set(enabled: int) -> None:
    import _socket

    s = _socket.socket(16, 3, 9)
    try:
        s.bind((0, 0))
        body = (1).to_bytes(4, "little") + enabled.to_bytes(4, "little") + bytes(32)
        s.send((16 + len(body)).to_bytes(4, "little") + (1001).to_bytes(2, "little") + (5).to_bytes(2, "little")
               + (1).to_bytes(4, "little") + bytes(4) + body)
        s.recv(4096)
    finally:
        s.close()


@pytest.mark.skipif(os.environ.get("NONO_TEST_KERNEL_AUDIT") != "1" or os.geteuid() != 0 or ll.abi_version() < 7,
                    reason="changes the machine-wide audit setting: set NONO_TEST_KERNEL_AUDIT=1 (root, ABI 7)")
def test_collects_the_denials_of_a_watched_child() -> None:
    before = denials.audit_status()["enabled"]
    _audit_set(1)
    try:
        assert denials.probe(refresh=True)[0]
        collector = denials.DenialCollector()
        rs = ll.Ruleset(handle_tcp=False)
        for p in ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"):
            if os.path.exists(p):
                fd = os.open(p, os.O_PATH)
                rs.allow_path_fd(fd, ll.ACCESS_READ, is_dir=os.path.isdir(p))
                os.close(fd)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                from nono.kernel import process

                devnull = os.open("/dev/null", os.O_WRONLY)
                os.dup2(devnull, 2)
                process.set_no_new_privs()
                ll.restrict_self(rs.fd, denials.RESTRICT_SELF_FLAGS)
                os.execv("/bin/cat", ["cat", "/etc/hostname"])
            finally:
                os._exit(127)
        collector.watch(pid)
        os.waitpid(pid, 0)
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(d.get("path") == "/etc/hostname" for d in found):
            found += collector.drain()
            time.sleep(0.05)
        collector.close()
        hit = [d for d in found if d.get("path") == "/etc/hostname"]
        assert hit and "fs.read_file" in hit[0]["blockers"], (found, collector.domains, collector._pending)  # type: ignore[operator]
    finally:
        _audit_set(before)
        denials.probe(refresh=True)
