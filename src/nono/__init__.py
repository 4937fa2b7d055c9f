"""nono: a kernel-enforced sandbox for AI agents and the tools they run.

::

    import nono

    policy = nono.Policy().allow_read("/data/inputs").allow_write("/tmp/ws").block_network()
    result = nono.run(["python", "tool.py"], policy=policy, capture_output=True)
    nono.Sandbox.apply(policy)   # irreversible: this process and its children

Importing this package is cheap: names are loaded on first use.
"""


__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import CompletedProcess, ProxyConfig, Sandbox, run
    from .errors import KernelError, NonoError, PolicyError, SandboxError
    from .policy.model import Grant, Policy
    from .rollback.api import Snapshots

__all__ = [
    "CompletedProcess",
    "Grant",
    "KernelError",
    "NonoError",
    "Policy",
    "PolicyError",
    "ProxyConfig",
    "Sandbox",
    "SandboxError",
    "Snapshots",
    "__version__",
    "run",
]

_LAZY = {
    "CompletedProcess": "api", "ProxyConfig": "api", "Sandbox": "api", "run": "api",
    "KernelError": "errors", "NonoError": "errors", "PolicyError": "errors", "SandboxError": "errors",
    "Grant": "policy.model", "Policy": "policy.model", "Snapshots": "rollback.api",
}


def __getattr__(name: str) -> object:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'nono' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"nono.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
