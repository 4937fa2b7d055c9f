"""What a snapshot leaves out.

In order, for every file or directory met while walking a tracked path:

1. never: nono's own state directory (the store itself);
2. ``--rollback-exclude PATTERN``: with a ``/``, a substring of the absolute path;
   otherwise a glob (``fnmatch``) matched against the entry's name;
3. ``--rollback-include NAME``: an entry with this exact name is kept, whatever follows;
4. unless ``--rollback-all``: heavy, regenerable directories by name (:data:`HEAVY_DIRS`),
   any directory holding a ``CACHEDIR.TAG``, the object stores of version control
   (``.git/objects``, ``.git/lfs``, ``.hg/store``, ``.svn/pristine``; the rest of ``.git`` -
   HEAD, refs, index, config - is tracked so a rollback also puts the repository back);
5. unless ``--rollback-all``: ``.gitignore`` files (see :class:`GitIgnore` for the subset).
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

HEAVY_DIRS = frozenset({
    "node_modules", ".venv", "venv", "target", "__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".gradle", ".next", ".nuxt", ".cache", ".parcel-cache", ".turbo", ".terraform",
})
VCS_STORES = frozenset({(".git", "objects"), (".git", "lfs"), (".hg", "store"), (".svn", "pristine")})
_GLOB_CHARS = frozenset("*?[")


class GitIgnore:
    """The rules of one ``.gitignore`` file, anchored at its directory.

    Supported: blank lines and ``#`` comments, ``!`` negation (last match wins; a file
    inside an excluded directory cannot be re-included, as in git), a trailing ``/``
    (directories only), a leading or inner ``/`` (anchored to this directory), ``*``,
    ``?``, ``[...]`` and ``**`` (``**/x``, ``x/**``, ``a/**/b``), ``\\`` escapes. Not
    read: ``.git/info/exclude`` and the global ``core.excludesFile``.
    """

    def __init__(self, base: str, lines: 'Iterable[str]') -> None:
        import re

        self.base = base
        self.rules: list[tuple[Callable[[str], object], bool, bool]] = []  # (match, negate, dir_only)
        for raw in lines:
            line = raw.rstrip("\n").rstrip("\r")
            if not line or line.startswith("#"):
                continue
            while line.endswith(" ") and not line.endswith("\\ "):
                line = line[:-1]
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            elif line.startswith("\\!") or line.startswith("\\#"):
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            body = _translate(line)
            regex = body if anchored else "(?:.*/)?" + body
            self.rules.append((re.compile(regex + r"\Z", re.DOTALL).match, negate, dir_only))

    @classmethod
    def load(cls, directory: str) -> 'GitIgnore | None':
        try:
            with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            return None
        gi = cls(directory, text.splitlines())
        return gi if gi.rules else None

    def verdict(self, path: str, is_dir: bool) -> 'bool | None':
        """True (ignored), False (re-included by ``!``) or None (no rule matched)."""
        rel = path[len(self.base):].lstrip("/")
        result = None
        for match, negate, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if match(rel):
                result = not negate
        return result


def _translate(pat: str) -> str:
    """A gitignore glob as a regular expression over a '/'-separated relative path."""
    import re

    out = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if pat.startswith("**", i):
            before_ok = i == 0 or pat[i - 1] == "/"
            after = pat[i + 2:i + 3]
            if before_ok and after == "/":
                out.append("(?:.*/)?")
                i += 3
                continue
            if before_ok and after == "":
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pat.find("]", i + 2 if pat[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
                continue
            inner = pat[i + 1:j]
            if inner[:1] in ("!", "^"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class Filter:
    """Decides, entry by entry, what a walk keeps (see the module docstring for the order)."""

    def __init__(self, *, exclude: 'Iterable[str]' = (), include: 'Iterable[str]' = (), all_files: bool = False,
                 never: 'Iterable[str]' = ()) -> None:
        self.all_files = all_files
        self.never = frozenset(os.path.abspath(p) for p in never)
        self.include = frozenset(include)
        ex = list(exclude)
        self.ex_substr = tuple(p for p in ex if "/" in p)
        self.ex_names = frozenset(p for p in ex if "/" not in p and not (_GLOB_CHARS & set(p)))
        globs = [p for p in ex if "/" not in p and _GLOB_CHARS & set(p)]
        self._ex_glob: 'Callable[[str], object] | None' = None
        if globs:
            import fnmatch
            import re

            self._ex_glob = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs), re.DOTALL).match

    @property
    def checks_files(self) -> bool:
        """Do any rules apply to files (not only directories) without a .gitignore?"""
        return bool(self.ex_names or self.ex_substr or self._ex_glob is not None)

    def inside_never(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.never)

    def describe(self) -> 'dict[str, object]':
        return {"exclude": sorted(self.ex_names) + list(self.ex_substr) + (["<globs>"] if self._ex_glob else []),
                "include": sorted(self.include), "all": self.all_files, "gitignore": not self.all_files}

    def excluded(self, path: str, name: str, is_dir: bool, parent_name: str,
                 ignores: 'tuple[GitIgnore, ...]') -> bool:
        """Should the entry ``path`` (named ``name``, inside a directory named ``parent_name``) be skipped?"""
        if is_dir and path in self.never:  # files are only reached through their directories
            return True
        if name in self.ex_names or (self._ex_glob is not None and self._ex_glob(name)):
            return True
        if self.ex_substr and any(s in path for s in self.ex_substr):
            return True
        if name in self.include or self.all_files:
            return False
        if is_dir and (name in HEAVY_DIRS or (parent_name, name) in VCS_STORES
                       or os.path.exists(os.path.join(path, "CACHEDIR.TAG"))):
            return True
        verdict = None
        for gi in ignores:
            v = gi.verdict(path, is_dir)
            if v is not None:
                verdict = v
        return bool(verdict)
