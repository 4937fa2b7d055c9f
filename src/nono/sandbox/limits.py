"""Resource limits for ``nono run``: a cgroup where the host offers one, rlimits otherwise.

Wiring (for the CLI; nothing here is imported on the default ``nono run`` path)
------------------------------------------------------------------------------
``cli/main.py`` (``_run_like``):

1. parse with the extra flags of ``cli/isolation_flags.py`` for ``run`` and ``shell``::

       from .isolation_flags import ISOLATION_FLAGS, wanted
       flags = (A.SHELL_FLAGS if command == "shell" else A.SANDBOX_FLAGS) + ISOLATION_FLAGS

   (``wrap`` has no supervisor: if ``wanted(opts)`` there, raise ``A.UsageError("--memory, --cpus,
   --max-processes, --timeout and --isolate need 'nono run' (a supervisor)")``.)
2. after ``build_plan`` (and after the proxy started, so ``plan.network`` is final)::

       iso = None
       if wanted(opts):                       # cheap: no import unless a flag was given
           from ..sandbox import isolation
           iso = isolation.from_options(opts)  # UsageError-like ValueError -> raise A.UsageError(str(exc))
           iso.check(plan)                     # raises IsolationError (a SandboxError): "nono: ..." exit 1

   ``from_options`` raises :class:`ValueError` for a malformed value (``--memory 2X``): turn it
   into ``A.UsageError(str(exc))``.
3. in ``_launch``, right after ``prep = Prepared(plan)``::

       if iso is not None:
           prep.status.update(iso.status())      # "isolation"/"limits" land in the capability file
           for line in iso.notes():              # which mechanism enforces what
               out.err(line)

4. pass it on: ``supervisor.run(prep, exe, program, env, pty=pty, on_exit=..., isolation=iso)``.
   The supervisor then returns 124 after ``[nono] timeout after ...`` and 137 after
   ``[nono] memory limit exceeded ...`` (both printed unless ``--silent``).

``nono setup --check-only`` (``cli/setup.py``)::

       from ..sandbox import limits
       for line in limits.describe_host():      # e.g. "user namespaces: available (...)"
           print(line)

Profiles (issue 9, item 3) map ``resources {memory, cpus, max_processes, timeout}`` and
``isolate [...]`` onto the same option names (``memory``, ``cpus``, ``max_processes``,
``timeout``, ``isolate``) before ``from_options``; command-line flags win.

Mechanisms, per limit (chosen by :meth:`Limits.resolve`, reported by :meth:`Limits.notes`)
----------------------------------------------------------------------------------------
* cgroup v2 when a delegated, writable cgroup with the controller enabled exists (a
  systemd user session with ``Delegate=yes``, or a cgroup the user owns): ``memory.max``
  (+ ``memory.swap.max=0``, ``memory.oom.group=1``), ``pids.max``, ``cpu.max``. nono creates
  ``nono.<pid>`` beneath it; the child moves itself in before anything else, so every
  process of the session is inside; the directory is removed when the session ends.
* cgroup v1 (hybrid hosts, root only): ``memory.limit_in_bytes``, ``pids.max``,
  ``cpu.cfs_quota_us``, same life cycle.
* otherwise rlimits, set in the program just before ``execve`` and inherited by all it starts:
  ``RLIMIT_AS`` (memory: *per process* address space, not resident memory; runtimes that
  reserve large address ranges - Go, the JVM, V8 - need a generous value),
  ``RLIMIT_NPROC`` (processes: counts *every* process of the real uid, in the sandbox's user
  namespace when ``--isolate`` created one, else all of the user's processes on the host;
  the kernel never applies it to uid 0, so root needs a cgroup), ``RLIMIT_CPU`` (only as
  ``cpus x timeout`` CPU seconds per process when ``--timeout`` is given; a rate cannot be an
  rlimit), ``RLIMIT_FSIZE`` and ``RLIMIT_NOFILE`` (API/profile only).
* the timeout is always nono's: the supervisor kills the whole session (``cgroup.kill`` or
  ``SIGKILL``; with a PID namespace its init dies and the kernel kills the rest) and exits 124.

Memory exhaustion: with a cgroup, the kernel's OOM-kill counter (``memory.events`` /
``memory.oom_control``) is exact. With ``RLIMIT_AS`` nothing is killed: allocations fail
(``MemoryError``, ``ENOMEM``, often an abort). nono reports ``memory limit exceeded`` when the
program ended abnormally (non-zero status or a signal) *and* the peak resident memory of the
processes it waited for (``wait4`` rusage) reached half the limit (and exceeded, by 4 MiB, the
supervisor's own peak, which a forked child starts with and keeps across ``execve``). This is a heuristic: a
program that fails on one huge allocation is not detected; one that fails for another reason
after using much of its allowance is reported as out of memory.
"""

import os

from ..errors import SandboxError
from ..kernel import process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class IsolationError(SandboxError):
    """An isolation or limit was asked for that this host (or this combination) cannot provide."""


_BINARY = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DECIMAL = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
MIN_MEMORY = 1 << 20


def parse_size(text: str) -> int:
    """A size in bytes: bare bytes, ``K/M/G/T`` or ``KiB/MiB/GiB/TiB`` (binary), ``KB/MB/GB/TB`` (decimal).

    Case-insensitive, a fraction is allowed (``1.5G``). Raises :class:`ValueError`.
    """
    t = text.strip()
    up = t.upper()
    mult = 1
    for suffix, table, cut in (("IB", _BINARY, 3), ("B", _DECIMAL, 2), ("", _BINARY, 1)):
        if len(up) > len(suffix) and up.endswith(suffix) and up[-len(suffix) - 1] in table:
            mult, t = table[up[-len(suffix) - 1]], t[:-cut]
            break
    else:
        if up.endswith("B"):  # "100B": bytes
            t = t[:-1]
    t = t.strip()
    try:
        value = float(t) if "." in t else int(t, 10)
    except ValueError:
        raise ValueError(f"invalid size {text!r} (use e.g. 512M, 2G, 1.5GiB, 500MB or a number of bytes)") from None
    if value < 0 or value != value:
        raise ValueError(f"invalid size {text!r}: must not be negative")
    return int(value * mult)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``500ms``, ``30m``, ``1h30m``, ``1.5h``, ``2d``. Raises :class:`ValueError`."""
    t = text.strip().lower().replace(" ", "")
    bad = ValueError(f"invalid duration {text!r} (use e.g. 30s, 30m, 1h30m or a number of seconds)")
    if not t:
        raise bad
    try:
        total = float(t)
    except ValueError:
        total, num, i = 0.0, "", 0
        while i < len(t):
            c = t[i]
            if c.isdigit() or c == ".":
                num += c
                i += 1
                continue
            unit = "ms" if t.startswith("ms", i) else c
            if unit not in _UNITS or not num:
                raise bad from None
            try:
                total += float(num) * _UNITS[unit]
            except ValueError:
                raise bad from None
            num, i = "", i + len(unit)
        if num:
            raise bad from None  # "1h30": a trailing number without its unit is ambiguous
    if not total > 0 or total == float("inf"):
        raise ValueError(f"invalid duration {text!r}: must be more than zero")
    return total


def format_duration(seconds: float) -> str:
    """``90`` -> ``1m30s``; fractions below a minute keep their decimals (``1.5s``)."""
    if seconds < 60:
        return f"{seconds:g}s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v)


def format_size(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def parse_cpus(text: str) -> float:
    """A CPU count like ``1``, ``1.5`` or ``0.25``. Raises :class:`ValueError`."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"invalid CPU count {text!r} (use e.g. 1, 1.5 or 0.25)") from None
    if not 0.01 <= value <= 4096:
        raise ValueError(f"invalid CPU count {text!r}: between 0.01 and 4096")
    return value


# -- cgroups ------------------------------------------------------------------------------
_PERIOD_US = 100_000


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _mounts() -> 'list[tuple[str, str, set[str]]]':
    """(mount point, fstype, super options) of every cgroup/cgroup2 mount of this process."""
    out = []
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) > 4 and len(rfields) > 2 and rfields[0] in ("cgroup", "cgroup2"):
            out.append((fields[4].replace("\\040", " "), rfields[0], set(rfields[2].split(","))))
    return out


def _own_cgroups() -> 'dict[str, str]':
    """Our cgroup path per hierarchy: key ``""`` for v2, else the v1 controller list."""
    out = {}
    for line in _read("/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _writable(d: str) -> bool:
    return os.access(d, os.W_OK | os.X_OK) and os.access(os.path.join(d, "cgroup.procs"), os.W_OK)


def find_cgroup_parents(controllers: 'set[str]') -> 'dict[str, tuple[int, str]]':
    """Where each of ``controllers`` (memory, pids, cpu) can be applied: ``{controller: (version, parent dir)}``.

    cgroup v2: the deepest cgroup from ours upwards that we may write to and whose
    ``cgroup.subtree_control`` already enables the controller (nono never changes the
    delegation it was given). cgroup v1, for what v2 does not offer: our own cgroup of the
    controller's hierarchy, if writable (in practice: root).
    """
    found: dict[str, tuple[int, str]] = {}
    own = _own_cgroups()
    mounts = _mounts()
    v2 = next((m for m in mounts if m[1] == "cgroup2"), None)
    if v2 is not None and "" in own:
        root = v2[0]
        d = os.path.normpath(root + own[""])
        while True:
            enabled = set(_read(os.path.join(d, "cgroup.subtree_control")).split())
            usable = (controllers - set(found)) & enabled
            if usable and _writable(d):
                for c in usable:
                    found[c] = (2, d)
            if len(d) <= len(root) or set(found) >= controllers:
                break
            d = os.path.dirname(d)
    for c in controllers - set(found):
        for point, fstype, opts in mounts:
            if fstype == "cgroup" and c in opts:
                key = next((k for k in own if c in k.split(",")), None)
                if key is not None:
                    d = os.path.normpath(point + own[key])
                    if _writable(d):
                        found[c] = (1, d)
                break
    return found


class Cgroup:
    """The session's own cgroup(s): created by the supervisor, joined by the child, removed at the end."""

    def __init__(self, parents: 'Mapping[str, tuple[int, str]]') -> None:
        self.controllers = {c: (v, os.path.join(p, f"nono.{os.getpid()}")) for c, (v, p) in parents.items()}
        self.dirs = sorted({d for _v, d in self.controllers.values()})

    def create(self, limits: 'Limits') -> None:
        """Make the directories and write the limits. Raises :class:`OSError`."""
        made = []
        try:
            for d in self.dirs:
                os.mkdir(d, 0o755)
                made.append(d)
            for c, (v, d) in self.controllers.items():
                if c == "memory" and limits.memory is not None:
                    if v == 2:
                        _write(f"{d}/memory.max", str(limits.memory))
                        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                            try:
                                _write(f"{d}/{name}", value)
                            except OSError:
                                pass  # no swap accounting / an old kernel: the limit itself holds
                    else:
                        _write(f"{d}/memory.limit_in_bytes", str(limits.memory))
                        try:
                            _write(f"{d}/memory.memsw.limit_in_bytes", str(limits.memory))
                        except OSError:
                            pass
                elif c == "pids" and limits.max_processes is not None:
                    _write(f"{d}/pids.max", str(limits.max_processes))
                elif c == "cpu" and limits.cpus is not None:
                    quota = max(1000, int(limits.cpus * _PERIOD_US))
                    if v == 2:
                        _write(f"{d}/cpu.max", f"{quota} {_PERIOD_US}")
                    else:
                        _write(f"{d}/cpu.cfs_period_us", str(_PERIOD_US))
                        _write(f"{d}/cpu.cfs_quota_us", str(quota))
        except OSError:
            for d in made:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def join(self) -> None:
        """Move the calling process into the session's cgroup(s) (in the child, before anything else)."""
        for d in self.dirs:
            _write(f"{d}/cgroup.procs", "0")

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        v, d = self.controllers.get("memory", (0, ""))
        text = _read(f"{d}/memory.events") if v == 2 else _read(f"{d}/memory.oom_control") if v == 1 else ""
        n = 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in ("oom_kill", "oom_group_kill") and value.strip().isdigit():
                n = max(n, int(value))
        return n

    def pids_refused(self) -> int:
        """How many forks ``pids.max`` refused."""
        v, d = self.controllers.get("pids", (0, ""))
        for line in _read(f"{d}/pids.events").splitlines() if v else ():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0

    def kill(self) -> bool:
        """Kill every process in the cgroup at once (cgroup v2 ``cgroup.kill``); False if unavailable."""
        done = False
        for v, d in set(self.controllers.values()):
            if v == 2:
                try:
                    _write(f"{d}/cgroup.kill", "1")
                    done = True
                except OSError:
                    pass
        return done

    def remove(self) -> None:
        """Remove the directories once their processes are gone (bounded retry)."""
        import time

        deadline = time.monotonic() + 2.0
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)


# -- the limits -----------------------------------------------------------------------------
class Limits:
    """Requested limits (plain data) and, after :meth:`resolve`, how each one is enforced.

    ``memory``, ``file_size``: bytes; ``cpus``: a CPU count; ``max_processes``,
    ``open_files``: counts; ``timeout``: seconds. ``None``: no limit.
    """

    def __init__(self, *, memory: int | None = None, cpus: float | None = None, max_processes: int | None = None,
                 timeout: float | None = None, file_size: int | None = None, open_files: int | None = None) -> None:
        self.memory, self.cpus, self.max_processes = memory, cpus, max_processes
        self.timeout, self.file_size, self.open_files = timeout, file_size, open_files
        self.mechanism: dict[str, str] = {}  # limit -> how it is enforced ("not enforced: ..." if not)
        self.rlimits: list[tuple[int, int]] = []  # (RLIMIT_*, value), set before execve
        self.cgroup: Cgroup | None = None
        self._parents: dict[str, tuple[int, str]] = {}
        self._baseline_kib = 0

    def resolve(self, *, userns: bool = False) -> None:
        """Choose a mechanism for every limit. Raises :class:`IsolationError` for one that cannot hold.

        ``userns``: the program will run in a user namespace of its own (RLIMIT_NPROC then
        counts only the sandbox's processes).
        """
        want = {c for c, v in (("memory", self.memory), ("pids", self.max_processes), ("cpu", self.cpus)) if v is not None}
        self._parents = find_cgroup_parents(want) if want else {}
        self.mechanism, self.rlimits = {}, []

        def via(c: str, files: str) -> str:
            v, parent = self._parents[c]
            return f"cgroup v{v} {files} ({parent}/nono.<pid>)"

        if self.memory is not None:
            if "memory" in self._parents:
                self.mechanism["memory"] = via("memory", "memory.max" if self._parents["memory"][0] == 2
                                               else "memory.limit_in_bytes")
            else:
                self.rlimits.append((process.RLIMIT_AS, self.memory))
                self.mechanism["memory"] = "RLIMIT_AS (address space of each process; no cgroup memory controller here)"
        if self.max_processes is not None:
            if "pids" in self._parents:
                self.mechanism["max_processes"] = via("pids", "pids.max")
            elif os.getuid() == 0:
                raise IsolationError(
                    "--max-processes cannot be enforced for root here: the kernel never applies RLIMIT_NPROC "
                    "to uid 0 and no writable cgroup with the pids controller was found",
                    hint="run nono as an ordinary user, or give it a delegated cgroup v2 with pids enabled")
            else:
                self.rlimits.append((process.RLIMIT_NPROC, self.max_processes))
                scope = "processes of your uid in the sandbox's user namespace" if userns \
                    else "ALL processes of your uid on this host"
                self.mechanism["max_processes"] = f"RLIMIT_NPROC (counts {scope})"
        if self.cpus is not None:
            if "cpu" in self._parents:
                self.mechanism["cpus"] = via("cpu", "cpu.max" if self._parents["cpu"][0] == 2 else "cpu.cfs_quota_us")
            elif self.timeout is not None:
                seconds = max(1, int(self.cpus * self.timeout + 0.999))
                self.rlimits.append((process.RLIMIT_CPU, seconds))
                self.mechanism["cpus"] = f"RLIMIT_CPU ({seconds} CPU seconds per process = cpus x timeout)"
            else:
                self.mechanism["cpus"] = ("not enforced: no cgroup cpu controller here, and a CPU rate cannot be "
                                          "an rlimit (add --timeout to cap CPU seconds)")
        if self.file_size is not None:
            self.rlimits.append((process.RLIMIT_FSIZE, self.file_size))
            self.mechanism["file_size"] = "RLIMIT_FSIZE"
        if self.open_files is not None:
            self.rlimits.append((process.RLIMIT_NOFILE, self.open_files))
            self.mechanism["open_files"] = "RLIMIT_NOFILE"
        if self.timeout is not None:
            self.mechanism["timeout"] = "nono (kills the session, exit 124)"

    # -- supervisor side -----------------------------------------------------------
    def before_fork(self) -> None:
        """Create the session cgroup (if any controller was found). Raises :class:`IsolationError`."""
        if self.memory is not None and "memory" not in self._parents:
            # The forked child starts with our resident memory, and its peak survives execve.
            for line in _read("/proc/self/status").splitlines():
                if line.startswith("VmHWM:"):
                    self._baseline_kib = int(line.split()[1])
        if not self._parents:
            return
        cg = Cgroup(self._parents)
        try:
            cg.create(self)
        except OSError as exc:
            raise IsolationError(f"cannot create the session cgroup {cg.dirs[0] if cg.dirs else ''}: {exc.strerror}",
                                 hint="the limits were resolved against a cgroup that is no longer writable") from exc
        self.cgroup = cg

    def memory_exceeded(self, status: int, maxrss_kib: int) -> bool:
        """After the program ended with wait ``status``: did it run out of the memory limit?"""
        if self.memory is None:
            return False
        if self.cgroup is not None and "memory" in self.cgroup.controllers:
            return self.cgroup.oom_kills() > 0
        abnormal = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        return abnormal and maxrss_kib * 1024 >= self.memory // 2 and maxrss_kib > self._baseline_kib + 4096

    def finish(self) -> None:
        """Remove the session cgroup (its processes must be gone)."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    # -- child side ----------------------------------------------------------------
    def join(self) -> None:
        if self.cgroup is not None:
            self.cgroup.join()

    def apply_rlimits(self) -> None:
        """Lower this process's rlimits (just before ``execve``; inherited by everything it starts)."""
        for resource, value in self.rlimits:
            process.set_rlimit(resource, value)

    # -- reporting -----------------------------------------------------------------
    def status(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in (("memory", self.memory), ("cpus", self.cpus), ("max_processes", self.max_processes),
                           ("timeout", self.timeout), ("file_size", self.file_size), ("open_files", self.open_files)):
            if value is not None:
                out[key] = {"limit": value, "mechanism": self.mechanism.get(key, "")}
        return out

    def notes(self) -> list[str]:
        shown = {"memory": lambda: format_size(self.memory or 0), "cpus": lambda: f"{self.cpus:g}",
                 "max_processes": lambda: str(self.max_processes), "timeout": lambda: format_duration(self.timeout or 0),
                 "file_size": lambda: format_size(self.file_size or 0), "open_files": lambda: str(self.open_files)}
        return [f"[nono] limit {key.replace('_', '-')} {shown[key]()}: {how}" for key, how in self.mechanism.items()]


def from_options(opts: 'Mapping[str, object]') -> 'Limits | None':
    """Limits from parsed CLI options (``memory``, ``cpus``, ``max_processes``, ``timeout``); None if none given.

    Raises :class:`ValueError` with a user-facing message for malformed values.
    """
    memory = opts.get("memory")
    cpus = opts.get("cpus")
    nproc = opts.get("max_processes")
    timeout = opts.get("timeout")
    if memory is None and cpus is None and nproc is None and timeout is None:
        return None
    lim = Limits()
    if memory is not None:
        lim.memory = parse_size(str(memory))
        if lim.memory < MIN_MEMORY:
            raise ValueError(f"--memory {memory}: at least 1MiB")
    if cpus is not None:
        lim.cpus = parse_cpus(str(cpus))
    if nproc is not None:
        n = nproc if isinstance(nproc, int) else int(str(nproc)) if str(nproc).isdigit() else -1
        if n < 1:
            raise ValueError(f"--max-processes {nproc}: a whole number, at least 1")
        lim.max_processes = n
    if timeout is not None:
        lim.timeout = parse_duration(str(timeout))
    return lim


def describe_host() -> list[str]:
    """Lines for ``nono setup --check-only``: which isolation and limit mechanisms this host offers."""
    lines = []
    from .isolation import userns_status

    ok, why = userns_status()
    if os.geteuid() == 0:
        lines.append("namespaces (--isolate): available (root: no user namespace needed)")
    else:
        lines.append(f"namespaces (--isolate): {'available' if ok else 'unavailable'} ({why})")
    parents = find_cgroup_parents({"memory", "pids", "cpu"})
    for c, flag, fallback in (("memory", "--memory", "RLIMIT_AS (per-process address space)"),
                              ("pids", "--max-processes", "RLIMIT_NPROC (per uid)" if os.getuid() else
                               "none for root (RLIMIT_NPROC does not apply to uid 0)"),
                              ("cpu", "--cpus", "RLIMIT_CPU with --timeout only")):
        if c in parents:
            v, p = parents[c]
            lines.append(f"{flag}: cgroup v{v} {c} controller ({p})")
        else:
            lines.append(f"{flag}: {fallback} (no writable cgroup with the {c} controller)")
    lines.append("--timeout: always available (nono's supervisor)")
    return lines
