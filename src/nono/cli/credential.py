"""``nono credential set|list|remove NAME``: manage secrets in the system keyring.

Entries live under keyring service ``nono``, account ``NAME`` (what ``--credential NAME``
reads first). ``set`` prompts without echo (``getpass``); scripts use ``--from-env VAR``
or ``--stdin``. Values are never printed. Without a usable keyring (a headless machine
without Secret Service) every subcommand says so and names ``env://`` / ``file://``.
"""

import os
import sys

from ..credentials import sources
from ..credentials.route import CredentialError

HELP = """Usage: nono credential COMMAND [NAME]

Commands:
  set NAME [--from-env VAR | --stdin]   store a secret (prompted, not echoed)
  list [NAME...]                        which secrets are stored (never their values)
  remove NAME                           delete a stored secret

Secrets are kept in the system keyring (service "nono", account NAME) and used by
'nono run --credential NAME'. Without a keyring, use --credential NAME=env://VAR or
--credential NAME=file:///path/to/secret (mode 0600).
"""


def _err(message: str) -> None:
    sys.stderr.write(f"nono: {message}\n")


def cmd_credential(argv: 'list[str]') -> int:
    """Run ``nono credential ...``; returns the exit code (0 ok, 1 failure, 2 usage)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    try:
        if sub == "set":
            return _set(rest)
        if sub in ("list", "ls"):
            return _list(rest)
        if sub in ("remove", "rm", "delete"):
            return _remove(rest)
    except CredentialError as exc:
        _err(exc.diagnostics())
        return 1
    _err(f"error: unknown command 'nono credential {sub}' (set, list, remove)")
    return 2


def _one_name(rest: 'list[str]', usage: str) -> 'str | None':
    names = [a for a in rest if not a.startswith("-")]
    if len(names) != 1:
        _err(f"error: usage: {usage}")
        return None
    sources.check_ref(names[0])
    if "://" in names[0]:
        raise CredentialError(f"{names[0]!r}: name the credential (e.g. openai), not a source URI")
    return names[0]


def _set(rest: 'list[str]') -> int:
    from_env: str | None = None
    use_stdin = False
    args: list[str] = []
    it = iter(rest)
    for a in it:
        if a == "--from-env":
            from_env = next(it, "")
        elif a.startswith("--from-env="):
            from_env = a.split("=", 1)[1]
        elif a == "--stdin":
            use_stdin = True
        elif a.startswith("-"):
            _err(f"error: unknown option {a} for 'nono credential set'")
            return 2
        else:
            args.append(a)
    name = _one_name(args, "nono credential set NAME [--from-env VAR | --stdin]")
    if name is None:
        return 2
    backend = sources.keyring_backend()  # fail before prompting on a machine without a keyring
    if from_env is not None:
        if not from_env or from_env not in os.environ:
            raise CredentialError(f"--from-env {from_env or '(missing)'}: the variable is not set")
        value = os.environ[from_env]
    elif use_stdin:
        value = sys.stdin.readline()
    else:
        if not sys.stdin.isatty():
            raise CredentialError("no terminal to prompt on", hint="use --stdin or --from-env VAR in scripts")
        import getpass

        value = getpass.getpass(f"Secret for {name} (not echoed): ")
    value = value.strip("\r\n")
    if not value:
        raise CredentialError("empty secret: nothing stored")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise CredentialError("the secret contains control characters: nothing stored")
    from keyring.errors import KeyringError

    try:
        backend.set_password(sources.KEYRING_SERVICE, name, value)  # type: ignore[attr-defined]
    except KeyringError as exc:
        raise CredentialError(f"the keyring refused to store {name} ({type(exc).__name__})",
                              hint="unlock the keyring, or " + sources.ALTERNATIVES) from None
    sys.stdout.write(f"stored {name} in the system keyring (keyring://{sources.KEYRING_SERVICE}/{name}); "
                     f"use: nono run --credential {name} ...\n")
    return 0


def _list(rest: 'list[str]') -> int:
    from ..credentials.services import builtin_data, builtin_names

    names = [a for a in rest if not a.startswith("-")] or builtin_names()
    try:
        backend: object | None = sources.keyring_backend()
    except CredentialError as exc:
        _err(exc.diagnostics())
        backend = None
    data = builtin_data()
    for name in names:
        state = "keyring: unavailable"
        if backend is not None:
            try:
                stored = backend.get_password(sources.KEYRING_SERVICE, name) is not None  # type: ignore[attr-defined]
                state = "keyring: set" if stored else "keyring: not set"
            except Exception as exc:  # a locked or broken keyring: report, keep listing
                state = f"keyring: error ({type(exc).__name__})"
        entry = data.get(name, {})
        envs = [s[6:] for s in entry.get("sources", []) if isinstance(s, str) and s.startswith("env://")]  # type: ignore[attr-defined]
        present = [v for v in envs if v in os.environ]
        extra = f"  (env: {', '.join(present)} set)" if present else ""
        sys.stdout.write(f"{name:<12} {state}{extra}\n")
    return 0 if backend is not None else 1


def _remove(rest: 'list[str]') -> int:
    name = _one_name(rest, "nono credential remove NAME")
    if name is None:
        return 2
    backend = sources.keyring_backend()
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        backend.delete_password(sources.KEYRING_SERVICE, name)  # type: ignore[attr-defined]
    except PasswordDeleteError:
        raise CredentialError(f"no stored credential named {name!r}") from None
    except KeyringError as exc:
        raise CredentialError(f"the keyring refused to delete {name} ({type(exc).__name__})") from None
    sys.stdout.write(f"removed {name} from the system keyring\n")
    return 0
