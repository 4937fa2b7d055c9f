"""Parsing and mechanism choice for resource limits and --isolate (no sandbox involved)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nono.cli import args as A
from nono.cli.isolation_flags import ISOLATION_FLAGS, wanted
from nono.kernel import process
from nono.sandbox import isolation, limits
from nono.sandbox.limits import (
    Cgroup,
    IsolationError,
    Limits,
    format_duration,
    format_size,
    parse_cpus,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize("text,expected", [
    ("1024", 1024), ("0", 0), ("100B", 100), ("512K", 512 << 10), ("512k", 512 << 10), ("2G", 2 << 30),
    ("1.5G", 3 << 29), ("1T", 1 << 40), ("64KiB", 64 << 10), ("2MiB", 2 << 20), ("1gib", 1 << 30),
    ("500KB", 500_000), ("500MB", 500_000_000), ("2GB", 2_000_000_000), (" 3M ", 3 << 20), ("1.5 GiB", 3 << 29),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "12Q", "-1G", "1e3", "nan", "2XB", "KiB", "1.2.3M", "B"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("text,expected", [
    ("30", 30), ("30s", 30), ("500ms", 0.5), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400), ("2d", 172800),
    ("1h 2m 3s", 3723), ("0.25", 0.25), ("1H", 3600),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "1h30", "5x", "m", "inf", "1..5s", "s30"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_round_trips():
    assert format_duration(1) == "1s" and format_duration(0.5) == "0.5s"
    assert format_duration(5400) == "1h30m" and format_duration(3723) == "1h2m3s"
    assert format_size(2 << 30) == "2 GiB" and format_size(3 << 29) == "1.5 GiB" and format_size(10) == "10 B"
    for t in ("90s", "1h30m", "2h"):
        assert parse_duration(format_duration(parse_duration(t))) == parse_duration(t)


def test_parse_cpus():
    assert parse_cpus("1.5") == 1.5 and parse_cpus(" 2 ") == 2
    for bad in ("0", "-1", "x", "1e9"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def test_parse_isolate():
    P = isolation.parse_isolate
    assert P(["all"]) == frozenset(isolation.NAMESPACES)
    assert P(["ipc,uts", "net"]) == {"ipc", "uts", "net"}
    assert P(["pid"]) == {"pid", "mount"}  # a fresh /proc needs its own mount namespace
    assert P(["MNT"]) == {"mount"}
    assert P([]) == frozenset()
    with pytest.raises(ValueError, match="unknown namespace 'user'"):
        P(["pid,user"])


def test_flags_parse_and_wanted():
    flags = A.SANDBOX_FLAGS + ISOLATION_FLAGS
    opts, rest = A.parse("run", flags, ["--memory", "2G", "--cpus=1.5", "--max-processes", "256", "--timeout",
                                        "30m", "--isolate", "pid,ipc", "--isolate", "uts", "--", "agent"], trailing=True)
    assert rest == ["agent"]
    assert wanted(opts)
    iso = isolation.from_options(opts)
    assert iso is not None and iso.limits is not None
    assert iso.namespaces == {"pid", "ipc", "uts", "mount"}
    lim = iso.limits
    assert (lim.memory, lim.cpus, lim.max_processes, lim.timeout) == (2 << 30, 1.5, 256, 1800)
    plain, _ = A.parse("run", flags, ["--allow-cwd", "true"], trailing=True)
    assert not wanted(plain) and isolation.from_options(plain) is None
    assert {f.section for f in ISOLATION_FLAGS} == {"Isolation"}


def test_from_options_rejects():
    for opts in ({"memory": "512K"}, {"max_processes": 0}, {"cpus": "lots"}, {"timeout": "soon"}):
        with pytest.raises(ValueError):
            limits.from_options(opts)


def test_resolve_without_cgroups(monkeypatch):
    monkeypatch.setattr(limits, "find_cgroup_parents", lambda wanted: {})
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    lim = Limits(memory=1 << 30, cpus=2, max_processes=100, file_size=1 << 20, open_files=64)
    lim.resolve(userns=True)
    assert dict(lim.rlimits) == {process.RLIMIT_AS: 1 << 30, process.RLIMIT_NPROC: 100,
                                 process.RLIMIT_FSIZE: 1 << 20, process.RLIMIT_NOFILE: 64}
    assert lim.mechanism["memory"].startswith("RLIMIT_AS")
    assert "user namespace" in lim.mechanism["max_processes"]
    assert lim.mechanism["cpus"].startswith("not enforced")
    lim = Limits(cpus=1.5, timeout=10)
    lim.resolve()
    assert lim.rlimits == [(process.RLIMIT_CPU, 15)]
    assert "RLIMIT_CPU" in lim.mechanism["cpus"]
    notes = "\n".join(lim.notes())
    assert "[nono] limit cpus 1.5: RLIMIT_CPU" in notes and "[nono] limit timeout 10s: nono" in notes
    assert lim.status()["cpus"] == {"limit": 1.5, "mechanism": lim.mechanism["cpus"]}


def test_resolve_refuses_nproc_for_root_without_cgroup(monkeypatch):
    monkeypatch.setattr(limits, "find_cgroup_parents", lambda wanted: {})
    monkeypatch.setattr(os, "getuid", lambda: 0)
    with pytest.raises(IsolationError, match="RLIMIT_NPROC"):
        Limits(max_processes=10).resolve()


def test_resolve_prefers_cgroups(monkeypatch, tmp_path):
    parents = {"memory": (2, str(tmp_path)), "pids": (1, str(tmp_path / "v1")), "cpu": (2, str(tmp_path))}
    monkeypatch.setattr(limits, "find_cgroup_parents", lambda wanted: {c: parents[c] for c in wanted})
    lim = Limits(memory=1 << 30, cpus=0.5, max_processes=7)
    lim.resolve()
    assert lim.rlimits == []
    assert lim.mechanism["memory"].startswith("cgroup v2 memory.max")
    assert lim.mechanism["max_processes"].startswith("cgroup v1 pids.max")
    assert lim.mechanism["cpus"].startswith("cgroup v2 cpu.max")


def _fake_cgroup(tmp_path, version: int) -> Cgroup:
    parent = tmp_path / f"v{version}"
    parent.mkdir()
    cg = Cgroup({"memory": (version, str(parent)), "pids": (version, str(parent)), "cpu": (version, str(parent))})
    return cg


def test_cgroup_v2_files(tmp_path, monkeypatch):
    cg = _fake_cgroup(tmp_path, 2)
    d = cg.dirs[0]
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777):  # a real cgroupfs creates the interface files itself
        real_mkdir(path, mode)
        for name in ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max", "cpu.max", "cgroup.procs",
                     "cgroup.kill"):
            open(os.path.join(path, name), "w").close()

    monkeypatch.setattr(os, "mkdir", mkdir)
    cg.create(Limits(memory=64 << 20, max_processes=5, cpus=1.5))
    read = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    assert read("memory.max") == str(64 << 20) and read("memory.swap.max") == "0" and read("memory.oom.group") == "1"
    assert read("pids.max") == "5" and read("cpu.max") == "150000 100000"
    assert cg.oom_kills() == 0
    with open(os.path.join(d, "memory.events"), "w") as f:
        f.write("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
    with open(os.path.join(d, "pids.events"), "w") as f:
        f.write("max 37\n")
    assert cg.oom_kills() == 1 and cg.pids_refused() == 37
    assert cg.kill() and read("cgroup.kill") == "1"
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    cg.remove()
    assert not os.path.exists(d)


def test_cgroup_v1_files(tmp_path, monkeypatch):
    cg = _fake_cgroup(tmp_path, 1)
    d = cg.dirs[0]
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777):
        real_mkdir(path, mode)
        for name in ("memory.limit_in_bytes", "pids.max", "cpu.cfs_period_us", "cpu.cfs_quota_us"):
            open(os.path.join(path, name), "w").close()

    monkeypatch.setattr(os, "mkdir", mkdir)
    cg.create(Limits(memory=64 << 20, max_processes=5, cpus=0.25))
    read = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    assert read("memory.limit_in_bytes") == str(64 << 20)
    assert read("cpu.cfs_quota_us") == "25000" and read("cpu.cfs_period_us") == "100000"
    with open(os.path.join(d, "memory.oom_control"), "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_kills() == 2
    assert not cg.kill()  # v1 has no cgroup.kill


def test_cgroup_create_failure_cleans_up(tmp_path):
    cg = _fake_cgroup(tmp_path, 2)
    with pytest.raises(OSError):
        cg.create(Limits(memory=64 << 20))  # a plain directory has no memory.max to write
    assert not os.path.exists(cg.dirs[0])


def test_memory_exceeded_heuristic_with_rlimits(monkeypatch):
    monkeypatch.setattr(limits, "find_cgroup_parents", lambda wanted: {})
    lim = Limits(memory=256 << 20)
    lim.resolve()
    lim._baseline_kib = 30 << 10
    exited = lambda code: code << 8  # noqa: E731  (a wait status)
    assert lim.memory_exceeded(exited(1), 200 << 10)
    assert lim.memory_exceeded(9, 200 << 10)  # killed by SIGKILL
    assert not lim.memory_exceeded(exited(0), 250 << 10)  # finished normally
    assert not lim.memory_exceeded(exited(1), 40 << 10)  # failed, but far from the limit
    lim._baseline_kib = 160 << 10
    assert not lim.memory_exceeded(exited(1), 150 << 10)  # no more than the supervisor's own peak


def test_find_cgroup_parents_on_this_host():
    found = limits.find_cgroup_parents({"memory", "pids", "cpu"})
    for c, (v, d) in found.items():
        assert v in (1, 2) and os.path.isdir(d) and c in ("memory", "pids", "cpu")


def test_describe_host_lines():
    lines = limits.describe_host()
    assert lines[0].startswith("namespaces (--isolate): ")
    assert any(line.startswith("--memory: ") for line in lines)
    assert lines[-1].startswith("--timeout: ")


def test_isolation_check_refuses_net_with_proxy():
    class P:
        network = "proxy"

    iso = isolation.Isolation({"net"})
    with pytest.raises(IsolationError, match="filtered network"):
        iso.check(P())  # type: ignore[arg-type]


def test_isolation_status_and_notes(monkeypatch):
    monkeypatch.setattr(isolation, "_needs_userns", lambda: True)
    monkeypatch.setattr(isolation, "userns_status", lambda: (True, ""))
    iso = isolation.Isolation({"pid", "mount"}, Limits(timeout=5))
    iso.check(None)
    assert iso.status()["isolation"] == {"namespaces": ["mount", "pid"], "user_namespace": "created"}
    assert iso.notes()[0] == "[nono] isolate: mount, pid namespaces (in a user namespace)"
    monkeypatch.setattr(isolation, "userns_status", lambda: (False, "user.max_user_namespaces is 0"))
    with pytest.raises(IsolationError, match="max_user_namespaces is 0"):
        isolation.Isolation({"uts"}).check(None)


def test_set_rlimit_lowers_in_a_child():
    code = ("from nono.kernel import process as p\n"
            "p.set_rlimit(p.RLIMIT_NOFILE, 33)\n"
            "import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
            "p.set_rlimit(p.RLIMIT_NOFILE, 1 << 20)\nprint(p.get_rlimit(p.RLIMIT_NOFILE))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert r.stdout.splitlines() == ["(33, 33)", "(33, 33)"]  # never raised again


def test_default_run_path_does_not_import_isolation():
    code = ("import sys\nfrom nono.cli import main\nfrom nono.sandbox import supervisor, apply\n"
            "print(sorted(m for m in sys.modules if m in ('nono.sandbox.isolation', 'nono.sandbox.limits')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert r.stdout.strip() == "[]"
