"""Redaction of secrets before anything reaches the audit store.

Rules (no ``re``: this runs in the supervisor, on the start-up path):

* **Names.** A dict key, a ``--flag`` (``--token X`` / ``--token=X``), a ``NAME=VALUE`` word, a
  URL query key or a header name is *sensitive* when one of its ``-``/``_``-separated words is a
  secret word (token, secret, password, auth, cookie, credential, apikey, ...) or it contains a
  secret pair (api key, access key, private key, ...). Names whose last word describes metadata
  (``token_count``, ``key_file``, ``policy_digest``, ``secret_ref``, ...) are not.
  URL query keys ``key``, ``sig`` and ``signature`` are sensitive too.
* **Headers.** ``Authorization: Bearer X`` becomes ``Authorization: Bearer [REDACTED]``
  (authorization, proxy-authorization, cookie, set-cookie, x-api-key, private-token, ...).
* **URLs.** The password of ``scheme://user:pass@host`` (or a lone user, which is often a token)
  and the values of sensitive query keys.
* **Known token shapes**, wherever they appear: ``sk-`` (OpenAI, Anthropic), ``ghp_``/``gho_``/
  ``ghu_``/``ghs_``/``ghr_``/``github_pat_``, ``glpat-``, ``xoxb-``/``xoxp-``/``xapp-``, ``hf_``,
  ``npm_``, ``pypi-``, ``AKIA`` + 16, ``AIza`` + 35, and JWTs (``eyJ...``). The prefix is kept
  (``ghp_[REDACTED]``) so a reader still sees what kind of secret was there.

Bare hex strings are never redacted on shape alone: policy digests, hashes and commit ids
are hex too. (nono's own phantom tokens are 64 hex digits, but they are worthless outside
one session and they travel in headers, which the header rule covers.)
"""

MARK = "[REDACTED]"

_SECRET_WORDS = frozenset((
    "token", "tokens", "secret", "secrets", "password", "passwd", "passphrase", "pass", "pwd", "auth",
    "authorization", "cookie", "cookies", "credential", "credentials", "apikey", "bearer", "pat", "otp",
    "privatekey", "accesskey", "secretkey", "sessionid", "signature", "sig",
))
_SECRET_PAIRS = frozenset((("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("client", "secret"), ("session", "key"), ("signing", "key"), ("master", "key"),
                           ("encryption", "key"), ("session", "id"), ("x", "key")))
_META_WORDS = frozenset(("digest", "hash", "sha256", "id", "ids", "count", "file", "path", "ref", "service",
                         "source", "name", "kind", "type", "len", "length", "env", "var", "header", "shape",
                         "prefix", "url", "uri", "host", "hosts", "endpoint", "expires", "expiry", "scope",
                         "scopes", "redacted", "used", "present", "set", "mode", "required"))
_QUERY_KEYS = frozenset(("key", "sig", "signature", "code", "access_token", "id_token", "refresh_token"))
_HEADERS = frozenset(("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
                      "x-auth-token", "private-token", "x-goog-api-key", "x-amz-security-token", "x-vault-token",
                      "openai-api-key", "anthropic-api-key", "x-csrf-token"))
_AUTH_SCHEMES = frozenset(("bearer", "basic", "token", "bot", "digest", "negotiate", "apikey", "aws4-hmac-sha256"))

# prefix -> minimum number of token characters after it
_PREFIXES = (("sk-", 20), ("ghp_", 20), ("gho_", 20), ("ghu_", 20), ("ghs_", 20), ("ghr_", 20),
             ("github_pat_", 20), ("glpat-", 20), ("xoxb-", 10), ("xoxp-", 10), ("xoxa-", 10), ("xapp-", 10),
             ("hf_", 20), ("npm_", 30), ("pypi-", 40), ("AKIA", 16), ("ASIA", 16), ("AIza", 30), ("eyJ", 30))
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_WS = " \t\n\r"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _words(name: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for ch in name.strip("-'\"$ ").lower():
        if ch in "-_. ":
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


_name_cache: 'dict[str, bool]' = {}


def sensitive_name(name: str) -> bool:
    """Whether a key, flag, variable or header name says its value is a secret."""
    hit = _name_cache.get(name)
    if hit is not None:
        return hit
    words = _words(name)
    result = False
    if words and words[0] != "no" and words[-1] not in _META_WORDS:
        result = any(w in _SECRET_WORDS for w in words) or any(
            (a, b) in _SECRET_PAIRS for a, b in zip(words, words[1:]))
    if len(_name_cache) < 4096:
        _name_cache[name] = result
    return result


def _quick_clean(s: str) -> bool:
    """True when ``s`` cannot contain anything the rules would change (the common case)."""
    return not ("=" in s or ":" in s or "@" in s or "-" in s or "_" in s or "AKIA" in s or "ASIA" in s
                or "AIza" in s or "eyJ" in s)


def text(s: str) -> str:
    """Redact one free-form string (an argument, a header line, a URL, a shell command)."""
    if len(s) < 6 or _quick_clean(s):
        return s
    head, colon, rest = s.partition(":")
    name = head.strip().strip("'\"").lower()
    if colon and rest[:2] != "//" and (name in _HEADERS or (" " not in name and sensitive_name(name))) \
            and rest.strip():
        return head + colon + _header_value(rest)
    parts: list[str] = []
    start = 0
    pending = False  # the previous word was a sensitive --flag or header name: its value follows
    scheme_seen = False
    n = len(s)
    i = 0
    while i <= n:
        if i == n or s[i] in _WS:
            if i > start:
                word = s[start:i]
                if pending:
                    core = word.strip("'\"")
                    if not scheme_seen and core.lower() in _AUTH_SCHEMES:
                        scheme_seen = True
                        parts.append(word)
                    else:
                        parts.append(_keep_quotes(word, MARK))
                        pending = scheme_seen = False
                else:
                    new, pending = _word(word)
                    parts.append(new)
            if i < n:
                parts.append(s[i])
            start = i + 1
        i += 1
    return "".join(parts)


def _keep_quotes(word: str, repl: str) -> str:
    lead = len(word) - len(word.lstrip("'\""))
    trail = len(word) - len(word.rstrip("'\""))
    return word[:lead] + repl + (word[len(word) - trail:] if trail else "")


def _header_value(rest: str) -> str:
    stripped = rest.lstrip()
    lead = rest[:len(rest) - len(stripped)]
    first, sp, _tail = stripped.partition(" ")
    if sp and first.lower() in _AUTH_SCHEMES:
        return f"{lead}{first} {MARK}"
    return lead + MARK


def _word(word: str) -> 'tuple[str, bool]':
    """Redact one whitespace-free word; also say whether the next word is a secret value."""
    core = word.strip("'\"")
    if "://" in word:
        return _tokens(_url(word)), False
    if core.startswith("-") and "=" not in core:
        return word, sensitive_name(core)
    if core.endswith(":") and (core[:-1].lower() in _HEADERS):
        return word, True
    if "=" in core and "?" not in core and "&" not in core:
        name, _eq, value = core.partition("=")
        if value and sensitive_name(name):
            return word.replace(core, f"{name}={MARK}", 1), False
    elif "=" in core:
        return _tokens(_query(word)), False
    return _tokens(word), False


def _url(word: str) -> str:
    scheme_end = word.find("://") + 3
    end = scheme_end
    while end < len(word) and word[end] not in "/?#'\"":
        end += 1
    authority = word[scheme_end:end]
    if "@" in authority:
        userinfo, _at, hostport = authority.rpartition("@")
        user, colon, _pw = userinfo.partition(":")
        safe = f"{user}:{MARK}" if colon else MARK
        word = word[:scheme_end] + safe + "@" + hostport + word[end:]
    if "?" in word or "#" in word:
        word = _query(word)
    return word


def _query(word: str) -> str:
    """Redact the values of sensitive keys in ``a=1&token=2`` (after a ``?`` if there is one)."""
    q = word.find("?")
    base, query = (word[:q + 1], word[q + 1:]) if q >= 0 else ("", word)
    frag = ""
    h = query.find("#")
    if h >= 0:
        query, frag = query[:h], query[h:]
    out = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if eq and value and (name.lower() in _QUERY_KEYS or sensitive_name(name)):
            trail = len(value) - len(value.rstrip("'\""))
            out.append(f"{name}={MARK}" + (value[len(value) - trail:] if trail else ""))
        else:
            out.append(item)
    return base + "&".join(out) + frag


def _tokens(s: str) -> str:
    """Replace known token shapes (``ghp_...``, ``sk-...``, ...) keeping the prefix."""
    for prefix, minimum in _PREFIXES:
        start = s.find(prefix)
        while start >= 0:
            if start > 0 and s[start - 1] in _TOKEN_CHARS and s[start - 1] not in "-_.":
                start = s.find(prefix, start + 1)  # inside a longer word (e.g. "task-...")
                continue
            end = start + len(prefix)
            while end < len(s) and s[end] in _TOKEN_CHARS:
                end += 1
            body = s[start + len(prefix):end].rstrip(".")
            if len(body) >= minimum and (prefix != "eyJ" or body.count(".") >= 2):
                s = s[:start] + prefix + MARK + s[start + len(prefix) + len(body):]
                end = start + len(prefix) + len(MARK)
            start = s.find(prefix, end)
    return s


def argv(args: 'list[str] | tuple[str, ...]') -> list[str]:
    """Redact a command line: ``--token X``, ``--token=X``, ``-H 'Authorization: ...'``, URLs, tokens."""
    out: list[str] = []
    pending = False
    for a in args:
        a = str(a)
        if pending:
            out.append(MARK)
            pending = False
            continue
        if a.startswith("-") and "=" not in a and " " not in a and sensitive_name(a):
            out.append(a)
            pending = True
            continue
        out.append(text(a))
    return out


def value(v: 'Any', key: str = "") -> 'Any':
    """Redact a JSON-like value: sensitive keys lose their values, strings go through :func:`text`."""
    if key and sensitive_name(key) and v not in (None, "", True, False):
        return MARK
    if isinstance(v, str):
        return text(v)
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, dict):
        return {str(k): value(x, str(k)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        if key in ("command", "argv", "args"):
            return argv([str(x) for x in v])
        return [value(x) for x in v]
    return text(str(v))
