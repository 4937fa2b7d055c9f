#!/usr/bin/env python3
"""Rollback benchmark: nono's snapshots side by side with `cp -a` and nono-py's SnapshotManager.

Run from the repository root::

    .venv/bin/python bench/rollback_bench.py            # generated 20,000 files / 500 MB + site-packages
    .venv/bin/python bench/rollback_bench.py --quick    # 2,000 files / 50 MB, one round
    .venv/bin/python bench/rollback_bench.py --files 5000 --mb 100 --rounds 3 --no-real

For each tree, every round runs (order rotated between rounds, medians reported):

* nono (this package) and nono-py, each in its own process timing only its own calls:
  baseline snapshot; 10 files changed; incremental snapshot; restore of those 10 files
  to the baseline; an unchanged re-snapshot (store growth measured around it);
* `cp -a TREE COPY` (the floor for "copy everything once").

Both snapshotters see the same files: nono runs with ``all_files=True`` and nono-py with
no exclusions, so ``__pycache__`` and ``.gitignore`` rules do not skew the comparison.
Only ratios are targets (nothing is asserted; times are for reading):

  baseline nono / nono-py            <= 1.0
  incremental / baseline (nono)      <= 5 %
  restore of 10 files (nono)         <= 50 ms
  store growth, unchanged re-snapshot ~ 0 bytes of objects (the manifest is reported apart)

nono-py is looked for in /tmp/nonopy/venv (``--nonopy-python`` to change; absent = skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
NONOPY = "/tmp/nonopy/venv/bin/python"
CHANGED = 10


# --------------------------------------------------------------------------- tree helpers
def generate(dest: str, files: int, total_mb: int, seed: int = 7) -> None:
    """``files`` files totalling about ``total_mb`` MB in a two-level tree (sizes skewed like source trees)."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = total_mb * 1_000_000 / sum(weights)
    block = os.urandom(1 << 20)
    for i, w in enumerate(weights):
        d = os.path.join(dest, f"d{i % 50:02d}", f"s{(i // 50) % 20:02d}")
        os.makedirs(d, exist_ok=True)
        size = int(w * scale)
        off = rng.randrange(0, len(block))
        data = (block[off:] + block[:off]) * (size // len(block) + 1)
        with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
            f.write(data[:size])
    time.sleep(0.1)  # let the newest files age past the "racy" window


def regular_files(tree: str) -> list[str]:
    out = []
    for dirpath, dirs, names in os.walk(tree):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p) and os.access(p, os.W_OK):
                out.append(p)
    return out


def change_files(paths: list[str], round_no: int) -> None:
    for p in paths:
        with open(p, "ab") as f:
            f.write(f"\nchanged in round {round_no}\n".encode())


def dir_bytes(path: str) -> int:
    total = 0
    for dirpath, _d, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def object_bytes(path: str) -> int:
    """Bytes of content objects (files below a directory named ``objects``)."""
    total = 0
    for dirpath, _d, names in os.walk(path):
        if "objects" in dirpath.split(os.sep):
            for n in names:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_size
                except OSError:
                    pass
    return total


# --------------------------------------------------------------------------- workers (run in a child process)
def worker_nono(tree: str, store: str, changed: list[str], round_no: int) -> dict[str, object]:
    sys.path.insert(0, SRC)
    from nono.rollback import restore as R
    from nono.rollback import session as S

    r: dict[str, object] = {}
    t = time.perf_counter()
    s = S.begin([tree], command=["bench"], all_files=True, out=lambda _m: None, root=store, strict=True,
                max_files=10_000_000, max_bytes=1 << 40)
    r["baseline_s"] = time.perf_counter() - t
    assert s.baseline is not None
    r["files"] = s.baseline.stats["files"]
    change_files(changed, round_no)
    t = time.perf_counter()
    m = s.snapshot()
    r["incremental_s"] = time.perf_counter() - t
    r["incremental_hashed"] = m.stats["hashed"]
    t = time.perf_counter()
    res = R.restore(s.session_id, 0, root=store)
    r["restore_s"] = time.perf_counter() - t
    r["restored"] = len(res.applied)
    assert res.ok, res.errors
    s.snapshot()  # records the restored state
    before, obj_before = dir_bytes(store), object_bytes(store)
    t = time.perf_counter()
    s.snapshot()
    r["resnapshot_s"] = time.perf_counter() - t
    r["growth_bytes"] = dir_bytes(store) - before
    r["growth_object_bytes"] = object_bytes(store) - obj_before
    s.finish(0)
    return r


def worker_nonopy(tree: str, store: str, changed: list[str], round_no: int) -> dict[str, object]:
    import nono_py  # type: ignore[import-not-found]

    excl = nono_py.ExclusionConfig(use_gitignore=False, exclude_patterns=[], exclude_globs=[], force_include=[])
    mgr = nono_py.SnapshotManager(store, [tree], excl, 10_000_000, 1 << 40)
    r: dict[str, object] = {}
    t = time.perf_counter()
    base = mgr.create_baseline()
    r["baseline_s"] = time.perf_counter() - t
    r["files"] = getattr(base, "file_count", None) or len(getattr(base, "files", {}) or {})
    change_files(changed, round_no)
    t = time.perf_counter()
    mgr.create_incremental()
    r["incremental_s"] = time.perf_counter() - t
    t = time.perf_counter()
    applied = mgr.restore_to(0)
    r["restore_s"] = time.perf_counter() - t
    r["restored"] = len(applied)
    mgr.create_incremental()
    before, obj_before = dir_bytes(store), object_bytes(store)
    t = time.perf_counter()
    mgr.create_incremental()
    r["resnapshot_s"] = time.perf_counter() - t
    r["growth_bytes"] = dir_bytes(store) - before
    r["growth_object_bytes"] = object_bytes(store) - obj_before
    return r


def run_worker(python: str, kind: str, tree: str, changed: list[str], round_no: int) -> dict[str, object] | None:
    store = tempfile.mkdtemp(prefix=f"rb-{kind}-", dir=os.path.dirname(tree))
    try:
        args = [python, os.path.abspath(__file__), "--worker", kind, "--tree", tree, "--store", store,
                "--round", str(round_no), "--changed", json.dumps(changed)]
        p = subprocess.run(args, capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            sys.stderr.write(f"{kind} worker failed:\n{p.stderr[-2000:]}\n")
            return None
        return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        shutil.rmtree(store, ignore_errors=True)


def time_cp(tree: str) -> float:
    dest = tree + ".cp"
    t = time.perf_counter()
    subprocess.run(["cp", "-a", tree, dest], check=True)
    elapsed = time.perf_counter() - t
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


# --------------------------------------------------------------------------- driver
def bench_tree(label: str, tree: str, rounds: int, nonopy: str | None) -> dict[str, object]:
    files = regular_files(tree)
    rng = random.Random(11)
    changed = sorted(rng.sample(files, min(CHANGED, len(files))))
    samples: dict[str, list[dict[str, object]]] = {"nono": [], "nonopy": []}
    cp: list[float] = []
    kinds = ["nono", "cp"] + (["nonopy"] if nonopy else [])
    for rnd in range(rounds):
        order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
        for kind in order:
            if kind == "cp":
                cp.append(time_cp(tree))
                continue
            r = run_worker(sys.executable if kind == "nono" else str(nonopy), kind, tree, changed, rnd)
            if r is not None:
                samples[kind].append(r)

    def med(kind: str, key: str) -> float | None:
        vals = [float(s[key]) for s in samples[kind] if s.get(key) is not None]  # type: ignore[arg-type]
        return statistics.median(vals) if vals else None

    res: dict[str, object] = {"tree": label, "path": tree, "files": len(files), "bytes": sum(os.path.getsize(f) for f in files),
                              "rounds": rounds, "cp_a_s": statistics.median(cp) if cp else None}
    for kind in ("nono", "nonopy"):
        for key in ("baseline_s", "incremental_s", "restore_s", "resnapshot_s", "growth_bytes", "growth_object_bytes",
                    "files", "restored", "incremental_hashed"):
            res[f"{kind}_{key}"] = med(kind, key)
    nb, pb, cpa = res["nono_baseline_s"], res["nonopy_baseline_s"], res["cp_a_s"]
    res["ratio_baseline_vs_nonopy"] = (nb / pb) if isinstance(nb, float) and isinstance(pb, float) else None
    res["ratio_baseline_vs_cp_a"] = (nb / cpa) if isinstance(nb, float) and isinstance(cpa, float) else None
    ni = res["nono_incremental_s"]
    res["ratio_incremental_vs_baseline"] = (ni / nb) if isinstance(ni, float) and isinstance(nb, float) else None
    return res


def fmt_s(v: object) -> str:
    return "-" if not isinstance(v, (int, float)) else (f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")


def fmt_r(v: object, pct: bool = False) -> str:
    return "-" if not isinstance(v, (int, float)) else (f"{v * 100:.1f} %" if pct else f"{v:.2f}x")


def print_table(results: list[dict[str, object]]) -> None:
    rows = [
        ("files / bytes", lambda r: f"{r['files']:,} / {int(r['bytes']) / 1e6:.0f} MB", None),  # type: ignore[call-overload]
        ("baseline: nono", lambda r: fmt_s(r["nono_baseline_s"]), None),
        ("baseline: nono-py", lambda r: fmt_s(r["nonopy_baseline_s"]), None),
        ("baseline: cp -a", lambda r: fmt_s(r["cp_a_s"]), None),
        ("  nono / nono-py", lambda r: fmt_r(r["ratio_baseline_vs_nonopy"]), "<= 1.0x"),
        ("  nono / cp -a", lambda r: fmt_r(r["ratio_baseline_vs_cp_a"]), "(info)"),
        ("incremental (10 changed): nono", lambda r: fmt_s(r["nono_incremental_s"]), None),
        ("incremental: nono-py", lambda r: fmt_s(r["nonopy_incremental_s"]), None),
        ("  incremental / baseline (nono)", lambda r: fmt_r(r["ratio_incremental_vs_baseline"], pct=True), "<= 5 %"),
        ("restore 10 files: nono", lambda r: fmt_s(r["nono_restore_s"]), "<= 50 ms"),
        ("restore 10 files: nono-py", lambda r: fmt_s(r["nonopy_restore_s"]), None),
        ("unchanged re-snapshot: nono", lambda r: fmt_s(r["nono_resnapshot_s"]), None),
        ("  store growth, objects (nono)", lambda r: f"{r['nono_growth_object_bytes']} B", "~0 B"),
        ("  store growth, total (nono)", lambda r: f"{r['nono_growth_bytes']} B", "(manifest)"),
        ("  store growth, total (nono-py)", lambda r: f"{r['nonopy_growth_bytes']} B", None),
    ]
    w = 34
    head = f"{'':<{w}}" + "".join(f"{str(r['tree']):>22}" for r in results) + f"{'target':>12}"
    print(head)
    print("-" * len(head))
    for name, fn, target in rows:
        print(f"{name:<{w}}" + "".join(f"{fn(r):>22}" for r in results) + f"{target or '':>12}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 files / 50 MB, one round")
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--mb", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--real", default=sysconfig.get_paths()["purelib"], help="a real tree (default: site-packages)")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--nonopy-python", default=NONOPY)
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the trees and stores go (same filesystem)")
    ap.add_argument("--worker", choices=["nono", "nonopy"], help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--changed", default="[]", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        fn = worker_nono if a.worker == "nono" else worker_nonopy
        print(json.dumps(fn(a.tree, a.store, json.loads(a.changed), a.round)))
        return 0
    files = a.files or (2000 if a.quick else 20000)
    mb = a.mb or (50 if a.quick else 500)
    rounds = a.rounds or (1 if a.quick else 3)
    nonopy: str | None = a.nonopy_python if os.access(a.nonopy_python, os.X_OK) else None
    if nonopy and subprocess.run([nonopy, "-c", "import nono_py"], capture_output=True).returncode != 0:
        nonopy = None
    results = []
    with tempfile.TemporaryDirectory(prefix="nono-rollback-bench-", dir=a.workdir) as tmp:
        gen = os.path.join(tmp, "generated")
        t = time.perf_counter()
        generate(gen, files, mb)
        sys.stderr.write(f"generated {files:,} files / {mb} MB in {time.perf_counter() - t:.1f} s\n")
        results.append(bench_tree(f"generated {files // 1000}k", gen, rounds, nonopy))
        if not a.no_real and os.path.isdir(a.real):
            real = os.path.join(tmp, "real")
            shutil.copytree(a.real, real, symlinks=True)  # a private copy: restores must not touch the venv
            time.sleep(0.1)
            results.append(bench_tree("site-packages", real, rounds, nonopy))
    print_table(results)
    if not nonopy:
        print(f"(nono-py not found at {a.nonopy_python}: its columns are empty)")
    print(json.dumps({"bench": "rollback", "nonopy": bool(nonopy), "results": results}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
