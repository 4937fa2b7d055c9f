"""Without Landlock nono must refuse, loudly, and never run the program unsandboxed.

The kernel here has Landlock, so the missing ABI is simulated by seeding the
ABI cache (this tests nono's error path, not the kernel).
"""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import nono.kernel.landlock as ll
ll._abi_cache = 0
from nono.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_run_refuses_without_landlock(tmp_path):
    marker = tmp_path / "ran"
    r = subprocess.run([sys.executable, "-c", CODE, "run", "-s", "--allow-cwd", "--", "/bin/touch", str(marker)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 126
    assert "Sandbox initialization failed: Landlock not available" in r.stderr
    assert not marker.exists()


def test_setup_reports_missing_landlock():
    r = subprocess.run([sys.executable, "-c", CODE, "setup", "--check-only"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Landlock NOT available" in r.stdout
