"""Launch overhead of namespaces and resource limits, side by side with bubblewrap.

    .venv/bin/python bench/isolation_bench.py [--rounds 30] [--as-nobody]

Interleaved rounds, median wall time of starting ``/bin/true``:

* ``bare``                    ``/bin/true``
* ``nono run``                plain ``nono run --allow-cwd -- /bin/true``
* ``nono --isolate all``      the same with every namespace (PID 1 init, fresh /proc, lo up)
* ``nono limits``             ``--memory 1G --max-processes 512 --timeout 60s``
* ``nono all + limits``       both
* ``bwrap``                   ``bwrap --unshare-all --ro-bind / / --dev /dev /bin/true``

Reported as ratios (hardware-neutral): each nono variant to plain ``nono run``, and the
*overhead* each isolation adds (variant - plain) against bwrap's overhead (bwrap - bare).
The target: ``--isolate all`` adds no more than bwrap costs.

Until ``cli/main.py`` wires the flags, nono is started through the same launcher the
enforcement tests use (``tests/enforcement/test_isolation.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "enforcement"))


def _launcher(workdir: str) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "nono", "run", "--help"], capture_output=True, text=True, check=False,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if "--isolate" in r.stdout:
        return ["-m", "nono"]
    from test_isolation import _SHIM  # type: ignore[import-not-found]  # the launcher text only

    path = os.path.join(workdir, "nono_iso.py")
    with open(path, "w") as f:
        f.write(_SHIM)
    os.chmod(path, 0o644)
    return [path]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--as-nobody", action="store_true", help="run everything as uid 65534 (needs root)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="nono-isobench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"] if a.as_nobody else []
    py = "/usr/bin/python3" if a.as_nobody else sys.executable
    if a.as_nobody:
        src = os.path.join(work, "src")
        shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(work):
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
    else:
        src = str(REPO / "src")
    # Byte-compile first: a missing .pyc would be charged to whichever variant imports the module.
    subprocess.run([py, "-m", "compileall", "-q", src], check=True, env={k: v for k, v in os.environ.items()
                                                                       if k != "PYTHONDONTWRITEBYTECODE"})
    nono = [*prefix, py, *_launcher(work), "run", "-s", "--allow-cwd"]
    true = shutil.which("true") or "/bin/true"
    variants: dict[str, list[str]] = {
        "bare": [*prefix, true],
        "nono run": [*nono, "--", true],
        "nono --isolate all": [*nono, "--isolate", "all", "--", true],
        "nono limits": [*nono, "--memory", "1G", "--max-processes", "512", "--timeout", "60s", "--", true],
        "nono all + limits": [*nono, "--isolate", "all", "--memory", "1G", "--max-processes", "512", "--timeout",
                              "60s", "--", true],
    }
    bwrap = shutil.which("bwrap")
    if bwrap:
        variants["bwrap"] = [*prefix, bwrap, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", true]
    env = {**os.environ, "PYTHONPATH": src, "HOME": work}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name, cmd in variants.items():  # warm up, and fail loudly if a variant does not work here
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            sys.exit(f"{name} failed ({r.returncode}): {r.stderr.strip()[:400]}")
    times: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(a.rounds):
        for name, cmd in variants.items():
            t = time.perf_counter()
            subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t)
    shutil.rmtree(work, ignore_errors=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    plain, bare = med["nono run"], med["bare"]
    who = "nobody (user namespaces)" if a.as_nobody else f"uid {os.getuid()}"
    print(f"isolation launch overhead, {a.rounds} interleaved rounds, as {who}; medians as ratios")
    print(f"{'variant':<22} {'x plain nono run':>17} {'added / bwrap added':>20}")
    bw_added = med["bwrap"] - bare if bwrap else 0.0
    for name in variants:
        if name in ("bare", "bwrap"):
            continue
        added = med[name] - plain
        rel = f"{added / bw_added:>20.2f}" if bwrap and name != "nono run" and bw_added > 0 else f"{'-':>20}"
        print(f"{name:<22} {med[name] / plain:>17.2f} {rel}")
    if bwrap:
        print(f"{'bwrap':<22} {med['bwrap'] / plain:>17.2f} {'(bwrap / bare = %.2f)' % (med['bwrap'] / bare):>20}")
    print(f"{'bare /bin/true':<22} {bare / plain:>17.2f}")


if __name__ == "__main__":
    main()
