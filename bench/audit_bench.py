#!/usr/bin/env python3
"""Audit benchmark: recorder throughput, begin+finish cost, and what audit adds to a launch.

Run from the repository root::

    .venv/bin/python bench/audit_bench.py            # 200,000 events, 40 begin/finish rounds
    .venv/bin/python bench/audit_bench.py --quick

Reported (medians; targets are for reading, nothing is asserted):

* events/s through ``AuditSession.event`` (one ``write`` per event: durable against a
  SIGKILLed supervisor, visible to ``nono logs -f`` at once) and through ``events`` (one
  ``write`` per batch, what ``finish`` uses for the proxy's decisions)      target >= 50,000/s
* ``begin`` + ``finish`` in ms (a session of 10 events; fsyncs included), and with signing
* the import cost of ``nono.audit.session`` in a fresh interpreter
* ``nono run -- /bin/true`` (audit not wired yet, i.e. "off"), and the estimate "on" =
  off + import + begin + finish                                           target <= 1.1x
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _begin(session_mod, **kw):  # type: ignore[no-untyped-def]
    return session_mod.begin(command=["python", "agent.py", "--token", "x"], cwd="/work", profile="default",
                             policy_digest="ab" * 32, grants=[{"path": "/work", "access": "readwrite"}] * 5,
                             protections={"landlock_abi": 7, "enforced": ["fs", "tcp", "scopes"]},
                             network={"mode": "proxy", "hosts": ["api.openai.com"]}, **kw)


def throughput(n: int) -> dict[str, float]:
    from nono.audit import session

    s = _begin(session)
    t = time.perf_counter()
    for i in range(n):
        s.event("network", action="allow", host="api.openai.com", port=443, bytes=1234 + i, reason="allowlist")
    single = n / (time.perf_counter() - t)
    items = [{"action": "allow", "host": "api.openai.com", "port": 443, "bytes": 1234 + i, "reason": "allowlist"}
             for i in range(n)]
    t = time.perf_counter()
    for k in range(0, n, 1000):
        s.events("network", items[k:k + 1000])
    batched = n / (time.perf_counter() - t)
    t = time.perf_counter()
    s.finish(0)
    finish_ms = (time.perf_counter() - t) * 1000
    from nono.audit.verify import verify

    t = time.perf_counter()
    ok = verify(s.session_id)["ok"]
    verify_s = time.perf_counter() - t
    return {"event_per_s": single, "events_batched_per_s": batched, "finish_after_2n_ms": finish_ms,
            "verify_per_s": 2 * n / verify_s, "verified": float(ok)}


def begin_finish(rounds: int, sign_key: str | None = None) -> dict[str, float]:
    from nono.audit import session

    begins, finishes = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        s = _begin(session, sign_key=sign_key)
        t1 = time.perf_counter()
        for i in range(8):
            s.event("note", i=i)
        t2 = time.perf_counter()
        s.finish(0, network_events=[{"time": time.time(), "action": "deny", "host": "x.example", "port": 443,
                                     "reason": "not allowed"}])
        t3 = time.perf_counter()
        begins.append((t1 - t0) * 1000)
        finishes.append((t3 - t2) * 1000)
    return {"begin_ms": statistics.median(begins), "finish_ms": statistics.median(finishes),
            "begin_plus_finish_ms": statistics.median(b + f for b, f in zip(begins, finishes))}


def import_cost(rounds: int) -> float:
    """ms to import nono.audit.session and probe denials in a fresh interpreter (timed inside it).

    The modules ``nono run`` has already loaded by the time it would call ``begin`` are imported first.
    """
    code = ("import os, time, nono._jsonlite, nono._ffi, nono.kernel.landlock\n"
            "t = time.perf_counter()\n"
            "import nono.audit.session\n"
            "from nono.audit import denials\n"
            "denials.probe()\n"
            "print((time.perf_counter() - t) * 1000)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    times = [float(subprocess.run([sys.executable, "-S", "-c", code], check=True, env=env, capture_output=True,
                                  text=True).stdout) for _ in range(rounds)]
    return statistics.median(times)


def launch(rounds: int) -> float:
    times = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nono", "run", "-s", "--", "/bin/true"], check=True, env=env,
                       stdin=subprocess.DEVNULL, cwd="/tmp")
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.events, args.rounds = 50_000, 10
    # An installed package has bytecode; without it every fresh interpreter recompiles (PYTHONDONTWRITEBYTECODE).
    import compileall

    compileall.compile_dir(str(REPO / "src" / "nono"), quiet=1)
    tmp = tempfile.mkdtemp(prefix="nono-audit-bench-", dir=os.environ.get("NONO_BENCH_DIR", "/var/tmp"))
    os.environ["NONO_AUDIT_DIR"] = os.path.join(tmp, "audit")
    try:
        res: dict[str, float] = {}
        res.update(throughput(args.events))
        res.update(begin_finish(args.rounds))
        from nono.audit import signing

        signing.generate_key(f"file://{tmp}/key")
        signed = begin_finish(max(5, args.rounds // 4), sign_key=f"file://{tmp}/key")
        res["signed_begin_plus_finish_ms"] = signed["begin_plus_finish_ms"]
        res["import_ms"] = import_cost(max(5, args.rounds // 4))
        res["launch_off_ms"] = launch(max(5, args.rounds // 2))
        res["launch_on_estimate_ms"] = res["launch_off_ms"] + res["import_ms"] + res["begin_plus_finish_ms"]
        res["launch_ratio_estimate"] = res["launch_on_estimate_ms"] / res["launch_off_ms"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"recorder, event() (one write each):   {res['event_per_s']:>10,.0f} events/s   (target >= 50,000)")
    print(f"recorder, events() (batched writes):  {res['events_batched_per_s']:>10,.0f} events/s")
    print(f"verify:                               {res['verify_per_s']:>10,.0f} events/s")
    print(f"finish after {2 * args.events:,} events:          {res['finish_after_2n_ms']:>10.1f} ms")
    print(f"begin:                                {res['begin_ms']:>10.2f} ms")
    print(f"finish (10 events, fsyncs, ledger):   {res['finish_ms']:>10.2f} ms")
    print(f"begin + finish:                       {res['begin_plus_finish_ms']:>10.2f} ms")
    print(f"begin + finish, signed (P-256):       {res['signed_begin_plus_finish_ms']:>10.2f} ms")
    print(f"import nono.audit.session + probe:    {res['import_ms']:>10.2f} ms")
    print(f"nono run -- /bin/true (audit off):    {res['launch_off_ms']:>10.1f} ms")
    print(f"  estimated with audit on:            {res['launch_on_estimate_ms']:>10.1f} ms   "
          f"({res['launch_ratio_estimate']:.3f}x, target <= 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
