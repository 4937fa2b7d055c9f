"""The Python API: :func:`run` (like ``subprocess.run``) and :class:`Sandbox`.

::

    policy = nono.Policy().allow_read("/data/inputs").allow_write("/tmp/ws").block_network()
    result = nono.run(["python", "tool.py"], policy=policy, capture_output=True, timeout=30)
    nono.Sandbox.apply(policy)      # irreversible, for this process and its children
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .errors import SandboxError
from .policy.model import Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .sandbox.plan import Plan

CompletedProcess = subprocess.CompletedProcess
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
_MAX_IDLE_PER_POLICY = 4


class _Entry:
    """What the pool keeps per policy: the plan, and its Landlock ruleset built once.

    The ruleset is built here, in the caller, from the ``O_PATH`` descriptors
    planning opened, and every helper of this policy gets a copy of its fd: a
    helper never resolves a granted path by name, so a symlink an earlier
    program planted in place of a granted directory cannot widen a later
    helper's rules.
    """

    __slots__ = ("plan", "prep", "proxy", "setup")

    def __init__(self, plan: Plan, policy: Policy) -> None:
        import marshal

        from .errors import NonoError
        from .sandbox.apply import Prepared

        self.proxy = None
        if plan.network == "proxy":
            # One filtering proxy per policy, started before any helper (never sandboxed),
            # shared by every call with this policy; it dies with this process.
            from .sandbox import network

            self.proxy = network.start(policy)
            plan.proxy_port = self.proxy.port
            self.proxy.grant(plan)
        try:
            self.prep = Prepared(plan)
        except NonoError as exc:
            if self.proxy is not None:
                self.proxy.stop()
            raise SandboxError(f"Sandbox initialization failed: {exc.diagnostics()}") from exc
        self.plan = plan
        self.setup = marshal.dumps({"plan": plan.to_dict(), "mediate": True})


class _Helper:
    """One pre-restricted helper process (see :mod:`nono.sandbox.helper`)."""

    def __init__(self, entry: _Entry) -> None:
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        script = os.path.join(pkg_parent, "nono", "sandbox", "helper.py")
        self.proc = subprocess.Popen(
            [os.path.realpath(sys.executable), "-I", "-S", script, pkg_parent, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        theirs.close()
        self.sock = ours
        try:
            ours.sendmsg([entry.setup], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          entry.prep.ruleset.fd.to_bytes(4, sys.byteorder))])
            reply = ours.recv(8192)
        except OSError:
            reply = b""
        if reply != b"R":
            self.close()
            detail = reply[2:].decode(errors="replace") if reply.startswith(b"F ") else "helper exited"
            raise SandboxError(f"Sandbox initialization failed: {detail}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wake(self) -> None:
        """SIGCONT: a program may have stopped its helper (same Landlock domain)."""
        try:
            self.proc.send_signal(signal.SIGCONT)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket: the helper kills what it runs, cleans up and exits."""
        self.sock.close()
        self.wake()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Pool:
    """Idle helpers keyed by what the sandbox allows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[object, list[_Helper]] = {}
        self.entries: dict[object, _Entry] = {}

    def entry_for(self, policy: Policy, exe: str) -> tuple[object, _Entry]:
        from .sandbox.plan import build_plan, interpreter_paths

        key = (policy.key(), exe, os.environ.get("HOME"), os.environ.get("TMPDIR"))
        with self.lock:
            entry = self.entries.get(key)
        if entry is None:
            fresh = _Entry(build_plan(policy, argv0=exe, readonly=interpreter_paths()), policy)
            with self.lock:
                entry = self.entries.setdefault(key, fresh)
            if entry is not fresh:  # another thread was first
                fresh.prep.close()
                if fresh.proxy is not None:
                    fresh.proxy.stop()
        return key, entry

    def acquire(self, key: object, entry: _Entry) -> _Helper:
        dead: list[_Helper] = []
        found = None
        with self.lock:
            helpers = self.idle.get(key)
            while helpers:
                h = helpers.pop()
                if h.alive():
                    found = h
                    break
                dead.append(h)
        for h in dead:
            h.close()
        return found if found is not None else _Helper(entry)

    def release(self, key: object, helper: _Helper, healthy: bool) -> None:
        if healthy:
            with self.lock:
                helpers = self.idle.setdefault(key, [])
                if len(helpers) < _MAX_IDLE_PER_POLICY:
                    helpers.append(helper)
                    return
        helper.close()


_pool = _Pool()


def _stdio(spec: object, for_input: bool, to_close: list[int], ours: dict[str, int], name: str) -> int:
    if spec is None:
        return {"stdin": 0, "stdout": 1, "stderr": 2}[name]
    if spec == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        to_close.append(fd)
        return fd
    if spec == subprocess.PIPE:
        r, w = os.pipe()
        child, mine = (r, w) if for_input else (w, r)
        to_close.append(child)
        ours[name] = mine
        return child
    if isinstance(spec, int):
        return spec
    return int(spec.fileno())  # type: ignore[attr-defined]


def run(
    args: Sequence[str], *, policy: Policy, stdin: object = None, input: bytes | str | None = None,
    stdout: object = None, stderr: object = None, capture_output: bool = False, timeout: float | None = None,
    check: bool = False, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
    text: bool = False, encoding: str | None = None, errors: str | None = None,
) -> subprocess.CompletedProcess[object]:
    """Run ``args`` confined by ``policy`` and wait for it, like :func:`subprocess.run`.

    The environment is sanitised as for ``nono run`` (``LD_PRELOAD``,
    ``PYTHONPATH``, ... removed). The program receives its three stdio
    descriptors and no other. Anything the program leaves running is killed
    when it exits: background jobs and daemons do not outlive the call (they
    would share the sandbox with the next call).

    Raises :class:`subprocess.TimeoutExpired`,
    :class:`subprocess.CalledProcessError` (with ``check=True``),
    ``FileNotFoundError`` for an unknown program, and :class:`SandboxError`
    when the sandbox cannot be applied or its helper process dies.
    """
    from .policy.groups import sanitize_env
    from .sandbox.plan import which

    argv = [os.fspath(a) for a in args]
    if not argv:
        raise ValueError("args must name a program")
    exe = which(argv[0]) if cwd is None or "/" not in argv[0] else which(os.path.join(os.fspath(cwd), argv[0]))
    if exe is None:
        raise FileNotFoundError(2, f"No such file or directory: {argv[0]!r}", argv[0])
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = subprocess.PIPE
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = subprocess.PIPE
    text_mode = text or encoding is not None or errors is not None
    input_b: bytes | None
    if isinstance(input, str):
        input_b = input.encode(encoding or "utf-8", errors or "strict")
    else:
        input_b = input
    key, entry = _pool.entry_for(policy, exe)
    child_env = sanitize_env(os.environ if env is None else env, policy.env_set, policy.env_allow, policy.env_deny)
    if entry.proxy is not None:
        child_env = entry.proxy.env(child_env)
    to_close: list[int] = []
    ours: dict[str, int] = {}
    try:
        fd0 = _stdio(stdin, True, to_close, ours, "stdin")
        fd1 = _stdio(stdout, False, to_close, ours, "stdout")
        fd2 = fd1 if stderr == subprocess.STDOUT else _stdio(stderr, False, to_close, ours, "stderr")
        helper = _pool.acquire(key, entry)
        healthy = False
        try:
            rc, out, err = _exchange(helper, exe, argv, child_env, cwd, (fd0, fd1, fd2), to_close, ours,
                                     input_b, timeout)
            healthy = True
        finally:
            _pool.release(key, helper, healthy)
    finally:
        for fd in to_close + list(ours.values()):
            try:
                os.close(fd)
            except OSError:
                pass
    if text_mode:
        out = out.decode(encoding or "utf-8", errors or "strict") if out is not None else None  # type: ignore[assignment]
        err = err.decode(encoding or "utf-8", errors or "strict") if err is not None else None  # type: ignore[assignment]
    result: subprocess.CompletedProcess[object] = subprocess.CompletedProcess(argv, rc, out, err)
    if check:
        result.check_returncode()
    return result


def _exchange(helper: _Helper, exe: str, argv: list[str], env: dict[str, str], cwd: str | os.PathLike[str] | None,
              fds: tuple[int, int, int], to_close: list[int], ours: dict[str, int],
              input_b: bytes | None, timeout: float | None) -> tuple[int, bytes | None, bytes | None]:
    """Send one request to ``helper`` and serve the program's stdio until it exits.

    Never trusts the helper to stay alive: it shares a Landlock domain with the
    program, which may kill or stop it. End of file on the socket raises
    :class:`SandboxError`; with a ``timeout`` nothing waits past the deadline
    (plus a 5 s grace for the kill).
    """
    import marshal
    import select
    import socket

    req = marshal.dumps({"exe": exe, "argv": argv, "env": env, "cwd": os.fspath(cwd) if cwd is not None else None})
    try:
        helper.sock.sendmsg([req], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(
            fd.to_bytes(4, sys.byteorder) for fd in fds))])
    except OSError as exc:
        raise SandboxError("the sandbox helper stopped unexpectedly") from exc
    for fd in to_close:
        os.close(fd)
    to_close.clear()
    deadline = None if timeout is None else time.monotonic() + timeout
    bufs: dict[int, list[bytes]] = {fd: [] for name, fd in ours.items() if name != "stdin"}
    poller = select.poll()
    sock_fd = helper.sock.fileno()
    poller.register(sock_fd, select.POLLIN)
    for fd in bufs:
        poller.register(fd, select.POLLIN)
    pending_in = input_b or b""
    in_fd = ours.get("stdin")
    if in_fd is not None:
        if pending_in:
            os.set_blocking(in_fd, False)
            poller.register(in_fd, select.POLLOUT)
        else:
            os.close(in_fd)
            del ours["stdin"]
            in_fd = None
    started = False
    if deadline is None:  # the common case: wait for the start reply without a poll round
        msg = helper.sock.recv(64)
        if msg.startswith(b"E "):
            code = int(msg[2:])
            raise OSError(code, os.strerror(code), exe)
        if not msg.startswith(b"S "):  # end of file: the helper is gone
            raise SandboxError("the sandbox helper stopped unexpectedly")
        started = True
    rc: int | None = None
    open_out = set(bufs)
    killed = False
    while rc is None or open_out:
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                if not killed:
                    try:
                        helper.sock.send(b"K 9")
                    except OSError as exc:
                        raise SandboxError("the sandbox helper stopped unexpectedly") from exc
                    helper.wake()
                    killed = True
                    deadline = time.monotonic() + 5
                    continue
                raise SandboxError("the sandboxed program did not exit after SIGKILL")
            wait_ms = int(left * 1000) + 1
        for fd, _ev in poller.poll(wait_ms):
            if fd == sock_fd:
                msg = helper.sock.recv(64)
                if not started and msg.startswith(b"E "):
                    code = int(msg[2:])
                    raise OSError(code, os.strerror(code), exe)
                if not started and msg.startswith(b"S "):
                    started = True
                elif started and msg.startswith(b"X "):
                    rc = int(msg[2:])
                    poller.unregister(sock_fd)
                else:  # end of file: the helper is gone
                    raise SandboxError("the sandbox helper stopped unexpectedly")
            elif fd == in_fd:
                try:
                    n = os.write(in_fd, pending_in[:65536])
                    pending_in = pending_in[n:]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    pending_in = b""
                if not pending_in:
                    poller.unregister(in_fd)
                    os.close(in_fd)
                    del ours["stdin"]
                    in_fd = None
            else:
                chunk = os.read(fd, 65536)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_out.discard(fd)
    out = b"".join(bufs[ours["stdout"]]) if "stdout" in ours else None
    err = b"".join(bufs[ours["stderr"]]) if "stderr" in ours else None
    if killed:
        raise subprocess.TimeoutExpired(argv, timeout or 0, out, err)
    return rc, out, err


def _with_interpreter(policy: Policy, code_paths: 'list[str]') -> Policy:
    """Add read access to this interpreter's runtime, so later imports keep working."""
    from .policy.model import READ, Grant
    from .sandbox.plan import runtime_grants

    for g in runtime_grants(sys.executable):
        policy = policy.with_grant(g)
    for p in code_paths:
        policy = policy.with_grant(Grant(p, READ, "any", "runtime"))
    return policy


def _thread_count() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Threads:"):
                return int(line.split()[1])
    return 1


class ProxyConfig:
    """Credentials the filtering proxy injects, for :class:`Sandbox` (the Python form of ``--credential``)::

        proxy = nono.ProxyConfig()
        proxy.intercept(pattern="api.github.com", inject_header="Authorization",
                        from_keychain="github_agent_token", credential_format="token {}")
        with nono.Sandbox(allow_network=["api.github.com:443"], proxy=proxy) as sb:
            sb.run(["python", "agent.py"])

    The program gets a phantom token (in ``env_var``, default derived from the key
    name) and a base URL on the proxy; the proxy swaps in the real secret, from the
    keyring (``from_keychain``) or nono's environment (``from_env``), only on the way to
    ``pattern``. Clients that ignore base URLs are handled by TLS interception.
    """

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, object]] = {}

    def intercept(self, pattern: str, *, inject_header: str = "Authorization", from_keychain: 'str | None' = None,
                  from_env: 'str | None' = None, credential_format: 'str | None' = None, env_var: 'str | None' = None,
                  name: 'str | None' = None) -> 'ProxyConfig':
        """Inject a credential into requests to ``pattern`` (a host, or ``https://host/base``)."""
        if (from_keychain is None) == (from_env is None):
            raise ValueError("give exactly one of from_keychain= and from_env=")
        upstream = pattern if "://" in pattern else f"https://{pattern}"
        host = upstream.split("://", 1)[1].split("/", 1)[0]
        route = name or "".join(c if c.isalnum() else "-" for c in host.lower()).strip("-")
        entry: dict[str, object] = {"upstream": upstream, "inject_header": inject_header,
                                    "credential_key": from_keychain if from_keychain is not None else f"env://{from_env}"}
        if credential_format is not None:
            entry["credential_format"] = credential_format
        if env_var is not None or from_env is not None:
            entry["env_var"] = env_var or f"{route.upper().replace('-', '_')}_TOKEN"
        self.routes[route] = entry
        return self


class Sandbox:
    """Confine commands (``with Sandbox(...) as sb: sb.run(...)``) or this process (``Sandbox.apply``)."""

    _applied: list[dict[str, object]] = []

    def __init__(self, policy: 'Policy | None' = None, *, allow_network: 'Sequence[str]' = (),
                 proxy: 'ProxyConfig | None' = None) -> None:
        p = policy if policy is not None else Policy()
        if allow_network or proxy is not None:
            p = p.allow_network(list(allow_network))
        if proxy is not None and proxy.routes:
            p = p.use_credentials(*proxy.routes, custom=proxy.routes)
        self.policy = p

    def __enter__(self) -> 'Sandbox':
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, args: 'Sequence[str]', **kwargs: 'Any') -> 'subprocess.CompletedProcess[object]':
        """:func:`nono.run` with this sandbox's policy."""
        return run(args, policy=self.policy, **kwargs)
    _proxies: list[object] = []  # kept alive for the life of this process

    @staticmethod
    def apply(policy: Policy) -> dict[str, object]:
        """Confine this process by ``policy``. Irreversible; may be stacked.

        This interpreter's runtime (``sys.prefix``, ``sys.base_prefix`` and the
        ``sys.path`` entries other than the working directory) stays readable,
        so later imports work. Refuses with :class:`SandboxError` when the process has more than one
        thread: Landlock on this kernel restricts only the calling thread, so
        the other threads would stay free. Apply before starting threads.
        Returns what was enforced (the ``protections`` of ``NONO_CAP_FILE``).
        With a filtered network (:meth:`Policy.allow_network`), the proxy is
        started first, in a separate unsandboxed process, and ``HTTPS_PROXY``
        and friends are set in ``os.environ``.
        """
        from .sandbox.apply import Prepared, enter, fill_capfile, reserve_capfile, spawn_detached_mediator
        from .sandbox.plan import build_plan, interpreter_paths

        threads = _thread_count()
        if threads != 1:
            raise SandboxError(
                f"Sandbox.apply() needs a single-threaded process, but {threads} threads are running",
                hint="Landlock restricts only the calling thread on this kernel; apply the sandbox before starting threads, "
                     "or use nono.run() to confine a child process instead",
            )
        code_paths = interpreter_paths()
        plan = build_plan(_with_interpreter(policy, code_paths), readonly=code_paths)
        proxy = None
        if plan.network == "proxy":
            # The proxy runs in its own process, forked now, before this one is confined.
            from .sandbox import network

            proxy = network.start(policy)
            plan.proxy_port = proxy.port
            proxy.grant(plan)
        cap, cap_fd = reserve_capfile(plan)
        prep = Prepared(plan)
        try:
            handoff = spawn_detached_mediator(prep) if prep.mediate_unix else None
            fill_capfile(cap_fd, plan, prep.status)
            try:
                enter(prep, handoff=handoff)
            except BaseException as exc:
                raise SandboxError(
                    f"Sandbox.apply() failed part-way, this process may be partially sandboxed: {exc}",
                    hint="treat this as fatal: exit the process instead of carrying on",
                ) from exc
            for fd in handoff or ():
                os.close(fd)
        finally:
            prep.close()
        os.environ["NONO_CAP_FILE"] = cap
        if proxy is not None:
            # This process's HTTP clients, and its children, use the proxy (and phantom tokens).
            wanted = proxy.env(dict(os.environ))
            for name in [k for k in os.environ if k not in wanted]:
                del os.environ[name]
            os.environ.update(wanted)
            Sandbox._proxies.append(proxy)
        Sandbox._applied.append(prep.status)
        return prep.status

    @staticmethod
    def is_applied() -> bool:
        """Has :meth:`apply` confined this process?"""
        return bool(Sandbox._applied)
