"""A sandboxed program must not be able to widen the *next* sandbox, or run code in nono itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nono

PKG = Path(nono.__file__).resolve().parent


def test_nono_installation_stays_read_only_inside_a_write_grant(root_world):
    """The package (and sys.path) lie inside the grant: writing there would run code in the next nono."""
    grant = PKG.parent  # src/ for an editable install, site-packages otherwise
    probe = PKG / "zz_sandbox_probe.py"
    try:
        r = root_world.nono("run", "-s", "--allow", str(grant), "--", "/bin/sh", "-c",
                            f"echo 'raise SystemExit(99)' > {probe}; echo rc=$?; cat {PKG / '__init__.py'} > /dev/null; echo read=$?")
        assert not probe.exists(), "the sandbox wrote into nono's own package"
        assert "read=0" in r.stdout
    finally:
        probe.unlink(missing_ok=True)


def test_the_warning_explains_the_decomposition(root_world):
    r = root_world.nono("run", "--allow", str(PKG.parent), "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert "nono's own installation" in r.stderr


def test_rewritten_pyvenv_cfg_does_not_widen_the_next_session(world):
    """H1: a venv inside the project names `home = /`; the next session must not grant /."""
    venv = world.work / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /\ninclude-system-site-packages = false\n")
    py = os.path.realpath(world.user.python)
    (venv / "bin" / "python").symlink_to(py)
    for p in (venv, venv / "bin", venv / "pyvenv.cfg"):
        os.lchown(p, world.user.uid, world.user.uid)
    secret = world.outside / "secret.txt"
    r = world.nono("run", "-s", "--allow-cwd", "--", str(venv / "bin" / "python"), "-c",
                   f"print(open({str(secret)!r}).read())")
    assert "outside-secret" not in r.stdout
    assert r.returncode != 0


def test_shebang_naming_a_secret_grants_nothing(world):
    """A script in a writable grant names a non-executable file as its interpreter."""
    script = world.work / "tool.sh"
    script.write_text(f"#!{world.outside / 'secret.txt'}\n")
    script.chmod(0o755)
    os.chown(script, world.user.uid, world.user.uid)
    r = world.nono("run", "-s", "--allow-cwd", "--", "/bin/sh", "-c", f"cat {world.outside / 'secret.txt'}; ./tool.sh")
    assert "outside-secret" not in r.stdout
    assert sys.platform == "linux"
