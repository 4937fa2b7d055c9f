"""Where real secrets come from: the system keyring, ``env://``, ``file://``, ``op://``.

Reference forms (``credential_key`` in a profile, ``SERVICE=REF`` on the command line):

* ``NAME`` (bare)             keyring entry: service ``nono``, account ``NAME``
* ``keyring://SERVICE/ACCOUNT``  any keyring entry
* ``env://VAR``               nono's own environment (then kept out of the child's)
* ``file:///abs/path``        a file readable by its owner only (like ssh's key files)
* ``op://vault/item/field``   the 1Password CLI (``op read``) when it is installed

Secrets are loaded in the supervisor, before the proxy forks. Error messages name
the reference, never the value. ``keyring`` is imported only when used.
"""

import os

from .route import CredentialError

KEYRING_SERVICE = "nono"
ALTERNATIVES = "use env://VAR (from nono's environment) or file:///path/to/secret (mode 0600) instead"
_SCHEMES = ("keyring://", "env://", "file://", "op://")
_UNSUPPORTED = ("bw://", "apple-password://", "cmd://")


def describe(ref: str) -> str:
    """A short human form of a reference (never the secret)."""
    return ref if "://" in ref else f"keyring://{KEYRING_SERVICE}/{ref}"


def env_var_of(ref: str) -> 'str | None':
    """The variable an ``env://VAR`` reference reads, else None."""
    return ref[len("env://"):] if ref.startswith("env://") else None


def check_ref(ref: str) -> None:
    """Validate a reference's syntax; raises :class:`CredentialError`."""
    if not ref:
        raise CredentialError("empty credential reference", hint="NAME, keyring://S/A, env://VAR, file:///path, op://...")
    for scheme in _UNSUPPORTED:
        if ref.startswith(scheme):
            raise CredentialError(f"credential source {scheme} is not supported by nono for Python",
                                  hint=ALTERNATIVES)
    if "://" in ref:
        if not ref.startswith(_SCHEMES):
            raise CredentialError(f"unknown credential source {ref.split('://', 1)[0]}://",
                                  hint="use NAME (keyring), keyring://SERVICE/ACCOUNT, env://VAR, file:///path or op://...")
        if ref.startswith("env://") and not _is_env_name(ref[6:]):
            raise CredentialError(f"invalid variable name in {ref!r}")
        if ref.startswith("file://") and not ref[7:].startswith("/"):
            raise CredentialError(f"{ref!r}: a file:// reference needs an absolute path (file:///home/me/key)")
        if ref.startswith("keyring://") and "/" not in ref[10:].strip("/"):
            raise CredentialError(f"{ref!r}: expected keyring://SERVICE/ACCOUNT")
    elif not ref.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise CredentialError(f"invalid credential name {ref!r}", hint="letters, digits, '_', '-', '.'")


def _is_env_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and name.replace("_", "").isalnum() and name.isascii()


def load(ref: str) -> str:
    """The secret a reference names; raises :class:`CredentialError` (message without the value)."""
    check_ref(ref)
    if ref.startswith("env://"):
        value = os.environ.get(ref[6:])
        if value is None:
            raise CredentialError(f"{ref}: the variable is not set in nono's environment",
                                  hint="export it before running nono, or store the secret: nono credential set NAME")
    elif ref.startswith("file://"):
        value = _read_file(ref[7:])
    elif ref.startswith("op://"):
        value = _op_read(ref)
    elif ref.startswith("keyring://"):
        service, _, account = ref[10:].strip("/").partition("/")
        value = keyring_get(service, account)
    else:
        value = keyring_get(KEYRING_SERVICE, ref)
    value = value.strip("\r\n")
    if not value:
        raise CredentialError(f"{describe(ref)}: the secret is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise CredentialError(f"{describe(ref)}: the secret contains control characters (a newline inside?)",
                              hint="a credential must be one line of printable characters")
    return value


def _read_file(path: str) -> str:
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CredentialError(f"file://{path}: no such file") from None
    except OSError as exc:
        raise CredentialError(f"file://{path}: cannot open ({exc.strerror})",
                              hint="symbolic links are not followed; name the file itself") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(f"file://{path}: not a regular file")
        if st.st_mode & 0o077:
            raise CredentialError(f"file://{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open "
                                  "(group or others can access it)", hint=f"chmod 600 {path}")
        if st.st_uid not in (os.getuid(), 0):
            raise CredentialError(f"file://{path}: owned by another user (uid {st.st_uid})")
        if st.st_size > 64 * 1024:
            raise CredentialError(f"file://{path}: larger than 64 KiB; not a credential")
        data = os.read(fd, 64 * 1024 + 1)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"file://{path}: not UTF-8 text") from None


def _op_read(ref: str) -> str:
    import shutil
    import subprocess

    op = shutil.which("op")
    if op is None:
        raise CredentialError(f"{ref}: the 1Password CLI (op) is not installed", hint=ALTERNATIVES)
    try:
        done = subprocess.run([op, "read", "--no-newline", ref], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialError(f"{ref}: running op failed ({type(exc).__name__})") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CredentialError(f"{ref}: op read failed" + (f": {detail[-1][:200]}" if detail else ""),
                              hint="sign in with 'op signin', or " + ALTERNATIVES)
    return done.stdout.decode("utf-8", "replace")


# -- the system keyring -------------------------------------------------------------------
def keyring_backend() -> object:
    """The usable keyring backend; raises :class:`CredentialError` on a machine without one."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise CredentialError("the keyring library is not installed (pip install keyring)", hint=ALTERNATIVES) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise CredentialError("no system keyring is available (no Secret Service on this machine: "
                              "a headless session or no D-Bus)", hint=ALTERNATIVES)
    return backend


def keyring_get(service: str, account: str) -> str:
    """Read one keyring entry; a missing entry says how to create it."""
    backend = keyring_backend()
    from keyring.errors import KeyringError, NoKeyringError

    try:
        value = backend.get_password(service, account)  # type: ignore[attr-defined]
    except NoKeyringError:
        raise CredentialError("no system keyring is available", hint=ALTERNATIVES) from None
    except KeyringError as exc:
        raise CredentialError(f"keyring://{service}/{account}: the keyring refused ({type(exc).__name__}: {exc})",
                              hint="unlock the keyring, or " + ALTERNATIVES) from None
    if value is None:
        how = f"nono credential set {account}" if service == KEYRING_SERVICE else "add it to your keyring"
        raise CredentialError(f"keyring://{service}/{account}: no such entry in the system keyring",
                              hint=f"{how}, or {ALTERNATIVES}")
    return str(value)
