"""Run the proxy in its own (unsandboxed) process: ``start(settings) -> ProxyHandle``.

Call :func:`start` before the sandboxed program is started. It binds the listening
socket here (so the port is known and connections queue at once), forks, and the
child serves. The proxy process:

* dies with its parent (``PR_SET_PDEATHSIG(SIGKILL)``, checked against a race with
  the parent's exit) and is not dumpable (a sandboxed program of the same uid can
  neither ptrace it nor read its memory for the token);
* keeps only stdin (``/dev/null``), stdout, stderr, the listener and the event file;
  objects inherited from the parent are frozen (``gc.freeze``) so no stale Python
  object can close a descriptor the proxy reuses;
* ignores SIGINT (the supervisor decides when the session ends) and stops on SIGTERM;
* writes one JSON line per event to an anonymous memory file (``memfd``) that the
  parent reads with ``pread``: writing never blocks, whatever the parent does.

Caveat for callers: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits, so
call :func:`start` from a thread that lives as long as the session (the main thread).
Forking a multi-threaded caller is safe for us (everything the child runs is imported
before the fork and it never returns to the caller's code), but other threads' locks
are not released in the child.

Environment for the sandboxed program, :meth:`ProxyHandle.env`: the proxy URL with
its credentials in ``HTTP_PROXY``, ``HTTPS_PROXY`` and their lower-case twins (curl and
git read ``http_proxy`` only in lower case), ``NO_PROXY``/``no_proxy`` (loopback, which
Landlock governs directly), ``NODE_USE_ENV_PROXY=1`` (Node 24+ built-in fetch/http),
``npm_config_proxy``/``npm_config_https_proxy`` (beat a proxy set in ``.npmrc``),
``PIP_PROXY`` (beats ``pip.conf``), ``YARN_HTTP(S)_PROXY`` (Yarn 2+), ``NONO_PROXY_TOKEN``.
``ALL_PROXY`` is deliberately not set: curl and others would also send non-HTTP
schemes (ftp://, and socks-only tools read it as a SOCKS proxy) to an HTTP proxy
that cannot serve them; those fail closed without it too, with a clearer error.

TLS interception (``settings.intercept`` and a host that needs it, see
:mod:`.intercept`): :func:`start` reserves the CA bundle file (:mod:`.cabundle`), the
proxy process creates the session CA and fills the file, and :meth:`ProxyHandle.env`
waits for that (the import of ``cryptography`` and the key generation run in parallel
with the caller) before adding ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``,
``NODE_EXTRA_CA_CERTS``, ``CURL_CA_BUNDLE`` and ``GIT_SSL_CAINFO``. ``ca_bundle`` is
its path (None without interception); :meth:`ProxyHandle.stop` deletes it.
"""

# Lean on purpose: this module is imported by every `nono run` with a filtered network.
# `_socket` instead of `socket` (which imports `enum`), nono's `_jsonlite` instead of
# `json` (which imports `re`), `os.urandom` instead of `secrets`: ~35 ms less here. The
# proxy process imports asyncio and the server after the fork, in parallel with the program.
import _socket
import os
import sys
import time

from .. import _jsonlite
from ..errors import NonoError
from .rules import ProxySettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal  # the stubs; at run time the C module, as `signal` imports `enum` (~10 ms)

    from .server import Event, Resolver
else:
    import _signal as signal

__all__ = ["ProxyHandle", "ProxySettings", "ProxyStartError", "start"]

_MAX_EVENT_BYTES = 64 * 1024 * 1024
NO_PROXY = "localhost,127.0.0.1,::1"


class ProxyStartError(NonoError):
    """The proxy process could not provide what the session needs (the session CA)."""


class ProxyHandle:
    """A running proxy process: ``port``, ``token``, ``pid``; ``env()``, ``events()``, ``stop()``."""

    def __init__(self, port: int, token: str, pid: int, event_fd: int, host: str = "127.0.0.1",
                 ca_bundle: 'str | None' = None, ready_fd: int = -1) -> None:
        self.port = port
        self.token = token
        self.pid = pid
        self.host = host
        self.ca_bundle = ca_bundle
        self._ready_fd = ready_fd
        self._ready: str | None = None
        self._event_fd = event_fd
        self._offset = 0
        self._partial = b""
        self._events: list[Event] = []
        self._status: int | None = None
        self._lifeline = -1

    @property
    def url(self) -> str:
        """``http://nono:<token>@127.0.0.1:<port>``."""
        return f"http://nono:{self.token}@{self.host}:{self.port}"

    def env(self) -> 'dict[str, str]':
        """Environment additions for the sandboxed program (see the module docstring)."""
        url = self.url
        out = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy",
                                      "npm_config_https_proxy", "PIP_PROXY", "YARN_HTTP_PROXY", "YARN_HTTPS_PROXY")}
        out.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY, NODE_USE_ENV_PROXY="1", NONO_PROXY_TOKEN=self.token)
        if self.ca_bundle is not None:
            self.wait_ready()
            out.update(dict.fromkeys(("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                                      "GIT_SSL_CAINFO"), self.ca_bundle))
        return out

    def wait_ready(self, timeout: float = 30.0) -> None:
        """With TLS interception: wait until the proxy wrote the CA bundle; raises ProxyStartError."""
        if self._ready is None and self._ready_fd >= 0:
            import select

            readable, _, _ = select.select([self._ready_fd], [], [], timeout)
            data = os.read(self._ready_fd, 4096) if readable else b"error: timed out creating the session CA"
            os.close(self._ready_fd)
            self._ready_fd = -1
            self._ready = data.decode("utf-8", "replace") or "error: the proxy process ended"
        if self._ready is not None and self._ready != "ok":
            raise ProxyStartError(f"TLS interception is not available: {self._ready.removeprefix('error: ')}",
                                  hint="endpoint rules on HTTPS hosts and credential injection for clients that "
                                       "ignore *_BASE_URL need it (the 'cryptography' package)")

    def poll_events(self) -> 'list[Event]':
        """Events written since the last call (never blocks)."""
        if self._event_fd < 0:
            return []
        chunks = [self._partial]
        while True:
            data = os.pread(self._event_fd, 1 << 20, self._offset)
            if not data:
                break
            self._offset += len(data)
            chunks.append(data)
        text = b"".join(chunks)
        complete, _, self._partial = text.rpartition(b"\n")
        new: list[Event] = []
        for line in complete.split(b"\n"):
            if line:
                try:
                    new.append(_jsonlite.loads(line.decode("utf-8", "replace")))
                except ValueError:
                    continue
        self._events.extend(new)
        return new

    def events(self) -> 'list[Event]':
        """Every event so far."""
        self.poll_events()
        return list(self._events)

    def alive(self) -> bool:
        """Is the proxy process still running?"""
        if self._status is not None:
            return False
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (a supervisor reaping every child it has)
            self._status = 0
            return False
        if pid:
            self._status = status
            return False
        return True

    def stop(self, timeout: float = 5.0) -> 'list[Event]':
        """Stop the proxy (SIGTERM, then SIGKILL after ``timeout``); return every event."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
                _, self._status = os.waitpid(self.pid, 0)
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        if self._ready_fd >= 0:
            os.close(self._ready_fd)
            self._ready_fd = -1
        if self.ca_bundle is not None:
            try:
                os.unlink(self.ca_bundle)
            except OSError:
                pass
        events = self.events()
        if self._event_fd >= 0:
            os.close(self._event_fd)
            self._event_fd = -1
        return events

    def __enter__(self) -> 'ProxyHandle':
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(settings: ProxySettings, resolver: 'Resolver | None' = None) -> ProxyHandle:
    """Bind the listener, fork the proxy process and return its handle.

    The settings are compiled here first, so a bad setting raises
    :class:`~nono.errors.PolicyError` in the caller. ``resolver`` (tests) replaces DNS.
    """
    intercepting = settings.compile().intercepting
    token = os.urandom(32).hex()
    listener = _socket.socket(_socket.AF_INET6 if ":" in settings.bind_host else _socket.AF_INET,
                              _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    event_fd = -1
    bundle: tuple[str, int] | None = None
    ready_r = ready_w = -1
    try:
        if intercepting:  # the proxy process fills the file with the session CA (see ProxyHandle.env)
            from . import cabundle

            bundle = cabundle.reserve()
            ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind((settings.bind_host, settings.port))
        listener.listen(1024)
        port = listener.getsockname()[1]
        event_fd = os.memfd_create("nono-proxy-events", os.MFD_CLOEXEC)
        # Lifeline: the proxy stops when the read end reports EOF, that is when every
        # process holding the write end (this one; close-on-exec keeps it out of
        # programs) has gone. Unlike PDEATHSIG it follows the process, not the thread
        # that forked (nono.run may be called from a worker thread).
        life_r, life_w = os.pipe2(os.O_CLOEXEC)
        if _other_threads():
            # With other threads running, import the server (and asyncio) before forking, so
            # the child never imports under a lock another thread held. Single-threaded
            # (the CLI), the child imports it, in parallel with the sandboxed program.
            from . import server  # noqa: F401

        parent = os.getpid()
        main_thread = _is_main_thread()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(life_w)
            if ready_r >= 0:
                os.close(ready_r)
            _child(listener, settings, token, event_fd, parent, resolver, life_r, main_thread,
                   bundle[1] if bundle else -1, ready_w)
        os.close(life_r)
    except BaseException:
        if event_fd >= 0:
            os.close(event_fd)
        for fd in (ready_r, ready_w):
            if fd >= 0:
                os.close(fd)
        if bundle is not None:
            os.close(bundle[1])
            os.unlink(bundle[0])
        raise
    finally:
        listener.close()
    if bundle is not None:
        os.close(bundle[1])
        os.close(ready_w)
    handle = ProxyHandle(port, token, pid, event_fd, settings.bind_host, bundle[0] if bundle else None, ready_r)
    handle._lifeline = life_w
    return handle


def _other_threads() -> bool:
    import threading

    return threading.active_count() > 1


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _child(listener: '_socket.socket', settings: ProxySettings, token: str, event_fd: int, parent: int,
           resolver: 'Resolver | None', lifeline: int, main_thread: bool, bundle_fd: int = -1,
           ready_fd: int = -1) -> None:  # pragma: no cover - runs in the child
    """The proxy process's whole life; never returns."""
    code = 0
    try:
        import gc

        gc.freeze()
        _detach(parent, keep=(listener.fileno(), event_fd, lifeline, bundle_fd, ready_fd), deathsig=main_thread)
        _serve(listener.detach(), settings, token, event_fd, resolver, lifeline, bundle_fd, ready_fd)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def _detach(parent: int, keep: 'tuple[int, ...]', deathsig: bool = True) -> None:  # pragma: no cover - runs in the child
    from ..kernel import process

    if deathsig:  # PDEATHSIG fires when the forking *thread* exits: only safe from the main thread
        process.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
    process.set_dumpable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    prev = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(prev, fd)
        prev = fd + 1
    os.closerange(prev, os.sysconf("SC_OPEN_MAX"))
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _serve(listener_fd: int, settings: ProxySettings, token: str, event_fd: int, resolver: 'Resolver | None',
           lifeline: int = -1, bundle_fd: int = -1, ready_fd: int = -1) -> None:  # pragma: no cover - runs in the child
    session_ca = None
    if bundle_fd >= 0:  # the session CA and the bundle first: the supervisor waits for them
        try:
            from . import cabundle
            from .sessionca import SessionCA, ca_names

            session_ca = SessionCA(ca_names(settings.compile()))
            cabundle.fill(bundle_fd, session_ca.cert_pem)
        except BaseException as exc:
            os.write(ready_fd, f"error: {type(exc).__name__}: {exc}"[:1000].encode("utf-8", "replace"))
            raise
        os.write(ready_fd, b"ok")
        os.close(ready_fd)

    import asyncio
    import socket

    from .server import ProxyServer

    listener = socket.socket(fileno=listener_fd)
    written = [0, 0]  # bytes written, events dropped

    def on_event(event: 'Event') -> None:
        line = (_jsonlite.dumps_compact(event) + "\n").encode("utf-8")
        if written[0] + len(line) > _MAX_EVENT_BYTES:
            written[1] += 1
            return
        os.write(event_fd, line)
        written[0] += len(line)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = ProxyServer(settings, token, on_event, resolver, session_ca)
        task = loop.create_task(server.serve(listener))
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        if lifeline >= 0:
            def parent_gone() -> None:
                loop.remove_reader(lifeline)
                task.cancel()

            loop.add_reader(lifeline, parent_gone)  # readable only at EOF: nobody writes to it
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    if written[1]:
        os.write(event_fd, (_jsonlite.dumps_compact({"time": time.time(), "action": "error", "method": "", "host": "", "port": 0,
                                        "reason": f"events dropped: {written[1]}", "bytes_up": 0, "bytes_down": 0,
                                        "duration_ms": 0.0}) + "\n").encode())
