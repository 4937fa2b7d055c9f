"""The built-in agent profiles against the real agents, installed from the npm registry.

``@anthropic-ai/claude-code``, ``@openai/codex`` and ``@google/gemini-cli`` are installed once (per version) into
a cache outside every test home and outside /tmp (``/var/cache/nono-tests/npm``, or ``$NONO_TEST_NPM_CACHE``),
world-readable so ``nobody`` can run them. Each agent then runs ``--version`` and ``--help`` under its own
profile, as root and as ``nobody``, and one sandbox per agent attacks the planted ``~/.ssh/id_rsa`` and
``~/.aws/credentials`` and the other agents' state directories.

* A cached install is reused without touching the network, so the suite runs offline once warmed.
* If the registry cannot be reached the tests SKIP, loudly ("npm registry unreachable: ..."); every other install
  failure FAILS.
* The profiles fail closed on the network (no proxy yet): ``--version`` and ``--help`` must work without it. None of
  the three needs a TTY, ``CI=1`` or ``DISABLE_AUTOUPDATER=1`` for that, so none is set: the agents see the
  environment a user's shell would give them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

CACHE_ROOT = Path(os.environ.get("NONO_TEST_NPM_CACHE", "/var/cache/nono-tests/npm"))
NODE = "/usr/bin/node"  # under /usr, which every profile reads; a node in $HOME (nvm, fnm) would need more grants
INSTALL_TIMEOUT = 600
REGISTRY_TIMEOUT = 30
RUN_TIMEOUT = 120
# npm's error codes for "could not talk to the registry" (as opposed to E404, ETARGET, EBADENGINE, script errors...).
NETWORK_CODES = {"ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ESOCKETTIMEDOUT", "ECONNREFUSED", "ECONNRESET", "ENETUNREACH",
                 "EHOSTUNREACH", "ENETDOWN", "EPIPE", "ERR_SOCKET_TIMEOUT", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
                 "SELF_SIGNED_CERT_IN_CHAIN", "CERT_HAS_EXPIRED"}
PERMISSION_ERRORS = ("EACCES", "EPERM", "Permission denied", "os error 13", "Operation not permitted")


@dataclass(frozen=True)
class Agent:
    profile: str
    package: str
    # Pinned: a version bump is a one-line change here, and a new install directory (the cache is per version).
    version: str
    command: str  # the key of package.json "bin"
    state_dir: str  # relative to $HOME; read-write under its own profile
    credential: str  # a file in state_dir where the agent really keeps its login
    version_line: str  # the exact first line of `--version`
    help_marker: str
    native: bool  # the bin entry is an ELF binary (placed by the package's postinstall), not a node script

    @property
    def slug(self) -> str:
        return f"{self.package.split('/')[-1]}-{self.version}"


AGENTS = [
    # 2.1.197 is the newest claude-code whose package.json accepts Node 20 (`npm view @anthropic-ai/claude-code engines`:
    # 2.1.198 and later declare node >=22.0.0; the node here is v20, and npm itself resolves an unpinned install to
    # 2.1.197 for that reason). The `claude` bin is a native binary that does not run on node at all (2.1.330 ran
    # --version/--help under the profile unchanged), only its postinstall does.
    Agent("claude-code", "@anthropic-ai/claude-code", "2.1.197", "claude", ".claude", ".credentials.json",
          "2.1.197 (Claude Code)", "Usage: claude", native=True),
    # bin/codex.js is a node launcher; it execs the Rust binary from the optional dependency @openai/codex-linux-x64
    # (an alias of @openai/codex@<version>-linux-x64, installed by npm with the package), vendor/<triple>/bin/codex.
    # "codex-cli X" is printed by that binary, so the version check proves the native binary ran.
    Agent("codex", "@openai/codex", "0.169.0", "codex", ".codex", "auth.json",
          "codex-cli 0.169.0", "Usage: codex", native=False),
    # engines: node >=20.
    Agent("gemini-cli", "@google/gemini-cli", "0.61.0", "gemini", ".gemini", "oauth_creds.json",
          "0.61.0", "Usage: gemini", native=False),
]
IDS = [a.profile for a in AGENTS]


# --------------------------------------------------------------------------- installing (once, cached)


@dataclass(frozen=True)
class Installed:
    agent: Agent
    prefix: Path  # npm --prefix: granted read-only to the sandbox
    launcher: tuple[str, ...]  # argv before the agent's own arguments


def _npm() -> str:
    npm = shutil.which("npm")
    if not os.path.exists(NODE) or npm is None:
        pytest.fail(f"the agent-profile tests need {NODE} and npm (found npm={npm}); install nodejs and npm")
    return npm


def _npm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NONO_"))}
    env.update(npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    return env


def _network_error(output: str) -> str | None:
    """The npm error code if ``output`` says the registry could not be reached, else None."""
    codes = set(re.findall(r"\b(?:code|errno) (E[A-Z_]+|[A-Z_]{6,})\b", output))
    hit = codes & NETWORK_CODES
    if hit:
        return sorted(hit)[0]
    if re.search(r"^npm (?:error|ERR!) network ", output, re.M):
        return "network"
    return None


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _why(output: str) -> str:
    """npm's one-line explanation of a network failure ("request to URL failed, reason: ...")."""
    for line in output.splitlines():
        if "failed, reason:" in line or "request to" in line:
            return line.removeprefix("npm error").strip()
    return _tail(output, 3)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs between concurrent pytest processes sharing the cache."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Installer:
    """Installs each agent on first use; reuses ``<cache>/<name>-<version>`` when its package.json is there."""

    def __init__(self) -> None:
        self.unreachable: str | None = None
        self.done: dict[str, Installed] = {}

    def get(self, agent: Agent) -> Installed:
        if agent.profile not in self.done:
            if self.unreachable:
                pytest.skip(self.unreachable)
            dest = CACHE_ROOT / agent.slug
            if not self._cached(agent, dest):
                _npm()
                for d in (CACHE_ROOT.parent, CACHE_ROOT):
                    d.mkdir(mode=0o755, exist_ok=True)
                    os.chmod(d, 0o755)  # nobody must traverse to the install
                with _locked(CACHE_ROOT / ".lock"):
                    if not self._cached(agent, dest):
                        self._check_registry(agent)
                        self._install(agent, dest)
            self.done[agent.profile] = Installed(agent, dest, self._launcher(agent, dest))
        return self.done[agent.profile]

    @staticmethod
    def _pkg_dir(agent: Agent, prefix: Path) -> Path:
        return prefix / "node_modules" / agent.package

    def _cached(self, agent: Agent, dest: Path) -> bool:
        meta = self._pkg_dir(agent, dest) / "package.json"
        return meta.is_file() and json.loads(meta.read_text()).get("version") == agent.version

    def _skip_unreachable(self, why: str) -> NoReturn:
        self.unreachable = (f"npm registry unreachable: {why} -- the claude-code/codex/gemini-cli profile tests did NOT "
                            f"run against the real agents (warm {CACHE_ROOT} on a connected machine to run them offline)")
        pytest.skip(self.unreachable)

    def _check_registry(self, agent: Agent) -> None:
        spec = f"{agent.package}@{agent.version}"
        cmd = [_npm(), "view", "--fetch-retries=0", f"--fetch-timeout={REGISTRY_TIMEOUT * 1000}", spec, "version"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=REGISTRY_TIMEOUT, env=_npm_env(),
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self._skip_unreachable(f"`npm view {spec} version` got no answer in {REGISTRY_TIMEOUT}s")
        if r.returncode != 0:
            code = _network_error(r.stdout + r.stderr)
            if code:
                self._skip_unreachable(f"`npm view {spec} version` failed with {code}: {_why(r.stderr)}")
            pytest.fail(f"`npm view {spec} version` failed (the registry answered):\n{_tail(r.stderr)}")
        assert r.stdout.strip() == agent.version, f"npm view {spec}: {r.stdout!r}"

    def _install(self, agent: Agent, dest: Path) -> None:
        # Into a staging directory, renamed into place only once complete: a killed install never looks cached.
        stage = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(mode=0o755)
        spec = f"{agent.package}@{agent.version}"
        cmd = [_npm(), "install", "--prefix", str(stage), "--cache", str(CACHE_ROOT / "_npm-cache"), "--no-audit",
               "--no-fund", spec]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=_npm_env(),
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            shutil.rmtree(stage, ignore_errors=True)
            pytest.fail(f"`npm install {spec}` did not finish in {INSTALL_TIMEOUT}s (the registry had answered)")
        if r.returncode != 0:
            shutil.rmtree(stage, ignore_errors=True)
            code = _network_error(r.stdout + r.stderr)
            if code:
                self._skip_unreachable(f"`npm install {spec}` failed with {code}: {_why(r.stderr)}")
            pytest.fail(f"`npm install {spec}` failed:\n{_tail(r.stdout + r.stderr)}")
        if agent.native:
            entry = self._entry(agent, stage)
            if not _is_elf(entry):
                # The bin is a shell placeholder until the postinstall links the native binary over it. npm >= 11.?
                # warns about install scripts not covered by allowScripts; should it stop running them, do by hand
                # what the placeholder itself tells the user to do.
                pkg_dir = self._pkg_dir(agent, stage)
                p = subprocess.run([NODE, str(pkg_dir / "install.cjs")], cwd=pkg_dir, capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT, env=_npm_env(), stdin=subprocess.DEVNULL)
                assert _is_elf(entry), f"{entry} is still not the native binary after install.cjs:\n{p.stdout}{p.stderr}"
        subprocess.run(["chmod", "-R", "a+rX", str(stage)], check=True, timeout=RUN_TIMEOUT)
        assert self._cached(agent, stage), f"npm install {spec} did not produce {self._pkg_dir(agent, stage)}"
        os.rename(stage, dest)

    def _entry(self, agent: Agent, prefix: Path) -> Path:
        pkg_dir = self._pkg_dir(agent, prefix)
        bins = json.loads((pkg_dir / "package.json").read_text())["bin"]
        return pkg_dir / (bins if isinstance(bins, str) else bins[agent.command])

    def _launcher(self, agent: Agent, prefix: Path) -> tuple[str, ...]:
        entry = self._entry(agent, prefix)
        if agent.native:
            assert _is_elf(entry), f"{entry}: expected the native {agent.command} binary"
            return (str(entry),)
        return (NODE, str(entry))


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


@pytest.fixture(scope="session")
def npm_agents() -> Installer:
    return Installer()


# --------------------------------------------------------------------------- helpers


def plant(world, rel: str, text: str | None = None) -> Path:
    """Create ``$HOME/rel`` (a directory, or a file holding ``text``) owned by the world's user."""
    path = world.home / rel
    if text is None:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if world.user.uid:
        for p in [path, *path.relative_to(world.home).parents]:
            os.chown(world.home / p, world.user.uid, world.user.uid)
    return path


def run_agent(world, inst: Installed, *args: str) -> subprocess.CompletedProcess[str]:
    return world.nono("run", "-s", "--profile", inst.agent.profile, "--allow-cwd", "--read", str(inst.prefix), "--",
                      *inst.launcher, *args, timeout=RUN_TIMEOUT)


def assert_no_permission_errors(r: subprocess.CompletedProcess[str]) -> None:
    hits = [line for line in (r.stdout + r.stderr).splitlines() if any(e in line for e in PERMISSION_ERRORS)]
    assert not hits, "the profile denied the agent something it tried to use:\n" + "\n".join(hits)


# --------------------------------------------------------------------------- the real clients under their profiles


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_version_under_profile(world, npm_agents, agent):
    inst = npm_agents.get(agent)
    plant(world, agent.state_dir)  # an agent the user has run before
    r = run_agent(world, inst, "--version")
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.stdout.strip().splitlines()[0] == agent.version_line, r.stdout
    assert_no_permission_errors(r)


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_help_under_profile(world, npm_agents, agent):
    inst = npm_agents.get(agent)
    plant(world, agent.state_dir)
    r = run_agent(world, inst, "--help")
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert agent.help_marker in r.stdout
    assert len(r.stdout.splitlines()) > 10, r.stdout
    assert_no_permission_errors(r)


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_version_on_first_use(world, npm_agents, agent):
    """No state directory yet: Landlock cannot grant a path that does not exist, and the agent cannot create it
    inside the sandbox, so nono creates it first (mode 0700, owned by the user) and the agent starts cleanly."""
    inst = npm_agents.get(agent)
    state = world.home / agent.state_dir
    assert not state.exists()
    r = run_agent(world, inst, "--version")
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.stdout.strip().splitlines()[0] == agent.version_line, r.stdout
    assert_no_permission_errors(r)
    st = state.stat()
    assert state.is_dir() and st.st_mode & 0o777 == 0o700 and st.st_uid == world.user.uid


# One sandbox: run the agent, then, as the agent (or anything it runs) could, read the planted secrets, list ~/.ssh,
# write and read the agent's own state directory and try the other agents' state directories.
_ATTACK = r"""
const fs = require('fs'), path = require('path'), cp = require('child_process');
const [home, launcher, own, others] = process.argv.slice(1).map((a, i) => i === 0 ? a : JSON.parse(a));
const res = {};
const attempt = (name, fn) => {
  try { const v = fn(); res[name] = {ok: true, value: v === undefined ? null : String(v)}; }
  catch (e) { res[name] = {ok: false, code: e.code || String(e)}; }
};
const a = cp.spawnSync(launcher[0], [...launcher.slice(1), '--version'], {encoding: 'utf8', timeout: 60000});
res.agent = {status: a.status, stdout: a.stdout, stderr: a.stderr, error: a.error && a.error.code};
attempt('read ~/.ssh/id_rsa', () => fs.readFileSync(path.join(home, '.ssh', 'id_rsa'), 'utf8'));
attempt('read ~/.aws/credentials', () => fs.readFileSync(path.join(home, '.aws', 'credentials'), 'utf8'));
attempt('list ~/.ssh', () => fs.readdirSync(path.join(home, '.ssh')).join(','));
attempt('write own', () => fs.writeFileSync(path.join(home, own.dir, 'nono-probe'), 'written'));
attempt('read own', () => fs.readFileSync(path.join(home, own.dir, own.cred), 'utf8'));
for (const o of others) {
  attempt('write ' + o.dir, () => fs.writeFileSync(path.join(home, o.dir, 'nono-probe'), 'written'));
  attempt('read ' + o.dir, () => fs.readFileSync(path.join(home, o.dir, o.cred), 'utf8'));
}
console.log(JSON.stringify(res));
"""


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_secrets_denied_and_agents_isolated(world, npm_agents, agent):
    inst = npm_agents.get(agent)
    token = uuid.uuid4().hex
    ssh = f"-----BEGIN OPENSSH PRIVATE KEY-----\nSSH-KEY-{token}\n-----END OPENSSH PRIVATE KEY-----\n"
    aws = f"[default]\naws_access_key_id=AKIA{token[:16].upper()}\naws_secret_access_key=AWS-{token}\n"
    plant(world, ".ssh/id_rsa", ssh)
    plant(world, ".aws/credentials", aws)
    creds = {}
    for a in AGENTS:
        plant(world, a.state_dir)
        creds[a.profile] = f"{a.profile}-TOKEN-{token}"
        plant(world, f"{a.state_dir}/{a.credential}", json.dumps({"token": creds[a.profile]}))
    others = [a for a in AGENTS if a != agent]

    r = world.nono("run", "-s", "--profile", agent.profile, "--allow-cwd", "--read", str(inst.prefix), "--",
                   NODE, "-e", _ATTACK, str(world.home), json.dumps(list(inst.launcher)),
                   json.dumps({"dir": agent.state_dir, "cred": agent.credential}),
                   json.dumps([{"dir": o.state_dir, "cred": o.credential} for o in others]), timeout=RUN_TIMEOUT)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    res = json.loads(r.stdout.strip().splitlines()[-1])

    # the agent works in this very sandbox
    assert res["agent"]["status"] == 0, res["agent"]
    assert res["agent"]["stdout"].strip().splitlines()[0] == agent.version_line, res["agent"]

    # the planted secrets: denied by the kernel, never in the output
    for step in ("read ~/.ssh/id_rsa", "read ~/.aws/credentials", "list ~/.ssh"):
        assert not res[step]["ok"], f"{step} under --profile {agent.profile}: {res[step]}"
        assert res[step]["code"] in ("EACCES", "EPERM"), f"{step}: {res[step]}"
    for secret in (f"SSH-KEY-{token}", f"AWS-{token}", token[:16].upper()):
        assert secret not in r.stdout + r.stderr

    # positive control: the agent's own state directory is read-write
    assert res["write own"] == {"ok": True, "value": None}, res["write own"]
    assert (world.home / agent.state_dir / "nono-probe").read_text() == "written"
    assert res["read own"]["ok"] and creds[agent.profile] in res["read own"]["value"], res["read own"]

    # cross-agent isolation: the other agents' state (and logins) are neither writable nor readable
    for o in others:
        for step in (f"write {o.state_dir}", f"read {o.state_dir}"):
            assert not res[step]["ok"], f"{step} under --profile {agent.profile}: {res[step]}"
            assert res[step]["code"] in ("EACCES", "EPERM"), f"{step}: {res[step]}"
        assert not (world.home / o.state_dir / "nono-probe").exists()
        assert creds[o.profile] not in r.stdout + r.stderr
