from __future__ import annotations

import os

import pytest

import nono
from nono.errors import PolicyError
from nono.policy.paths import expand, is_within


def test_expand_variables_and_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert expand("~/x") == "/home/u/x"
    assert expand("$HOME/a/../b") == "/home/u/b"
    assert expand("${XDG_CONFIG_HOME}/nono") == "/home/u/.config/nono"
    assert expand("rel/p", cwd="/base") == "/base/rel/p"
    with pytest.raises(PolicyError, match=r"\$NOPE"):
        expand("$NOPE/x")


def test_is_within_is_component_wise():
    assert is_within("/a/b", "/a")
    assert is_within("/a", "/a")
    assert not is_within("/a/bc", "/a/b")
    assert is_within("/anything", "/")


def test_policy_is_immutable_and_hashable():
    base = nono.Policy()
    p = base.allow_read("/data").block_network()
    assert base.network == "allow" and not base.grants
    assert p.network == "block"
    assert p == nono.Policy().allow_read("/data").block_network()
    assert len({p, nono.Policy().allow_read("/data").block_network()}) == 1


def test_ports_are_validated():
    with pytest.raises(PolicyError):
        nono.Policy().allow_connect_port(70000)
    p = nono.Policy().open_port(8080)
    assert p.loopback_ports == (8080,) and p.bind_ports == (8080,) and p.connect_ports == ()  # loopback only


def test_set_env_refuses_reserved_names():
    with pytest.raises(PolicyError):
        nono.Policy().set_env("PATH", "/x")
    with pytest.raises(PolicyError):
        nono.Policy().set_env("NONO_CAP_FILE", "/x")


def test_public_api_is_pinned():
    assert sorted(nono.__all__) == nono.__all__
    assert nono.__all__ == ["CompletedProcess", "Grant", "KernelError", "NonoError", "Policy", "PolicyError",
                            "ProxyConfig", "Sandbox", "SandboxError", "Snapshots", "__version__", "run"]
    for name in nono.__all__:
        assert getattr(nono, name) is not None


def test_import_nono_is_lazy():
    import subprocess
    import sys

    code = "import sys, nono; print(sorted(m for m in sys.modules if m.startswith('nono')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['nono']"


def test_env_sanitize():
    from nono.policy.groups import sanitize_env as sanitize

    env = sanitize({"LD_PRELOAD": "x", "LD_LIBRARY_PATH": "y", "PYTHONPATH": "p", "BASH_FUNC_f%%": "()",
                    "NODE_OPTIONS": "--r", "SSH_AUTH_SOCK": "/s", "KEEP": "1", "PATH": "/bin"}, [("ADD", "2")])
    assert env == {"KEEP": "1", "PATH": "/bin", "ADD": "2"}
    assert os.environ.get("PATH")  # the real environment is untouched


def test_set_env_refuses_variables_that_load_code():
    import pytest as _pytest

    from nono.errors import PolicyError
    from nono.policy.groups import sanitize_env
    from nono.policy.model import Policy

    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_OPTIONS", "BASH_ENV", "PATH", "NONO_CAP_FILE"):
        with _pytest.raises(PolicyError):
            Policy().set_env(name, "/tmp/x")
    assert Policy().set_env("MY_AGENT", "1").env_set == (("MY_AGENT", "1"),)
    # and the backstop: sanitize_env never lets one through, whoever built the pairs
    assert "LD_PRELOAD" not in sanitize_env({}, [("LD_PRELOAD", "/x"), ("OK", "1")])
