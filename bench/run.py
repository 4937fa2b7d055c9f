#!/usr/bin/env python3
"""nono benchmark: launch overhead, per-call API overhead, supervisor memory, import cost.

Run from the repository root with the project's venv::

    .venv/bin/python bench/run.py            # table + JSON summary on stdout
    .venv/bin/python bench/run.py --json     # also write bench/results/latest.json
    .venv/bin/python bench/run.py --check    # exit 1 if a target ratio is missed

Everything is reported as a RATIO of two things measured side by side in the same
run (interleaved A,B,A,B... with the order rotated every round); absolute times are
printed for reading only and are never asserted. See bench/README.md.

Targets (from the issue):
  (a) launch   nono run -s --allow DIR -- /bin/true  /  <venv python> -c pass   <= 1.5
  (b) per call nono.run(["/bin/true"], policy=...)   /  subprocess.run(...)     <= 2.0
  (c) memory   peak RSS (VmHWM) of the nono supervisor                          <= 30 MiB
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
NONO = os.path.join(VENV_BIN, "nono")
RESULTS = os.path.join(ROOT, "bench", "results")

TARGET_LAUNCH = 1.5
TARGET_PER_CALL = 2.0
TARGET_RSS_MIB = 30.0


# --------------------------------------------------------------------------- helpers

def nono_interpreter() -> str:
    """The interpreter named by the console script's shebang (what `nono` really runs)."""
    try:
        with open(NONO, "rb") as f:
            first = f.readline().decode().strip()
        if first.startswith("#!"):
            interp = first[2:].split()[0]
            if os.access(interp, os.X_OK):
                return interp
    except OSError:
        pass
    return os.path.join(VENV_BIN, "python3.11")


PY = nono_interpreter()          # e.g. /work/main/.venv/bin/python3.11 (venv site)
PY_REAL = os.path.realpath(sys.executable)


def bench_env() -> dict[str, str]:
    """Environment for every timed command: .pyc files are read AND written.

    PYTHONDONTWRITEBYTECODE would make every import recompile a module that has
    no cached .pyc; we compileall first and drop it so the timings are what a
    user with a normal install sees.  Import-time profiling variables are
    dropped too so only the runs that ask for -X importtime pay for it.
    """
    env = dict(os.environ)
    for var in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "PYTHONVERBOSE", "PYTHONDEVMODE",
                "PYTHONTRACEMALLOC", "PYTHONMALLOCSTATS", "PYTHONBREAKPOINT"):
        env.pop(var, None)
    return env


ENV = bench_env()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "median": median(xs), "min": min(xs) if xs else float("nan"),
            "p25": pct(xs, 0.25), "p75": pct(xs, 0.75), "max": max(xs) if xs else float("nan")}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None or r != r else f"{r:.2f}x"


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)), flush=True)


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    sys.stdout.flush()


def run_capture(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          **kw)  # type: ignore[call-overload]


_DEVNULL = os.open(os.devnull, os.O_RDWR)
_FILE_ACTIONS = [(os.POSIX_SPAWN_DUP2, _DEVNULL, 0), (os.POSIX_SPAWN_DUP2, _DEVNULL, 1),
                 (os.POSIX_SPAWN_DUP2, _DEVNULL, 2)]


def spawn_ms(argv: list[str]) -> tuple[float, int]:
    """Wall time of one posix_spawn + waitpid of argv (stdio on /dev/null), in ms."""
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, ENV, file_actions=_FILE_ACTIONS)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, os.waitstatus_to_exitcode(status)


# --------------------------------------------------------------------------- setup

def prepare() -> dict[str, object]:
    """compileall src (so .pyc exist even under PYTHONDONTWRITEBYTECODE) and check they are used."""
    r = run_capture([PY, "-m", "compileall", "-q", SRC])
    info: dict[str, object] = {"compileall_rc": r.returncode}
    # Which modules on the `nono run` path are compiled from source at start-up?
    d = tempfile.mkdtemp(prefix="nono-bench-pyc-")
    try:
        v = run_capture([PY, "-v", NONO, "run", "-s", "--allow", d, "--", "/bin/true"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    from_src = [ln.split("'")[1] for ln in v.stderr.splitlines()
                if ln.startswith("# code object from") and not ln.rstrip().endswith(".pyc'")]
    from_src = [p for p in from_src if os.path.realpath(p) != os.path.realpath(NONO)]  # __main__ script: never cached
    info["modules_compiled_from_source"] = from_src
    return info


def machine_info() -> dict[str, object]:
    def out(argv: list[str]) -> str:
        try:
            r = run_capture(argv, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    abi = out([PY, "-c", "from nono.kernel.landlock import abi_version; print(abi_version())"])
    git = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = bool(out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]))
    return {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "loadavg_start": os.getloadavg(),
        "python": out([PY, "-c", "import sys; print(sys.version.replace(chr(10), ' '))"]),
        "python_interpreter": PY,
        "python_binary": os.path.realpath(PY),
        "bench_python_binary": PY_REAL,
        "landlock_abi": int(abi) if abi.isdigit() else abi,
        "git": git + ("-dirty" if dirty else ""),
        "hyperfine": out(["hyperfine", "--version"]) if shutil.which("hyperfine") else None,
        "bwrap": out(["bwrap", "--version"]) if shutil.which("bwrap") else None,
        "firejail": out(["firejail", "--version"]) if shutil.which("firejail") else None,
    }


# --------------------------------------------------------------------------- (a) launch

def launch_commands(d: str) -> list[tuple[str, list[str]]]:
    cmds = [
        ("/bin/true", ["/bin/true"]),
        ("python -c pass", [PY, "-c", "pass"]),
        ("nono run", [NONO, "run", "-s", "--allow", d, "--", "/bin/true"]),
        ("nono wrap", [NONO, "wrap", "-s", "--allow", d, "--", "/bin/true"]),
    ]
    if shutil.which("bwrap"):
        cmds.append(("bwrap", [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "/bin/true"]))
    if shutil.which("firejail"):
        cmds.append(("firejail", [shutil.which("firejail") or "firejail", "--quiet", "--noprofile", "/bin/true"]))
    return cmds


def bench_launch(d: str, rounds: int, warmup: int) -> dict[str, object]:
    cmds = []
    skipped = {}
    for name, argv in launch_commands(d):
        r = run_capture(argv, timeout=60)
        if r.returncode != 0:
            skipped[name] = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}"
            if name.startswith("nono"):
                print(f"!! {name} fails: {skipped[name]}", file=sys.stderr)
            continue
        cmds.append((name, argv))
    samples: dict[str, list[float]] = {n: [] for n, _ in cmds}
    pairs: dict[str, list[float]] = {}  # per-round ratio vs python -c pass
    bad: dict[str, int] = {}
    gc.disable()
    try:
        for _ in range(warmup):
            for _, argv in cmds:
                spawn_ms(argv)
        k = len(cmds)
        for i in range(rounds):
            order = cmds[i % k:] + cmds[:i % k]          # rotate: every command takes every slot
            this: dict[str, float] = {}
            for name, argv in order:
                ms, rc = spawn_ms(argv)
                if rc != 0:
                    bad[name] = bad.get(name, 0) + 1
                samples[name].append(ms)
                this[name] = ms
            base = this.get("python -c pass")
            if base:
                for name, ms in this.items():
                    pairs.setdefault(name, []).append(ms / base)
    finally:
        gc.enable()
    stats = {n: summary(xs) for n, xs in samples.items()}
    return {"commands": {n: shlex.join(a) for n, a in cmds}, "stats": stats, "skipped": skipped,
            "nonzero_exits": bad,
            "paired_ratio_vs_python": {n: median(v) for n, v in pairs.items()},
            "samples_ms": samples}


def print_launch(res: dict[str, object]) -> None:
    stats = res["stats"]  # type: ignore[index]
    py = stats.get("python -c pass", {}).get("median")  # type: ignore[union-attr]
    nono = stats.get("nono run", {}).get("median")  # type: ignore[union-attr]
    rows = []
    for name, s in stats.items():  # type: ignore[union-attr]
        rows.append([name, f"{s['median']:.1f}", f"{s['p25']:.1f}-{s['p75']:.1f}", f"{s['min']:.1f}",
                     fmt_ratio(ratio(s["median"], py) if py else None),
                     fmt_ratio(res["paired_ratio_vs_python"].get(name)),  # type: ignore[index]
                     fmt_ratio(ratio(nono, s["median"]) if nono else None)])
    table(["command", "median ms", "IQR ms", "min ms", "vs py -c pass", "paired", "nono run / this"], rows)
    for name, why in res["skipped"].items():  # type: ignore[union-attr]
        print(f"  skipped {name}: {why}")
    for name, n in res["nonzero_exits"].items():  # type: ignore[union-attr]
        print(f"  !! {name}: {n} timed runs exited non-zero")


def bench_hyperfine(d: str, runs: int, warmup: int) -> dict[str, object] | None:
    hf = shutil.which("hyperfine")
    if not hf:
        return None
    cmds = [(n, a) for n, a in launch_commands(d) if n != "/bin/true"]  # /bin/true is below hyperfine's resolution
    fd, path = tempfile.mkstemp(prefix="nono-bench-hf-", suffix=".json")
    os.close(fd)
    argv = [hf, "-N", "--style", "basic", "--warmup", str(warmup), "--runs", str(runs), "--export-json", path]
    for n, a in cmds:
        argv += ["-n", n, shlex.join(a)]
    r = subprocess.run(argv, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    out = {"stdout": r.stdout, "rc": r.returncode, "results": {}}
    try:
        with open(path) as f:
            data = json.load(f)
        for res in data.get("results", []):
            name = res["command"]
            for n, a in cmds:  # hyperfine 1.15 exports the command, not the -n name
                if shlex.join(a) == name:
                    name = n
            out["results"][name] = {"median_ms": res["median"] * 1e3, "mean_ms": res["mean"] * 1e3,  # type: ignore[index]
                                    "stddev_ms": (res.get("stddev") or 0) * 1e3, "min_ms": res["min"] * 1e3}
    except (OSError, ValueError, KeyError):
        out["stderr"] = r.stderr
    finally:
        os.unlink(path)
    return out


# --------------------------------------------------------------------------- (b) per call

PER_CALL_WORKER = r"""
import gc, json, os, subprocess, sys, time
DIR, N, WARM, BUDGET = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
out = {"available": False}
t0 = time.perf_counter()
try:
    import nono
    policy = nono.Policy().allow(DIR)
    nrun = nono.run
except (ImportError, AttributeError) as exc:
    out["reason"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out)); sys.exit(0)
t_import = time.perf_counter() - t0
argv = ["/bin/true"]
try:
    t0 = time.perf_counter()
    r = nrun(argv, policy=policy)
    first = time.perf_counter() - t0
    if getattr(r, "returncode", None) != 0:
        raise RuntimeError(f"first nono.run returned {getattr(r, 'returncode', r)!r}")
    for _ in range(WARM):
        nrun(argv, policy=policy); subprocess.run(argv)
    a, b, fails = [], [], 0
    gc.disable()
    deadline = time.perf_counter() + BUDGET
    for i in range(N):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            t = time.perf_counter_ns()
            if which == 0:
                rc = nrun(argv, policy=policy).returncode
            else:
                rc = subprocess.run(argv).returncode
            dt = (time.perf_counter_ns() - t) / 1e6
            (a if which == 0 else b).append(dt)
            fails += rc != 0
        if i >= 20 and time.perf_counter() > deadline:
            break
    gc.enable()
except Exception as exc:
    out["reason"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out)); sys.exit(0)
hwm = 0
with open("/proc/self/status") as f:
    for ln in f:
        if ln.startswith("VmHWM:"):
            hwm = int(ln.split()[1])
out.update(available=True, import_ms=t_import * 1e3, first_call_ms=first * 1e3, nono_ms=a, subprocess_ms=b,
           nonzero=fails, worker_vmhwm_kib=hwm)
print(json.dumps(out))
"""


def bench_per_call(d: str, n: int, warmup: int, budget: float) -> dict[str, object]:
    r = run_capture([PY, "-c", PER_CALL_WORKER, d, str(n), str(warmup), str(budget)], timeout=budget + 120)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"available": False, "reason": f"worker failed (exit {r.returncode}): {r.stderr.strip()[-500:]}"}
    if res.get("available"):
        a, b = res.pop("nono_ms"), res.pop("subprocess_ms")
        res["nono"] = summary(a)
        res["subprocess"] = summary(b)
        res["ratio"] = ratio(median(a), median(b))
        res["paired_ratio"] = median([x / y for x, y in zip(a, b)])
        res["samples_ms"] = {"nono": a, "subprocess": b}
    return res


def print_per_call(res: dict[str, object]) -> None:
    if not res.get("available"):
        print(f"nono.run: not available ({res.get('reason')})")
        return
    rows = []
    for name in ("subprocess", "nono"):
        s = res[name]  # type: ignore[index]
        rows.append([f"{name}.run(['/bin/true'])", str(s["n"]), f"{s['median']:.2f}", f"{s['p25']:.2f}-{s['p75']:.2f}",
                     f"{s['min']:.2f}"])
    table(["call", "n", "median ms", "IQR ms", "min ms"], rows)
    print(f"nono.run / subprocess.run: {fmt_ratio(res['ratio'])} (paired {fmt_ratio(res['paired_ratio'])})"  # type: ignore[arg-type]
          f"   [import nono {res['import_ms']:.1f} ms, first call (warm-up, excluded) {res['first_call_ms']:.1f} ms,"
          f" worker VmHWM {res['worker_vmhwm_kib'] / 1024:.1f} MiB]")
    if res.get("nonzero"):
        print(f"  !! {res['nonzero']} timed calls returned non-zero")


# --------------------------------------------------------------------------- (c) memory

def _status(pid: int) -> dict[str, int]:
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(("VmHWM:", "VmRSS:")):
                    vals[ln.split(":")[0]] = int(ln.split()[1])
    except OSError:
        pass
    return vals


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def peak_rss(argv: list[str], expect_child: bool) -> dict[str, object]:
    """Poll VmHWM of argv's process (the pid we spawn) until it exits."""
    p = subprocess.Popen(argv, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    hwm = rss = 0
    hwm_with_child = 0
    samples = 0
    while p.poll() is None:
        st = _status(p.pid)
        if "VmHWM" in st:
            samples += 1
            hwm = max(hwm, st["VmHWM"])
            rss = max(rss, st.get("VmRSS", 0))
            if expect_child and _children(p.pid):
                hwm_with_child = max(hwm_with_child, st["VmHWM"])
        time.sleep(0.003)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""  # type: ignore[union-attr]
    if p.stderr:
        p.stderr.close()
    return {"vmhwm_kib": hwm, "vmrss_max_kib": rss, "vmhwm_while_child_kib": hwm_with_child if expect_child else None,
            "samples": samples, "rc": p.returncode, "stderr": err.strip()[:300]}


def bench_rss(d: str, reps: int) -> dict[str, object]:
    nono = [peak_rss([NONO, "run", "-s", "--allow", d, "--", "/bin/sleep", "0.5"], True) for _ in range(reps)]
    py = [peak_rss([PY, "-c", "import time; time.sleep(0.5)"], False) for _ in range(reps)]
    ok = [x for x in nono if x["rc"] == 0 and x["vmhwm_while_child_kib"]]
    return {
        "nono_run": nono, "python_sleep": py,
        "nono_vmhwm_mib_max": max((x["vmhwm_kib"] for x in ok), default=0) / 1024 if ok else None,  # type: ignore[type-var]
        "nono_vmhwm_mib_median": median([x["vmhwm_kib"] / 1024 for x in ok]) if ok else None,  # type: ignore[operator]
        "python_vmhwm_mib_median": median([x["vmhwm_kib"] / 1024 for x in py]),  # type: ignore[operator]
    }


def print_rss(res: dict[str, object]) -> None:
    def mib(k: object) -> str:
        return f"{int(k) / 1024:.1f}" if k else "-"  # type: ignore[call-overload]
    rows = []
    for label, key in (("nono run -- /bin/sleep 0.5 (supervisor)", "nono_run"),
                       ("python -c 'time.sleep(0.5)'", "python_sleep")):
        for i, x in enumerate(res[key]):  # type: ignore[index]
            rows.append([label if i == 0 else "", mib(x["vmhwm_kib"]), mib(x["vmrss_max_kib"]),
                         mib(x["vmhwm_while_child_kib"]) if key == "nono_run" else "", str(x["samples"]), str(x["rc"])])
    table(["process", "VmHWM MiB", "max VmRSS MiB", "HWM w/ child MiB", "samples", "rc"], rows)
    if res["nono_vmhwm_mib_max"] is None:
        print("  !! could not observe the supervisor while its child was running:",
              [x["stderr"] for x in res["nono_run"]])  # type: ignore[union-attr]
    else:
        print(f"supervisor peak RSS {res['nono_vmhwm_mib_max']:.1f} MiB (max of runs); "
              f"python -c sleep {res['python_vmhwm_mib_median']:.1f} MiB; "
              f"ratio {fmt_ratio(ratio(res['nono_vmhwm_mib_max'], res['python_vmhwm_mib_median']))}")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- import time

def importtime(argv: list[str]) -> list[tuple[str, int, int, int]]:
    """[(module, self_us, cumulative_us, depth)] in -X importtime order (children before parents)."""
    r = run_capture([PY, "-X", "importtime"] + argv, timeout=60)
    rows = []
    for ln in r.stderr.splitlines():
        if not ln.startswith("import time:") or "self [us]" in ln:
            continue
        try:
            self_us, cum, name = ln[len("import time:"):].split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            rows.append((name.strip(), int(self_us), int(cum), depth))
        except ValueError:
            continue
    return rows


def _importers(rows: list[tuple[str, int, int, int]]) -> dict[str, str]:
    """module -> the module that first imported it (from the importtime tree)."""
    parent: dict[str, str] = {}
    for i, (name, _, _, depth) in enumerate(rows):
        for name2, _, _, d2 in rows[i + 1:]:
            if d2 < depth:
                parent[name] = name2
                break
        else:
            parent[name] = "<main>"
    return parent


def import_profile(argv: list[str], reps: int) -> dict[str, object]:
    runs = [importtime(argv) for _ in range(reps)]
    selfs: dict[str, list[int]] = {}
    cums: dict[str, list[int]] = {}
    for rows in runs:
        for name, s, c, _ in rows:
            selfs.setdefault(name, []).append(s)
            cums.setdefault(name, []).append(c)
    order = [r[0] for r in runs[-1]] if runs else []
    return {"modules": order, "self_us": {m: median(v) for m, v in selfs.items()},
            "cum_us": {m: median(v) for m, v in cums.items()},
            "total_self_us": median([sum(r[1] for r in rows) for rows in runs]),
            "importer": _importers(runs[-1]) if runs else {}}


def bench_imports(d: str, reps: int) -> dict[str, object]:
    base = import_profile(["-c", "pass"], reps)
    imp_nono = import_profile(["-c", "import nono"], reps)
    imp_cli = import_profile(["-c", "import nono.cli.main"], reps)
    run = import_profile([NONO, "run", "-s", "--allow", d, "--", "/bin/true"], reps)
    wrap = import_profile([NONO, "wrap", "-s", "--allow", d, "--", "/bin/true"], reps)
    base_set = set(base["modules"])  # type: ignore[arg-type]

    def extra(p: dict[str, object]) -> dict[str, object]:
        mods = [m for m in p["modules"] if m not in base_set]  # type: ignore[union-attr]
        self_us = p["self_us"]
        own = [m for m in mods if m == "nono" or m.startswith("nono.")]
        std = [m for m in mods if m not in own]
        return {
            "n_modules": len(p["modules"]),  # type: ignore[arg-type]
            "n_extra": len(mods),
            "extra_self_us": sum(self_us[m] for m in mods),  # type: ignore[index]
            "nono_self_us": sum(self_us[m] for m in own),  # type: ignore[index]
            "stdlib_self_us": sum(self_us[m] for m in std),  # type: ignore[index]
            "total_self_us": p["total_self_us"],
            "extra_modules": mods,
            "stdlib_extra": std,
            "top": sorted(({"module": m, "self_us": self_us[m], "cum_us": p["cum_us"][m],  # type: ignore[index]
                            "imported_by": p["importer"].get(m)} for m in mods),  # type: ignore[union-attr]
                          key=lambda x: -x["self_us"])[:10],
        }

    run["extra_set"] = set(run["modules"]) - base_set  # type: ignore[arg-type]
    pulls: dict[str, list[str]] = {}
    for m, par in run["importer"].items():  # type: ignore[union-attr]
        while par and par != "<main>":
            if m in run["extra_set"]:  # type: ignore[operator]
                pulls.setdefault(par, []).append(m)
            par = run["importer"].get(par)  # type: ignore[union-attr]
    run["pulls_in"] = pulls
    isolated = bench_isolated_imports(run, reps)
    return {
        "reps": reps,
        "isolated_stdlib_imports": isolated,
        "baseline_pass": {"n_modules": len(base["modules"]), "total_self_us": base["total_self_us"]},  # type: ignore[arg-type]
        "import_nono": {**extra(imp_nono), "cum_us_nono": imp_nono["cum_us"].get("nono")},  # type: ignore[union-attr]
        "import_cli_main": {**extra(imp_cli), "cum_us_cli_main": imp_cli["cum_us"].get("nono.cli.main")},  # type: ignore[union-attr]
        "nono_run": extra(run),
        "nono_wrap": extra(wrap),
    }


ISOLATED_WORKER = r"""
import sys, time
t = time.perf_counter()
__import__(sys.argv[1])
sys.stdout.write("%f\n" % ((time.perf_counter() - t) * 1e3))
"""


def bench_isolated_imports(run_profile: dict[str, object], reps: int) -> list[dict[str, object]]:
    """Wall cost (no -X importtime) of each non-nono module that nono's code imports directly.

    Each is imported alone in a fresh `python -c` (only sys/time loaded before), so the number
    is what removing that import from the start-up path would save, give or take shared deps.
    """
    importer = run_profile["importer"]  # type: ignore[index]
    roots = [m for m in run_profile["modules"]  # type: ignore[union-attr]
             if not (m == "nono" or m.startswith("nono.")) and m in run_profile["extra_set"]  # type: ignore[operator]
             and (importer.get(m, "").startswith("nono") or importer.get(m) == "<main>")]  # type: ignore[union-attr]
    out = []
    for m in roots:
        ts = []
        for _ in range(reps):
            r = run_capture([PY, "-c", ISOLATED_WORKER, m], timeout=60)
            try:
                ts.append(float(r.stdout.strip()))
            except ValueError:
                break
        if ts:
            out.append({"module": m, "imported_by": importer.get(m), "wall_ms": median(ts),  # type: ignore[union-attr]
                        "pulls_in": run_profile["pulls_in"].get(m, [])})  # type: ignore[union-attr]
    return sorted(out, key=lambda x: -x["wall_ms"])  # type: ignore[operator,return-value]


def print_imports(res: dict[str, object]) -> None:
    b = res["baseline_pass"]
    print(f"(-X importtime, median of {res['reps']} fresh processes; importtime itself inflates these numbers)")
    rows = [["python -c pass (baseline)", str(b["n_modules"]), "-", f"{b['total_self_us'] / 1e3:.2f}", "-", "-", "-"]]  # type: ignore[index]
    for label, key in (("python -c 'import nono'", "import_nono"), ("python -c 'import nono.cli.main'", "import_cli_main"),
                       ("nono run -s --allow DIR -- /bin/true", "nono_run"), ("nono wrap -s --allow DIR -- /bin/true", "nono_wrap")):
        x = res[key]  # type: ignore[index]
        rows.append([label, str(x["n_modules"]), str(x["n_extra"]), f"{x['total_self_us'] / 1e3:.2f}",
                     f"{x['extra_self_us'] / 1e3:.2f}", f"{x['nono_self_us'] / 1e3:.2f}", f"{x['stdlib_self_us'] / 1e3:.2f}"])
    table(["process", "modules", "extra", "all imports ms", "extra ms", "nono.* ms", "stdlib ms"], rows)
    x = res["import_nono"]  # type: ignore[index]
    y = res["import_cli_main"]  # type: ignore[index]
    print(f"import nono: cumulative {x['cum_us_nono'] / 1e3:.2f} ms;  import nono.cli.main: cumulative "
          f"{y['cum_us_cli_main'] / 1e3:.2f} ms (+ nono package {x['cum_us_nono'] / 1e3:.2f} ms)")
    r = res["nono_run"]  # type: ignore[index]
    print(f"\n`nono run` imports {r['n_modules']} modules, {r['n_extra']} more than `python -c pass`;"
          f" stdlib modules it adds: {', '.join(r['stdlib_extra']) or '-'}")
    print("top 10 self-time imports added by `nono run`:")
    table(["module", "self ms", "cumulative ms", "imported by"],
          [[t["module"], f"{t['self_us'] / 1e3:.2f}", f"{t['cum_us'] / 1e3:.2f}", str(t["imported_by"])] for t in r["top"]])
    iso = res.get("isolated_stdlib_imports") or []
    if iso:
        print("\nnon-nono modules that nono code imports directly, each imported alone in a fresh interpreter"
              " (perf_counter, no importtime):")
        table(["module", "wall ms", "imported by", "pulls in (not in python -c pass)"],
              [[x["module"], f"{x['wall_ms']:.2f}", str(x["imported_by"]),  # type: ignore[index]
                (", ".join(x["pulls_in"][:8]) + (" ..." if len(x["pulls_in"]) > 8 else "")) or "-"]  # type: ignore[index]
               for x in iso])


# --------------------------------------------------------------------------- in-process breakdown

# Only builtin modules (sys, time) before the measurements: importing json here would
# pull in re/enum/functools early and hide their cost from the lazy-import figure.
BREAKDOWN_WORKER = r"""
import sys, time
t0 = time.perf_counter()
from nono.cli.main import main
t1 = time.perf_counter()
argv = ["run", "-s", "--allow", sys.argv[1], "--", "/bin/true"]
rc1 = main(argv)
t2 = time.perf_counter()
rc2 = main(argv)
t3 = time.perf_counter()
n = len(sys.modules)
import json
print(json.dumps({"import_cli_ms": (t1 - t0) * 1e3, "first_main_ms": (t2 - t1) * 1e3,
                  "warm_main_ms": (t3 - t2) * 1e3, "rc": [rc1, rc2], "sys_modules": n}))
"""


PROFILE_WORKER = r"""
import cProfile, io, os, pstats, sys
from nono.cli.main import main
argv = ["run", "-s", "--allow", sys.argv[1], "--", "/bin/true"]
main(argv)                                   # lazy imports and one-time caches out of the way
pid = os.getpid()
prof = cProfile.Profile()
n = int(sys.argv[2])
prof.enable()
for _ in range(n):
    main(argv)
prof.disable()
if os.getpid() != pid:                       # a forked child that came back: never print twice
    os._exit(0)
st = pstats.Stats(prof)
rows = []
root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["nono"].__file__)))
for (fn, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
    where = os.path.relpath(fn, root) if fn.startswith(root) else (os.path.basename(fn) if fn != "~" else "")
    rows.append({"func": f"{where}:{line}({func})" if where else func, "calls": nc / n,
                 "tottime_ms": tt * 1e3 / n, "cumtime_ms": ct * 1e3 / n})
import json
print(json.dumps(sorted(rows, key=lambda r: -r["tottime_ms"])[:14]))
"""


def bench_profile(d: str, calls: int) -> list[dict[str, object]] | str:
    r = run_capture([PY, "-c", PROFILE_WORKER, d, str(calls)], timeout=120)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (ValueError, IndexError):
        return f"exit {r.returncode}: {r.stderr.strip()[-300:]}"


def print_profile(rows: list[dict[str, object]] | str, calls: int) -> None:
    if isinstance(rows, str):
        print(f"profile failed: {rows}")
        return
    print(f"\nwarm main(run) under cProfile, per call (mean of {calls} calls; cProfile inflates Python-heavy code):")
    table(["function (top by self time)", "calls", "self ms", "cumulative ms"],
          [[str(r["func"])[:90], f"{r['calls']:g}", f"{r['tottime_ms']:.3f}", f"{r['cumtime_ms']:.3f}"] for r in rows])


def bench_breakdown(d: str, reps: int) -> dict[str, object]:
    runs = []
    for _ in range(reps):
        r = run_capture([PY, "-c", BREAKDOWN_WORKER, d], timeout=60)
        try:
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {"error": f"exit {r.returncode}: {r.stderr.strip()[-300:]}"}
    out = {k: median([x[k] for x in runs]) for k in ("import_cli_ms", "first_main_ms", "warm_main_ms")}
    out["lazy_import_ms"] = out["first_main_ms"] - out["warm_main_ms"]
    out["sys_modules"] = runs[-1]["sys_modules"]
    out["rc"] = runs[-1]["rc"]
    return out


def print_breakdown(res: dict[str, object], launch: dict[str, object]) -> None:
    if "error" in res:
        print(f"breakdown failed: {res['error']}")
        return
    st = launch["stats"]  # type: ignore[index]
    py = st.get("python -c pass", {}).get("median")  # type: ignore[union-attr]
    nr = st.get("nono run", {}).get("median")  # type: ignore[union-attr]
    tr = st.get("/bin/true", {}).get("median")  # type: ignore[union-attr]
    rows = [["import nono.cli.main (eager imports)", f"{res['import_cli_ms']:.2f}"],
            ["main(run) lazy imports + one-time caches (1st call - 2nd call)", f"{res['lazy_import_ms']:.2f}"],
            ["main(run) work, warm (2nd call: plan, fork, landlock, seccomp, exec, wait)", f"{res['warm_main_ms']:.2f}"]]
    if py and nr:
        acc = res["import_cli_ms"] + res["first_main_ms"]  # type: ignore[operator]
        rows.insert(0, ["interpreter start-up + exit (python -c pass)", f"{py:.2f}"])
        rows.append(["unaccounted (shebang exec, bigger heap at exit, noise)", f"{nr - py - acc:.2f}"])
        rows.append(["= nono run (launch median)", f"{nr:.2f}"])
        if tr:
            rows.append(["  of which the sandboxed /bin/true alone", f"{tr:.2f}"])
    table(["where `nono run` start-up goes (in-process perf_counter, fresh processes)", "ms"], rows)
    print(f"sys.modules after main(run): {res['sys_modules']}")


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed (or nono.run is missing)")
    ap.add_argument("--json", action="store_true", help="also write the JSON summary to bench/results/latest.json")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test, ~30 s)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved launch rounds (default 100)")
    ap.add_argument("--calls", type=int, default=None, help="nono.run/subprocess.run pairs (default 300)")
    ap.add_argument("--no-hyperfine", action="store_true")
    args = ap.parse_args()

    rounds = args.rounds or (12 if args.quick else 100)
    calls = args.calls or (40 if args.quick else 300)
    call_budget = 8.0 if args.quick else 30.0
    hf_runs = 8 if args.quick else 30
    reps = 3 if args.quick else 7
    t_start = time.perf_counter()

    prep = prepare()
    info = machine_info()
    section("machine")
    for k in ("uname", "cpu", "nproc", "affinity", "loadavg_start", "python", "python_interpreter", "python_binary",
              "landlock_abi", "git", "hyperfine", "bwrap", "firejail"):
        print(f"{k:20} {info[k]}")
    if os.path.realpath(PY) != PY_REAL:
        print(f"note: bench runs under {PY_REAL}, nono's shebang binary is {os.path.realpath(PY)}")
    print(f"{'pyc':20} compileall rc={prep['compileall_rc']}; PYTHONDONTWRITEBYTECODE unset for timed runs; "
          f"modules compiled from source on the nono run path: {len(prep['modules_compiled_from_source'])}")  # type: ignore[arg-type]
    for m in prep["modules_compiled_from_source"]:  # type: ignore[union-attr]
        print(f"  !! not from .pyc: {m}")

    d = tempfile.mkdtemp(prefix="nono-bench-")
    try:
        section(f"(a) launch: {rounds} interleaved rounds, order rotated each round")
        launch = bench_launch(d, rounds, warmup=3)
        print_launch(launch)
        hf = None
        if not args.no_hyperfine:
            section(f"(a') hyperfine -N ({hf_runs} runs each, sequential; cross-check only)")
            hf = bench_hyperfine(d, hf_runs, warmup=3)
            if hf is None:
                print("hyperfine not installed")
            else:
                print(hf["stdout"].rstrip() or hf.get("stderr", ""))
                hr = hf["results"]
                base = hr.get("python -c pass", {}).get("median_ms")
                if base:
                    print("hyperfine medians vs python -c pass: " + ", ".join(
                        f"{n} {fmt_ratio(ratio(v['median_ms'], base))}" for n, v in hr.items() if n != "python -c pass"))

        section("where nono run's start-up goes")
        breakdown = bench_breakdown(d, reps)
        print_breakdown(breakdown, launch)
        profile = bench_profile(d, 20)
        print_profile(profile, 20)

        section("import cost")
        imports = bench_imports(d, reps)
        print_imports(imports)

        section(f"(b) per call from a warm process: up to {calls} interleaved pairs")
        per_call = bench_per_call(d, calls, warmup=5, budget=call_budget)
        print_per_call(per_call)

        section("(c) supervisor peak RSS (VmHWM polled from /proc/<nono pid>/status while the child sleeps)")
        rss = bench_rss(d, 3)
        print_rss(rss)
    finally:
        shutil.rmtree(d, ignore_errors=True)

    # ----------------------------------------------------------------- verdict
    st = launch["stats"]
    have_py = "python -c pass" in st
    launch_ratio = ratio(st["nono run"]["median"], st["python -c pass"]["median"]) if have_py and "nono run" in st else None
    wrap_ratio = ratio(st["nono wrap"]["median"], st["python -c pass"]["median"]) if have_py and "nono wrap" in st else None
    checks = [
        ("(a) nono run / python -c pass", launch_ratio, TARGET_LAUNCH, "x"),
        ("(b) nono.run / subprocess.run", per_call.get("ratio") if per_call.get("available") else None, TARGET_PER_CALL, "x"),
        ("(c) supervisor peak RSS", rss["nono_vmhwm_mib_max"], TARGET_RSS_MIB, " MiB"),
    ]
    section("summary")
    rows = []
    failed = []
    for name, val, target, unit in checks:
        ok = val is not None and val == val and val <= target
        if not ok:
            failed.append(name)
        shown = "not available" if val is None else (f"{val:.2f}{unit}")
        rows.append([name, shown, f"<= {target:g}{unit}", "ok" if ok else ("MISSING" if val is None else "MISSED")])
    rows.append(["    nono wrap / python -c pass (info)", fmt_ratio(wrap_ratio), "", ""])
    for other in ("bwrap", "firejail", "/bin/true"):
        if other in st and "nono run" in st:
            rows.append([f"    nono run / {other} (info)", fmt_ratio(ratio(st["nono run"]["median"], st[other]["median"])), "", ""])
    table(["target", "measured", "target", "verdict"], rows)
    elapsed = time.perf_counter() - t_start
    print(f"elapsed {elapsed:.0f} s; loadavg at end {os.getloadavg()}")

    def strip(x: object) -> object:  # the printed blob carries no raw samples
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("samples_ms", "stdout", "extra_modules")}
        return x

    blob = {
        "machine": {**info, "loadavg_end": os.getloadavg()},
        "pyc": prep,
        "params": {"rounds": rounds, "calls": calls, "hyperfine_runs": hf_runs, "reps": reps},
        "launch": launch,
        "hyperfine": hf,
        "breakdown": breakdown,
        "warm_main_profile": profile,
        "imports": imports,
        "per_call": per_call,
        "rss": rss,
        "ratios": {"launch_nono_run_vs_python": launch_ratio, "launch_nono_wrap_vs_python": wrap_ratio,
                   "per_call_nono_vs_subprocess": per_call.get("ratio"), "rss_supervisor_mib": rss["nono_vmhwm_mib_max"]},
        "targets": {"launch": TARGET_LAUNCH, "per_call": TARGET_PER_CALL, "rss_mib": TARGET_RSS_MIB},
        "failed": failed,
        "elapsed_s": elapsed,
    }
    section("JSON")
    print(json.dumps(strip(blob), indent=None, default=str))
    if args.json:
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, "latest.json")
        with open(path, "w") as f:
            json.dump(blob, f, indent=1, default=str)
        print(f"wrote {os.path.relpath(path, os.getcwd())}")
    if args.check and failed:
        print(f"CHECK FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
