from __future__ import annotations

from nono.policy.why import View, query_host, query_path


def view():
    rules = [{"path": "/p", "access": "readwrite", "kind": "dir", "source": "user"},
             {"path": "/r", "access": "read", "kind": "dir", "source": "user"},
             {"path": "/f.txt", "access": "read", "kind": "file", "source": "user"}]
    return View(rules, [("/p/.ssh", "group:deny_credentials")], [], {"mode": "blocked", "connect_ports": [443]})


def test_allowed_and_granted_by():
    v = query_path(view(), "/p/a/b", "write")
    assert v["status"] == "allowed" and v["granted_path"] == "/p" and v["source"] == "user"


def test_sensitive_wins_over_grant():
    v = query_path(view(), "/p/.ssh/id_rsa", "read")
    assert v["status"] == "denied" and v["reason"] == "sensitive_path"
    assert v["policy_source"] == "group:deny_credentials"


def test_insufficient_access_suggests_a_flag():
    v = query_path(view(), "/r/x", "write")
    assert v["reason"] == "insufficient_access"
    assert v["matching_capability"]["path"] == "/r"
    assert str(v["suggested_flag"]).startswith("--write")


def test_file_grant_covers_only_that_file():
    assert query_path(view(), "/f.txt", "read")["status"] == "allowed"
    assert query_path(view(), "/f.txt2", "read")["status"] == "denied"


def test_not_granted_never_suggests_root():
    v = query_path(view(), "/nonexistent-top/a/b", "read")
    assert v["reason"] == "path_not_granted"
    assert v["suggested_flag"] != "--read /"


def test_hosts():
    assert query_host(view(), "example.com")["status"] == "allowed"  # port 443 is open
    v = query_host(view(), "https://example.com:8443/x")
    assert v["status"] == "denied" and v["port"] == 8443 and v["reason"] == "network_blocked"
    open_view = View([], [], [], {"mode": "allowed"})
    assert query_host(open_view, "example.com")["reason"] == "network_allowed"
