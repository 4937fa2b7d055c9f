"""Signed instruction files, verified before the agent starts.

Instruction files (``CLAUDE.md``, ``AGENTS.md``, ``.mcp.json``, ...) steer what an agent does,
so a changed one is as dangerous as a changed binary. A *trust policy* (``trust-policy.json``
in the project and/or ``$XDG_CONFIG_HOME/nono/trust-policy.json``) says which files are
covered, whose signatures count (publishers), which digests are known bad (blocklist) and
what happens on failure (``deny`` > ``warn`` > ``audit``, strictest wins on merge).

Entry point for ``nono run``::

    from nono import trust
    pre = trust.preflight(workdir, override=opts["trust_override"], out=print_to_stderr)
    # raises trust.TrustError under deny; pre.protected_files -> read-only in the sandbox

With no trust policy anywhere, :func:`preflight` performs two ``stat`` calls and returns: it
imports nothing beyond ``os`` (no ``json``, ``hashlib`` or ``cryptography``) on that path.

Modules: :mod:`.dsse` (envelopes, PAE), :mod:`.keys` (keygen, keyring/file keys),
:mod:`.bundle` (Sigstore bundle v0.3 + in-toto Statement v1), :mod:`.policy` (load, merge),
:mod:`.sign`, :mod:`.verify` (per-file checks, the pre-launch scan).
"""

import os

from ..errors import NonoError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["POLICY_FILE", "Preflight", "TrustError", "preflight", "user_policy_path"]

POLICY_FILE = "trust-policy.json"


class TrustError(NonoError):
    """A trust check failed, or a key, bundle or policy could not be used.

    ``path`` is the file concerned (if any); ``reason`` a short machine tag: ``missing``,
    ``digest``, ``signature``, ``publisher``, ``blocklist``, ``malformed``, ``key``,
    ``unsupported``, ``policy`` or ``denied`` (the pre-launch refusal).
    """

    def __init__(self, message: str, *, path: str = "", reason: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.reason = reason


class Preflight:
    """What :func:`preflight` found (empty when no policy applies).

    * ``verified_files``: absolute paths of covered files that verified.
    * ``protected_files``: ``verified_files`` plus their bundles and the trust policy files (and
      their bundles): everything that should be read-only to the agent, so it cannot weaken
      its own instructions or the policy for the next run.
    * ``messages``: one line per problem (printed already under ``warn``/override).
    * ``digests``: absolute path -> sha256 hex of every covered file that was read.
    * ``enforcement``: the merged mode (``deny``, ``warn``, ``audit``) or ``""`` with no policy.
    """

    __slots__ = ("digests", "enforcement", "messages", "policy_files", "protected_files", "verified_files")

    def __init__(self) -> None:
        self.verified_files: list[str] = []
        self.protected_files: list[str] = []
        self.messages: list[str] = []
        self.digests: dict[str, str] = {}
        self.enforcement = ""
        self.policy_files: list[str] = []

    @property
    def active(self) -> bool:
        """True when a trust policy was found."""
        return bool(self.enforcement)


def user_policy_path() -> str:
    """``$XDG_CONFIG_HOME/nono/trust-policy.json`` (``~/.config/...`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "nono", POLICY_FILE)


def preflight(workdir: str, *, override: bool, out: 'Callable[[str], None]') -> Preflight:
    """Verify the instruction files in ``workdir`` before a launch.

    Loads the project and user trust policies (merged; strictest enforcement wins), finds
    covered files and verifies each against its ``<file>.bundle`` (or the multi-subject
    ``.nono-trust.bundle``). Under ``deny`` a failure raises :class:`TrustError` naming the file
    and the reason; ``override`` (``--trust-override``) turns that into warnings. Under
    ``warn`` problems go to ``out`` and the launch continues; under ``audit`` they are only
    recorded in :attr:`Preflight.messages`. A blocklisted digest is refused in every mode.

    Raises :class:`TrustError` (also for a malformed policy file).
    """
    project = os.path.join(workdir, POLICY_FILE)
    user = user_policy_path()
    if not (os.path.lexists(project) or os.path.lexists(user)):
        return Preflight()
    from .verify import run_preflight

    return run_preflight(workdir, project if os.path.lexists(project) else "", user if os.path.lexists(user) else "",
                         override=override, out=out)
