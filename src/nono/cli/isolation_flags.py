"""The ``nono run``/``nono shell`` flags for namespaces and resource limits (section "Isolation").

The lead appends :data:`ISOLATION_FLAGS` to the flag table of ``run`` and ``shell`` and,
only when :func:`wanted` says a flag was given, imports :mod:`nono.sandbox.isolation`
(see the top of :mod:`nono.sandbox.limits` for the exact wiring). Values stay strings
here; :func:`nono.sandbox.isolation.from_options` parses and validates them.
"""

from .args import Flag

ISO = "Isolation"

ISOLATION_FLAGS = (
    Flag("memory", ("--memory",), "str",
         "limit memory to SIZE (512M, 2G, 1.5GiB, 500MB); cgroup if delegated, else RLIMIT_AS per process",
         metavar="SIZE", env="NONO_MEMORY", section=ISO),
    Flag("cpus", ("--cpus",), "str", "limit CPU to N cores (1, 1.5, 0.25); needs a cgroup cpu controller",
         metavar="N", env="NONO_CPUS", section=ISO),
    Flag("max_processes", ("--max-processes",), "int",
         "limit the number of processes (cgroup pids.max, else RLIMIT_NPROC of your uid)",
         metavar="N", env="NONO_MAX_PROCESSES", section=ISO),
    Flag("timeout", ("--timeout",), "str",
         "kill the program and everything it started after DURATION (30s, 30m, 1h30m); exit 124",
         metavar="DURATION", env="NONO_TIMEOUT", section=ISO),
    Flag("isolate", ("--isolate",), "list",
         "run in new namespaces: pid,ipc,uts,net,mount or all (needs user namespaces unless root)",
         metavar="LIST", env="NONO_ISOLATE", split=True, section=ISO),
)

_DESTS = tuple(f.dest for f in ISOLATION_FLAGS)


def wanted(opts: 'dict[str, object]') -> bool:
    """Was any isolation or limit flag given (so the isolation module must be loaded)?"""
    return any(opts.get(d) for d in _DESTS)
