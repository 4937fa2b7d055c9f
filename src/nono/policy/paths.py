"""Path expansion (``~``, ``$HOME``, ``$TMPDIR``, ``$UID``, ``$XDG_*``) and containment."""

import os

from ..errors import PolicyError

_XDG_DEFAULTS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_STATE_HOME": ".local/state",
    "XDG_CACHE_HOME": ".cache",
    "XDG_DATA_HOME": ".local/share",
}


def home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def variables(workdir: str | None = None) -> dict[str, str]:
    """The variables a policy path may use, with their values now."""
    h = home()
    tmp = os.environ.get("TMPDIR") or "/tmp"
    out = {"HOME": h, "TMPDIR": tmp, "UID": str(os.getuid()), "WORKDIR": workdir or os.getcwd()}
    for name, rel in _XDG_DEFAULTS.items():
        out[name] = os.environ.get(name) or os.path.join(h, rel)
    if os.environ.get("XDG_RUNTIME_DIR"):
        out["XDG_RUNTIME_DIR"] = os.environ["XDG_RUNTIME_DIR"]
    out["NONO_CONFIG"] = os.path.join(out["XDG_CONFIG_HOME"], "nono")
    return out


def expand(path: str, vars_: dict[str, str] | None = None, *, cwd: str | None = None) -> str:
    """Expand ``~`` and ``$VAR``/``${VAR}`` prefixes, then make the path absolute.

    An unknown variable is an error naming it; relative paths are taken from
    ``cwd`` (default: the current directory) and normalised (``..`` folded).
    """
    if not path:
        raise PolicyError("empty path")
    v = vars_ if vars_ is not None else variables()
    if path == "~" or path.startswith("~/"):
        path = v["HOME"] + path[1:]
    path = substitute(path, v, what="path")
    if not path.startswith("/"):
        path = os.path.join(cwd or os.getcwd(), path)
    return os.path.normpath(path)


def substitute(text: str, vars_: dict[str, str], *, what: str = "value") -> str:
    """Replace ``$VAR`` and ``${VAR}`` with values from ``vars_``; an unknown name is an error."""
    if "$" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if text.startswith("${", i):
            j = text.find("}", i)
            if j < 0:
                raise PolicyError(f"unterminated '${{' in {what} {text!r}", path=text)
            name, i = text[i + 2 : j], j + 1
        else:
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            name, i = text[i + 1 : j], j
        if name not in vars_:
            raise PolicyError(f"variable ${name} in {what} {text!r} is not set", path=text)
        out.append(vars_[name])
    return "".join(out)


def is_within(path: str, root: str) -> bool:
    """True if ``path`` equals ``root`` or lies beneath it (component-wise)."""
    return path == root or root == "/" or path.startswith(root + "/")
