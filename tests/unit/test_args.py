from __future__ import annotations

import pytest

from nono.cli import args as A


def parse(argv, env=None, monkeypatch=None):
    return A.parse("run", A.SANDBOX_FLAGS, argv, trailing=True)


def test_trailing_program_ends_options():
    opts, rest = parse(["--allow", "/a", "python", "--allow", "x"])
    assert opts["allow"] == ["/a"]
    assert rest == ["python", "--allow", "x"]


def test_double_dash_and_comma_split():
    opts, rest = parse(["-a", "/a,/b", "--read=/r", "-w", "/w", "--", "-weird-program"])
    assert opts["allow"] == ["/a", "/b"]
    assert opts["read"] == ["/r"] and opts["write"] == ["/w"]
    assert rest == ["-weird-program"]


def test_short_inline_value_and_counts():
    opts, _ = parse(["-a/x", "-vv", "-v", "true"])
    assert opts["allow"] == ["/x"]
    assert opts["verbose"] == 3


def test_aliases_map_to_the_same_option():
    opts, _ = parse(["--net-block", "--allow-port", "8080", "--allow-bind", "9000", "--override-deny", "/p", "x"])
    assert opts["block_net"] is True
    assert opts["open_port"] == [8080]
    assert opts["listen_port"] == [9000]
    assert opts["bypass_protection"] == ["/p"]


@pytest.mark.parametrize("argv, needle", [
    (["--frobnicate", "x"], "--frobnicate"),
    (["--allow-connect-port", "http", "x"], "expects a number"),
    (["--allow"], "needs a value"),
    (["--block-net=yes", "x"], "takes no value"),
    (["-a", "/a,,/b", "x"], "empty path"),
])
def test_usage_errors_name_the_problem(argv, needle):
    with pytest.raises(A.UsageError) as exc:
        parse(argv)
    assert needle in exc.value.message


def test_env_equivalents_and_cli_precedence(monkeypatch):
    monkeypatch.setenv("NONO_ALLOW", "/e1,/e2")
    monkeypatch.setenv("NONO_BLOCK_NET", "yes")
    opts, _ = parse(["x"])
    assert opts["allow"] == ["/e1", "/e2"] and opts["block_net"] is True
    opts, _ = parse(["--allow", "/cli", "x"])
    assert opts["allow"] == ["/cli"]
    monkeypatch.setenv("NONO_BLOCK_NET", "maybe")
    with pytest.raises(A.UsageError):
        parse(["x"])


def test_help_is_requested():
    with pytest.raises(A.HelpRequested):
        parse(["--help"])


def test_every_flag_appears_in_help():
    text = A.format_flags(A.SANDBOX_FLAGS)
    for f in A.SANDBOX_FLAGS:
        assert f.names[-1] in text or f.names[0] in text
