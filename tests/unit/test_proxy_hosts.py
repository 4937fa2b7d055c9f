"""Host patterns, --allow-domain values, endpoint rules, network profiles, the filter by name."""

from __future__ import annotations

import pytest

from nono.errors import PolicyError
from nono.proxy.hosts import (
    Allowlist,
    EndpointRule,
    load_network_profile,
    network_profile_names,
    normalize_host,
    parse_allow_domain,
    parse_host_pattern,
    request_segments,
)
from nono.proxy.rules import REASON_NEEDS_TLS, ProxySettings, parse_resolve_overrides


@pytest.mark.parametrize("raw,norm", [
    ("API.GitHub.com", "api.github.com"),
    ("api.github.com.", "api.github.com"),
    ("  example.org ", "example.org"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("[::1]", "::1"),
    ("0:0::1", "::1"),
    ("127.0.0.1", "127.0.0.1"),
    ("under_score.example", "under_score.example"),
])
def test_normalize_host(raw: str, norm: str) -> None:
    assert normalize_host(raw) == norm


@pytest.mark.parametrize("raw", ["", ".", "a..b", "exa mple.com", "x" * 64 + ".com", "1.2.3", "0x7f.1",
                                 "2130706433", "01.2.3.4", "256.1.1.1", "fe80::1%eth0", "[::1", "a/b", "a@b"])
def test_normalize_host_rejects(raw: str) -> None:
    with pytest.raises(PolicyError):
        normalize_host(raw)


@pytest.mark.parametrize("pattern,host,port,expected", [
    ("api.github.com", "api.github.com", 443, True),
    ("api.github.com", "API.GITHUB.COM.", 443, True),
    ("api.github.com", "github.com", 443, False),
    ("api.github.com", "evil-api.github.com", 443, False),
    ("api.github.com", "api.github.com.evil.com", 443, False),
    ("*.githubusercontent.com", "raw.githubusercontent.com", 443, True),
    ("*.githubusercontent.com", "a.b.githubusercontent.com", 443, True),
    ("*.githubusercontent.com", "githubusercontent.com", 443, False),
    ("*.githubusercontent.com", "evilgithubusercontent.com", 443, False),
    (".googleapis.com", "x.googleapis.com", 443, True),
    ("api.github.com:443", "api.github.com", 443, True),
    ("api.github.com:443", "api.github.com", 80, False),
    ("[::1]:8080", "::1", 8080, True),
    ("::1", "::1", 1, True),
])
def test_host_pattern_matching(pattern: str, host: str, port: int, expected: bool) -> None:
    assert parse_host_pattern(pattern).matches(normalize_host(host), port) is expected


@pytest.mark.parametrize("bad", ["*", "*.", "a.*.com", "api.*", "*.1.2.3.4", "host:0", "host:70000", "host:http",
                                 "[::1]x", "ftp://host/", "https://user@host/", "GET host"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(PolicyError):
        parse_allow_domain(bad)


def test_url_forms() -> None:
    entry = parse_allow_domain("https://api.github.com/repos/acme/**")
    assert str(entry.pattern) == "api.github.com" and entry.endpoints == (EndpointRule("*", "/repos/acme/**"),)
    entry = parse_allow_domain("post https://API.github.com:8443/graphql")
    assert str(entry.pattern) == "api.github.com:8443" and entry.endpoints == (EndpointRule("POST", "/graphql"),)
    for whole in ("https://api.github.com", "https://api.github.com/", "http://api.github.com/**"):
        assert parse_allow_domain(whole).endpoints == ()
    obj = parse_allow_domain({"domain": "*.example.com", "endpoints": [{"method": "GET", "path": "/v1/*"}, {"path": "/x"}]})
    assert str(obj.pattern) == "*.example.com"
    assert obj.endpoints == (EndpointRule("GET", "/v1/*"), EndpointRule("*", "/x"))
    for bad in ({"domain": 1}, {"domain": "a.com", "extra": 1}, {"domain": "a.com", "endpoints": [{"path": "x"}]},
                {"domain": "a.com", "endpoints": "GET /"}):
        with pytest.raises(PolicyError):
            parse_allow_domain(bad)


@pytest.mark.parametrize("rule,method,target,expected", [
    ("/repos/*", "GET", "/repos/acme", True),
    ("/repos/*", "GET", "/repos/acme/x", False),
    ("/repos/*", "GET", "/repos/", False),
    ("/repos/**", "GET", "/repos/acme/x/y?z=1", True),
    ("/repos/**", "GET", "/repos", True),
    ("/repos/**", "GET", "/reposx", False),
    ("/a/**/z", "GET", "/a/b/c/z", True),
    ("/a/**/z", "GET", "/a/z", True),
    ("/v1/chat*", "GET", "/v1/chat-completions", True),
    ("/v1/*.json", "GET", "/v1/x.json", True),
    ("/v1/*.json", "GET", "/v1/x.jsonp", False),
    ("/repos/acme/**", "GET", "/repos/acme/../evil", False),
    ("/repos/acme/**", "GET", "/repos/acme/%2e%2e/evil", False),
    ("/repos/acme/**", "GET", "/repos/acme/x%2Fy", False),
    ("/repos/acme/**", "GET", "/repos//acme/x", False),
    ("/repos/acme/**", "GET", "/repos/acme\\..\\x", False),
])
def test_endpoint_globs(rule: str, method: str, target: str, expected: bool) -> None:
    assert EndpointRule("*", rule).matches(method, target) is expected


def test_endpoint_method() -> None:
    rule = EndpointRule("get", "/x")
    assert rule.matches("GET", "/x") and not rule.matches("POST", "/x")
    assert request_segments("/a/b/") == ("a", "b", "")
    with pytest.raises(PolicyError):
        EndpointRule("GET", "x")
    with pytest.raises(PolicyError):
        EndpointRule("G ET", "/x")


def test_allowlist_union() -> None:
    al = Allowlist([parse_allow_domain("https://api.github.com/repos/**"), parse_allow_domain("GET http://api.github.com/user"),
                    parse_allow_domain("*.example.com")])
    match = al.lookup("api.github.com", 443)
    assert match is not None and match.endpoints is not None and len(match.endpoints) == 2
    assert match.allows("GET", "/user") and not match.allows("POST", "/user") and match.allows("POST", "/repos/x")
    al2 = Allowlist([*al.entries, parse_allow_domain("api.github.com")])
    whole = al2.lookup("api.github.com", 443)
    assert whole is not None and whole.endpoints is None
    assert al.lookup("github.com", 443) is None
    hit = al.lookup("a.example.com", 1)
    assert hit is not None and hit.patterns == ("*.example.com",)


def test_network_profiles() -> None:
    names = network_profile_names()
    for expected in ("minimal", "developer", "claude-code", "codex", "gemini-cli", "opencode", "enterprise"):
        assert expected in names
    minimal = load_network_profile("minimal")
    assert "api.anthropic.com" in minimal and "pypi.org" not in minimal
    enterprise = load_network_profile("enterprise")
    assert "*.googleapis.com" in enterprise and "*.openai.azure.com" in enterprise
    for name in names:
        for pattern in load_network_profile(name):
            parse_host_pattern(pattern)  # every data-file entry is a valid pattern
    with pytest.raises(PolicyError) as info:
        load_network_profile("nope")
    assert "minimal" in info.value.hint


def test_filter_by_name() -> None:
    f = ProxySettings(allow=["api.github.com", "https://docs.example.com/v1/**", "metadata.google.internal"],
                      endpoint_rules={"api.github.com": ["GET /never"], "rules.example": [("POST", "/x")]}).compile()
    assert f.check_host("api.github.com", 443, "CONNECT").allowed  # whole host wins over its extra rule
    assert f.check_host("evil.example.com", 443, "CONNECT").reason == "not in allowlist"
    assert f.check_host("docs.example.com", 443, "CONNECT").reason == REASON_NEEDS_TLS
    assert f.check_host("docs.example.com", 80, "GET", "/v1/a").allowed
    assert not f.check_host("docs.example.com", 80, "GET", "/v2/a").allowed
    assert f.check_host("rules.example", 80, "POST", "/x").allowed
    assert not f.check_host("rules.example", 80, "GET", "/x").allowed
    md = f.check_host("metadata.google.internal", 80, "GET", "/")
    assert not md.allowed and md.reason.startswith("ssrf")  # even when allowlisted
    assert f.check_host("docs.example.com", 443).allowed  # no method: name-level answer for `why`


def test_settings_validation() -> None:
    for bad in (ProxySettings(allow=["*"]), ProxySettings(loopback_ports=frozenset({0})),
                ProxySettings(upstream=("", 3128)), ProxySettings(resolve_overrides={"a.test": ["nope"]})):
        with pytest.raises(PolicyError):
            bad.compile()


def test_resolve_overrides() -> None:
    assert parse_resolve_overrides("a.test=127.0.0.1, B.test=::1,a.test=[::1]") == {
        "a.test": ["127.0.0.1", "::1"], "b.test": ["::1"]}
    for bad in ("a.test", "a.test=host", "=1.2.3.4"):
        with pytest.raises(PolicyError):
            parse_resolve_overrides(bad)


@pytest.mark.parametrize("target", ["/public/..;/admin", "/public/..;x/..;/admin", "/public/%u002e%u002e/admin",
                                    "/public/%c0%ae%c0%ae/admin", "/public/%252e%252e/admin", "/public/a;b"])
def test_server_normalised_path_forms_never_match(target):
    """Forms Java servers, IIS or double decoding turn into another path are ambiguous: no rule matches them."""
    from nono.proxy.hosts import request_segments

    assert request_segments(target) is None
