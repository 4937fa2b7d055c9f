"""``nono setup --check-only``: what this host enforces, found by attacking."""

from __future__ import annotations

import os
import sys

from ..kernel import landlock as ll

#: Bypass classes the probe attacks, with a human label.
CLASSES = {
    "fs_read_outside": "filesystem: read outside grants",
    "fs_write_outside": "filesystem: write outside grants",
    "fs_symlink_escape": "filesystem: symlink pointing out of a grant",
    "fs_hardlink_escape": "filesystem: hardlink pulling a file into a grant",
    "fs_rename_escape": "filesystem: rename out of a grant",
    "proc_root_escape": "procfs: /proc/self/root path escape",
    "proc_environ_supervisor": "procfs: supervisor's /proc/<pid>/environ",
    "proc_mem_supervisor": "procfs: supervisor's /proc/<pid>/mem",
    "signal_supervisor": "process: signal the supervisor",
    "ptrace_supervisor": "process: ptrace the supervisor",
    "no_new_privs": "process: no_new_privs (setuid binaries inert)",
    "capabilities": "process: no capabilities inside",
    "new_session": "terminal: program in its own session",
    "tty_tiocsti": "terminal: TIOCSTI keystroke injection",
    "net_tcp_connect": "network: TCP connect (blocked mode)",
    "net_udp": "network: UDP (DNS tunnelling)",
    "net_mptcp": "network: MPTCP (not covered by Landlock)",
    "net_tcp_fastopen": "network: TCP Fast Open (not covered by Landlock)",
    "net_listen_autobind": "network: listen() without bind() (not covered by Landlock)",
    "net_raw": "network: raw sockets",
    "net_packet": "network: packet sockets",
    "net_vsock": "network: vsock",
    "io_uring": "io_uring (bypasses syscall filters)",
    "keyring": "kernel keyring of the user",
    "unix_connect_outside": "unix socket outside grants (e.g. Docker)",
    "unix_connect_symlink": "unix socket via symlink in a grant",
    "unix_moved_into_grant": "unix socket of another program moved into a grant",
    "unix_datagram": "unix datagram socket (sendto any path)",
    "unix_abstract": "abstract unix socket outside the sandbox",
    "tty_other_terminal": "terminal: open another terminal of yours",
    "userns_mount": "user namespace + mount over paths",
}


def cmd_setup(opts: dict[str, object]) -> int:
    import json
    import platform

    as_json = bool(opts.get("json"))
    out = sys.stdout
    abi = ll.abi_version()
    info = {"platform": sys.platform, "kernel": platform.release(), "machine": platform.machine(),
            "python": platform.python_version(), "landlock_abi": abi}
    features = {name: abi >= v for name, v in ll.FEATURE_ABI.items()}
    lines = ["[1/3] Checking installation...", f"  * Platform: {sys.platform} ({platform.machine()})",
             f"  * Kernel version: {platform.release()}"]
    if abi == 0:
        lines.append("  * Landlock NOT available: nono cannot sandbox anything on this host")
        if as_json:
            out.write(json.dumps({**info, "features": features, "classes": {}, "open": ["landlock"]}, indent=2) + "\n")
        else:
            out.write("\n".join(lines) + "\n")
        return 1
    lines += ["  * Landlock enabled (syscall probe)", f"  * Landlock V{abi}"]
    for name, ok in features.items():
        lines.append(f"    {'+' if ok else '-'} {name}{'' if ok else f' (needs ABI {ll.FEATURE_ABI[name]})'}")
    results = _attack()
    lines.append("[2/3] Attacking a throw-away sandbox (one attempt per bypass class)...")
    width = max(len(v) for v in CLASSES.values())
    opened = []
    for key, label in CLASSES.items():
        state, detail = results.get(key, ("open", "probe did not report"))
        if state != "closed":
            opened.append(key)
        lines.append(f"  * {label:<{width}}  {'closed' if state == 'closed' else 'OPEN'}  ({detail})")
    lines.append(f"[3/3] {len(CLASSES) - len(opened)} of {len(CLASSES)} bypass classes closed on this host.")
    if opened:
        lines.append("  OPEN: " + ", ".join(opened))
    from ..sandbox import limits

    host = limits.describe_host()
    lines.append("Isolation and limits this host offers (--isolate, --memory, --cpus, --max-processes, --timeout):")
    lines += [f"  * {line}" for line in host]
    lines.append("Network filtering (--network-profile, --allow-domain) and credentials (--credential): "
                 f"proxy-only egress {'enforced (Landlock TCP + mediator)' if abi >= 4 else 'NOT available (needs Landlock ABI 4)'}")
    if as_json:
        out.write(json.dumps({**info, "features": features,
                              "classes": {k: {"state": results.get(k, ("open", ""))[0], "detail": results.get(k, ("", ""))[1]}
                                          for k in CLASSES},
                              "open": opened, "isolation": host}, indent=2) + "\n")
    elif not opts.get("silent"):
        out.write("\n".join(lines) + "\n")
    return 1 if opened else 0


def _attack() -> dict[str, tuple[str, str]]:
    """Start the probe under a throw-away sandbox; collect its verdicts."""
    import shutil
    import socket
    import tempfile

    from ..kernel.seccomp import current_arch
    from ..policy.model import Policy
    from ..sandbox import supervisor
    from ..sandbox.apply import Prepared
    from ..sandbox.plan import build_plan

    base = tempfile.mkdtemp(prefix="nono-setup-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None)
    grant, outside = os.path.join(base, "grant"), os.path.join(base, "outside")
    os.mkdir(grant)
    os.mkdir(outside)
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("secret\n")
    open(os.path.join(grant, "mine"), "w").close()
    os.symlink(os.path.join(outside, "secret"), os.path.join(grant, "link"))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(os.path.join(outside, "sock"))
    unix.listen(8)
    os.symlink(os.path.join(outside, "sock"), os.path.join(grant, "socklink"))
    os.mkdir(os.path.join(grant, "victimdir"))
    victim = socket.socket(socket.AF_UNIX)
    victim.bind(os.path.join(grant, "victimdir", "victim.sock"))
    victim.listen(8)
    other_master, other_slave = os.openpty()  # stands in for another terminal of the user
    abstract_name = f"nono-setup-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen(8)
    probe = os.path.join(os.path.dirname(__file__).rsplit(os.sep, 1)[0], "sandbox", "probe_child.py")
    read_r, read_w = os.pipe()
    try:
        # The probe's own parent directory is /var/tmp (granted by default); deny it here so
        # "outside" really is outside. The probe runs with only the grant dir writable.
        policy = Policy().allow(grant).allow_read_file(probe).block_network()
        plan = build_plan(policy, argv0=sys.executable)
        plan.rules = {p: r for p, r in plan.rules.items() if not (base.startswith(p + "/") and r.source.startswith("group:"))}
        plan.add_deny(outside, "setup probe")
        prep = Prepared(plan)
        nr = current_arch().nr
        args = [sys.executable, "-I", "-S", probe, f"grant={grant}", f"outside={outside}", f"port={tcp.getsockname()[1]}",
                f"abstract={abstract_name}", f"sid={os.getsid(0)}", f"nr_keyctl={nr['keyctl']}",
                f"nr_ptrace={101 if os.uname().machine == 'x86_64' else 117}", f"other_tty={os.ttyname(other_slave)}"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        saved = os.dup(1)
        os.dup2(read_w, 1)
        try:
            supervisor.run(prep, sys.executable, args, env)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(read_w)
            prep.close()
        data = b""
        while True:
            chunk = os.read(read_r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_r)
        for s in (tcp, unix, abstract, victim):
            s.close()
        os.close(other_master)
        os.close(other_slave)
        shutil.rmtree(base, ignore_errors=True)
    results: dict[str, tuple[str, str]] = {}
    for line in data.decode(errors="replace").splitlines():
        name, _, rest = line.partition(" ")
        state, _, detail = rest.partition(" ")
        results[name] = (state, detail)
    return results
