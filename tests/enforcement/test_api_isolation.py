"""nono.run's helper processes keep calls apart, attacked for real, as root and as nobody.

A helper process applies the sandbox once and spawns every program of one
policy. The programs share its Landlock domain, so each test below is an attack
by one call on the helper or on a later call:

* the helper's control socket must not leak into the program (C4);
* whatever a call leaves running is killed before the call returns, so it
  cannot spy on the next call (H4);
* a new helper must not re-resolve the policy's paths by name, where an
  earlier call may have planted a symlink (H5).
"""

from __future__ import annotations

import textwrap

PRELUDE = textwrap.dedent('''
    import json, os, subprocess, sys, time
    import nono
    home, work, outside = sys.argv[1:4]
    out = {}
''')

# C4 -------------------------------------------------------------------------------------------

FD_LISTER = textwrap.dedent('''
    import os
    names = os.listdir("/proc/self/fd")
    # The listing's own directory fd is closed by now: keep the fds that are still open.
    live = []
    for n in names:
        try:
            os.readlink("/proc/self/fd/" + n)
            live.append(int(n))
        except OSError:
            pass
    print(" ".join(map(str, sorted(live))))
''')

# Tries every descriptor above 2: read the helper's requests, forge replies to the caller.
THIEF = textwrap.dedent('''
    import os, socket, stat
    found = []
    for fd in range(3, 1024):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        s = socket.socket(fileno=os.dup(fd))
        got = []
        try:
            got.append(s.recv(65536, socket.MSG_DONTWAIT).hex())
        except OSError:
            pass
        for forged in (b"X 0", b"S 1", b"X 0"):
            try:
                s.send(forged)
                got.append(forged.decode())
            except OSError:
                pass
        found.append([fd, got])
    print(found)
    raise SystemExit(5)
''')

C4_DRIVER = PRELUDE + textwrap.dedent('''
    p = nono.Policy().allow(work)
    r = nono.run([sys.executable, "-c", LISTER], policy=p, capture_output=True, text=True, timeout=30)
    out["fds"] = [r.returncode, r.stdout.split()]
    r = nono.run([sys.executable, "-c", LISTER], policy=p, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                 timeout=30)
    out["fds_again"] = [r.returncode, r.stdout.split()]
    r = nono.run([sys.executable, "-c", THIEF], policy=p, capture_output=True, text=True, timeout=30)
    out["thief"] = [r.returncode, r.stdout.strip()]
    # The same program, so the same helper: forged replies queued by the thief would answer these.
    code = "import sys; print(sys.argv[1]); raise SystemExit(int(sys.argv[2]))"
    r = nono.run([sys.executable, "-c", code, "genuine", "7"], policy=p, capture_output=True, text=True, timeout=30)
    out["after"] = [r.returncode, r.stdout]
    r = nono.run([sys.executable, "-c", code, "again", "3"], policy=p, capture_output=True, text=True, timeout=30)
    out["after2"] = [r.returncode, r.stdout]
    print(json.dumps(out))
''').replace("LISTER", repr(FD_LISTER)).replace("THIEF", repr(THIEF))

# A program that kills its own helper (same Landlock domain, so it can): the caller must
# raise, never hang, and the next call must get a fresh helper.
KILL_HELPER_DRIVER = PRELUDE + textwrap.dedent('''
    p = nono.Policy().allow(work)
    nono.run(["true"], policy=p, timeout=30)
    t = time.monotonic()
    try:
        nono.run(["sh", "-c", "kill -9 $PPID; sleep 1"], policy=p, capture_output=True, timeout=20)
        out["killed"] = "returned"
    except nono.SandboxError:
        out["killed"] = "SandboxError"
    except subprocess.TimeoutExpired:
        out["killed"] = "timeout"
    out["killed_s"] = time.monotonic() - t
    t = time.monotonic()
    try:
        nono.run(["sh", "-c", "kill -STOP $PPID; sleep 30"], policy=p, capture_output=True, timeout=2)
        out["stopped"] = "returned"
    except (nono.SandboxError, subprocess.TimeoutExpired) as e:
        out["stopped"] = type(e).__name__
    out["stopped_s"] = time.monotonic() - t
    r = nono.run(["sh", "-c", "echo fine"], policy=p, capture_output=True, text=True, timeout=30)
    out["next"] = [r.returncode, r.stdout]
    # An idle helper that died (OOM killer, ...) is not handed a request.
    import nono.api
    for helpers in nono.api._pool.idle.values():
        for h in helpers:
            os.kill(h.proc.pid, 9)
    time.sleep(0.2)
    try:
        r = nono.run(["sh", "-c", "echo fine"], policy=p, capture_output=True, text=True, timeout=30)
        out["after_idle_death"] = [r.returncode, r.stdout]
    except Exception as e:
        out["after_idle_death"] = type(e).__name__
    print(json.dumps(out))
''')

# H4 -------------------------------------------------------------------------------------------

# Double-forks a spy that outlives the call, reports its pid, and looks for later calls' secrets.
DAEMON = textwrap.dedent('''
    import os, sys, time
    pidfile, spyfile = sys.argv[1], sys.argv[2]
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        fd = os.open(os.devnull, os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        me = os.getpid()
        end = time.monotonic() + 12
        while time.monotonic() < end:
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == me:
                    continue
                for what in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{pid}/{what}", "rb") as f:
                            data = f.read()
                    except OSError:
                        continue
                    if b"NONO_TEST_SECRET" in data:
                        with open(spyfile, "ab") as f:
                            f.write(data.replace(b"\\0", b" ") + b"\\n")
            time.sleep(0.02)
        os._exit(0)
    os.waitpid(first, 0)
    end = time.monotonic() + 5
    while not os.path.exists(pidfile) and time.monotonic() < end:
        time.sleep(0.01)
''')

H4_DRIVER = PRELUDE + textwrap.dedent('''
    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def gone_within(pid, seconds):
        end = time.monotonic() + seconds
        while alive(pid):
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    import threading
    p = nono.Policy().allow(work)
    # Bystanders the clean-up must not touch: a process of the same user outside any sandbox,
    # and a program of another helper (another policy, so another Landlock domain) running meanwhile.
    bystander = subprocess.Popen(["sleep", "30"])
    other = {}
    def other_call():
        r = nono.run(["sh", "-c", "sleep 1.5; echo survived"], policy=nono.Policy().allow(home),
                     capture_output=True, text=True, timeout=30)
        other["r"] = [r.returncode, r.stdout]
    nono.run(["true"], policy=nono.Policy().allow(home), timeout=30)  # its helper is started
    th = threading.Thread(target=other_call)
    th.start()
    time.sleep(0.3)
    pidfile, spyfile = os.path.join(work, "daemon.pid"), os.path.join(work, "spy.txt")
    r = nono.run([sys.executable, "-c", DAEMON, pidfile, spyfile], policy=p, timeout=30)
    out["call1"] = r.returncode
    th.join(30)
    out["other_helper"] = other.get("r")
    out["bystander"] = bystander.poll() is None
    bystander.kill(); bystander.wait()
    with open(pidfile) as f:
        pid = int(f.read())
    out["daemon_gone_at_return"] = not alive(pid)
    out["daemon_gone_5s"] = gone_within(pid, 5)
    r = nono.run(["sh", "-c", "sleep 1; echo done"], policy=p, capture_output=True, text=True, timeout=30,
                 env=dict(os.environ, NONO_TEST_SECRET="hunter2-NONO"))
    out["call2"] = [r.returncode, r.stdout]
    time.sleep(0.2)
    try:
        with open(spyfile, "rb") as f:
            out["spied"] = b"hunter2-NONO" in f.read()
    except FileNotFoundError:
        out["spied"] = False
    # A background job holding stdout: the call returns once the shell exits, the job is killed.
    t = time.monotonic()
    try:
        r = nono.run(["sh", "-c", "sleep 8 & echo $!"], policy=p, capture_output=True, text=True, timeout=4)
        bg = int(r.stdout)
        out["bg"] = [r.returncode, time.monotonic() - t < 3, not alive(bg), gone_within(bg, 5)]
    except (subprocess.TimeoutExpired, nono.SandboxError) as e:
        out["bg"] = type(e).__name__
    # Same after a timeout: the killed program's children die with it.
    try:
        nono.run(["sh", "-c", "sleep 9 & echo $! > bg.pid; wait"], policy=p, cwd=work, timeout=1)
        out["timeout_bg"] = "returned"
    except subprocess.TimeoutExpired:
        with open(os.path.join(work, "bg.pid")) as f:
            out["timeout_bg"] = gone_within(int(f.read()), 5)
    r = nono.run(["echo", "still works"], policy=p, capture_output=True, text=True, timeout=30)
    out["after"] = [r.returncode, r.stdout]
    print(json.dumps(out))
''').replace("DAEMON", repr(DAEMON))

# Without Landlock signal scoping the helper cannot use kill(-1): it kills its children found in
# /proc instead. That path is forced here (outside any sandbox) on a subreaper test process.
FALLBACK_DRIVER = PRELUDE + textwrap.dedent('''
    from nono.kernel import process
    from nono.sandbox import helper
    # A bystander of the same user, not our descendant (double-forked before we become a subreaper).
    r, w = os.pipe()
    if os.fork() == 0:
        os.write(w, b"%d" % os.posix_spawn("/bin/sleep", ["sleep", "30"], {}))
        os._exit(0)
    os.wait()
    os.close(w)
    bystanders = [int(os.read(r, 32))]
    process.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    children_fd = os.open(f"/proc/self/task/{os.getpid()}/children", os.O_RDONLY)
    for mode, fd in (("proc_scan", -1), ("children_file", children_fd)):
        pidfile = os.path.join(work, mode + ".pid")
        # sh starts nested background jobs, then exits: they are re-parented to us.
        code = "sleep 20 & (sleep 21 & (sleep 22 & echo $! > " + pidfile + "; wait); wait) & sleep 0.3"
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", code], dict(os.environ))
        os.waitpid(pid, 0)
        t = time.monotonic()
        done = helper._kill_leftovers(False, fd)
        took = time.monotonic() - t
        with open(pidfile) as f:
            deep = int(f.read())
        try:
            os.waitpid(-1, os.WNOHANG)
            left = True
        except ChildProcessError:
            left = False
        out[mode] = [done, took < 5, not os.path.exists(f"/proc/{deep}"), left]
    out["bystanders"] = [os.path.exists(f"/proc/{b}") for b in bystanders]
    for b in bystanders:
        os.kill(b, 9)
    print(json.dumps(out))
''')

# H5 -------------------------------------------------------------------------------------------

H5_DRIVER = PRELUDE + textwrap.dedent('''
    w = os.path.join(work, "w")
    templates = os.path.join(w, "templates")
    os.makedirs(templates)
    with open(os.path.join(templates, "t.txt"), "w") as f:
        f.write("template\\n")
    p = nono.Policy().allow_write(w).allow_read(templates)
    r = nono.run(["sh", "-c", "cat templates/t.txt"], policy=p, cwd=w, capture_output=True, text=True, timeout=30)
    out["before"] = [r.returncode, r.stdout]
    attack = f"mv templates t.old && ln -s {outside} templates && kill -9 $PPID"
    try:
        r = nono.run(["sh", "-c", attack], policy=p, cwd=w, capture_output=True, text=True, timeout=20)
        out["attack"] = ["returned", r.returncode, r.stderr]
    except nono.SandboxError:
        out["attack"] = ["SandboxError"]
    out["planted"] = os.path.islink(templates)
    r = nono.run(["sh", "-c", "cat templates/secret.txt"], policy=p, cwd=w, capture_output=True, text=True,
                 timeout=30)
    out["after"] = [r.returncode, "outside-secret" in r.stdout]
    r = nono.run(["sh", "-c", "cat t.old/t.txt"], policy=p, cwd=w, capture_output=True, text=True, timeout=30)
    out["renamed"] = [r.returncode, r.stdout]
    print(json.dumps(out))
''')


def _drive(world, script: str) -> dict:
    return world.drive(script)


def test_program_sees_only_its_stdio(world):
    """C4: no descriptor but 0, 1, 2 reaches the program; the helper's socket cannot be stolen."""
    out = _drive(world, C4_DRIVER)
    assert out["fds"] == [0, ["0", "1", "2"]]
    assert out["fds_again"] == [0, ["0", "1", "2"]]
    assert out["thief"] == [5, "[]"]
    assert out["after"] == [7, "genuine\n"]
    assert out["after2"] == [3, "again\n"]


def test_program_killing_its_helper_does_not_hang_the_caller(world):
    """C4: a dead or stopped helper is an error for that call, and the next call still works."""
    out = _drive(world, KILL_HELPER_DRIVER)
    assert out["killed"] == "SandboxError" and out["killed_s"] < 10
    assert out["stopped"] in ("SandboxError", "TimeoutExpired") and out["stopped_s"] < 6
    assert out["next"] == [0, "fine\n"]
    assert out["after_idle_death"] == [0, "fine\n"]


def test_leftover_processes_are_killed(world):
    """H4: a daemon left by one call is gone when the call returns and sees nothing of the next."""
    out = _drive(world, H4_DRIVER)
    assert out["call1"] == 0
    assert out["other_helper"] == [0, "survived\n"]
    assert out["bystander"] is True
    assert out["daemon_gone_at_return"] is True
    assert out["daemon_gone_5s"] is True
    assert out["call2"] == [0, "done\n"]
    assert out["spied"] is False
    assert out["bg"] == [0, True, True, True]
    assert out["timeout_bg"] is True
    assert out["after"] == [0, "still works\n"]


def test_leftover_cleanup_without_signal_scoping(world):
    """H4 fallback (Landlock ABI < 6): children found in /proc are killed, generation by generation."""
    out = _drive(world, FALLBACK_DRIVER)
    assert out["proc_scan"] == [True, True, True, False]
    assert out["children_file"] == [True, True, True, False]
    assert out["bystanders"] == [True]


def test_new_helper_does_not_follow_planted_symlink(world):
    """H5: after a call swaps a granted directory for a symlink and kills its helper, the
    next helper's rules still name the original directory, not the symlink's target."""
    out = _drive(world, H5_DRIVER)
    assert out["before"] == [0, "template\n"]
    assert out["planted"] is True
    assert out["after"] == [1, False]
    assert out["renamed"] == [0, "template\n"]
