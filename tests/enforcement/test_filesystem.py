"""Filesystem bypass classes, attacked for real against the kernel.

Each test runs the real ``nono run`` (as root and as ``nobody`` unless it is
inherently root-only), attacks from inside the sandbox and asserts what the
kernel answered: the exit status, the ``Permission denied`` (or
``Invalid cross-device link``) message, that no secret reached stdout, and,
for writes, that the file system is unchanged afterwards.

Compound scenarios run one shell script per sandbox and report every step's
exit status on its own line (``@@name=STATUS``), so a single nono start covers
several attacks without hiding which one failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SSH_SECRET = "PLANTED-SECRET"
OUTSIDE_SECRET = "outside-secret"
DENIED = "Permission denied"
XDEV = "Invalid cross-device link"
# The interpreter for sandboxed Python probes. Inside `sh -c` only the shell is granted as the executable,
# and nobody's ``world.user.python`` may sit where nono's ``which`` cannot see it; the system Python lives
# under the default read grants (/usr/bin, /usr/lib) and works for both users, directly and from scripts.
PY = "/usr/bin/python3"


# --------------------------------------------------------------------------- helpers


def chown_tree(world) -> None:
    """Give everything under the world to its user (no-op for root), symlinks included."""
    if not world.user.uid:
        return
    uid = world.user.uid
    for root, dirs, files in os.walk(world.base):
        os.chown(root, uid, uid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def plant(world, path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    chown_tree(world)
    return path


def sh(world, *flags: str, script: str, **kw) -> subprocess.CompletedProcess[str]:
    """``nono run -s FLAGS -- /bin/sh -c SCRIPT``."""
    return world.nono("run", "-s", *flags, "--", "/bin/sh", "-c", script, **kw)


def steps(world, *flags: str, **cmds: str) -> tuple[dict[str, int], subprocess.CompletedProcess[str]]:
    """Run each shell command in one sandbox; return {name: exit status} and the run.

    The commands run in order; each is followed by ``echo @@name=$?``. ``run.out[name]`` is what that
    step printed to stdout.
    """
    script = "".join(f"( {cmd} ); echo @@{name}=$?\n" for name, cmd in cmds.items())
    r = sh(world, *flags, script=script)
    codes: dict[str, int] = {}
    out: dict[str, str] = {}  # each step's own stdout
    start = 0
    for m in re.finditer(r"^@@(\w+)=(\d+)\n", r.stdout, re.M):
        codes[m.group(1)], out[m.group(1)] = int(m.group(2)), r.stdout[start : m.start()]
        start = m.end()
    assert list(codes) == list(cmds), f"sandboxed script did not finish: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    r.out = out  # type: ignore[attr-defined]
    return codes, r


def assert_no_secret(r: subprocess.CompletedProcess[str]) -> None:
    for secret in (SSH_SECRET, OUTSIDE_SECRET, "aws_secret_access_key", "GCLOUD-SECRET", "STATE-SECRET"):
        assert secret not in r.stdout, f"{secret} leaked to stdout:\n{r.stdout}"


def denied(r: subprocess.CompletedProcess[str], path: object, msg: str = DENIED) -> bool:
    """stderr carries the kernel's refusal for ``path``."""
    return any(str(path) in line and msg in line for line in r.stderr.splitlines())


def nono_cmd(world, *args: str) -> list[str]:
    return world.user.prefix + [world.user.python, "-m", "nono", *args]


def put_probe(world, name: str, source: str) -> Path:
    return plant(world, world.work / name, source)


# --------------------------------------------------------------------------- 1. grant types


def test_allow_dir_reads_and_writes(world):
    d = world.work / "d"
    plant(world, d / "f", "data\n")
    codes, r = steps(world, "--allow", str(d),
                     read=f"cat {d}/f", append=f"echo more >> {d}/f", create=f"echo new > {d}/g",
                     mkdir=f"mkdir {d}/sub", rm=f"rm {d}/g", ls=f"ls {d}",
                     sibling=f"cat {world.work}/input.txt")
    assert codes == {"read": 0, "append": 0, "create": 0, "mkdir": 0, "rm": 0, "ls": 0, "sibling": 1}, r.stderr
    assert r.out["read"] == "data\n" and r.out["ls"] == "f\nsub\n"
    assert (d / "f").read_text() == "data\nmore\n"
    assert (d / "sub").is_dir() and not (d / "g").exists()
    assert denied(r, "input.txt")


def test_read_dir_reads_but_cannot_write(world):
    d = world.work / "ro"
    plant(world, d / "f", "data\n")
    codes, r = steps(world, "--read", str(d),
                     read=f"cat {d}/f", ls=f"ls {d}", append=f"echo x >> {d}/f", create=f"echo x > {d}/g",
                     rm=f"rm -f {d}/f", mkdir=f"mkdir {d}/sub",
                     trunc=f"{PY} -c 'import os; os.truncate(\"{d}/f\", 0)'")
    assert codes["read"] == 0 and codes["ls"] == 0, r.stderr
    assert all(codes[k] != 0 for k in ("append", "create", "rm", "mkdir", "trunc")), (codes, r.stderr)
    assert r.out["read"] == "data\n" and r.out["ls"] == "f\n"
    assert denied(r, f"{d}/f") and denied(r, f"{d}/g")
    assert "PermissionError" in r.stderr  # the truncate() attempt
    assert (d / "f").read_text() == "data\n" and not (d / "g").exists() and not (d / "sub").exists()


def test_write_dir_writes_but_cannot_read(world):
    d = world.work / "wo"
    plant(world, d / "old", "old-content\n")
    codes, r = steps(world, "--write", str(d),
                     create=f"echo x > {d}/f", read_new=f"cat {d}/f", read_old=f"cat {d}/old",
                     ls=f"ls {d}", rm=f"rm {d}/old")
    assert codes == {"create": 0, "read_new": 1, "read_old": 1, "ls": 2, "rm": 0}, r.stderr
    assert "old-content" not in r.stdout and "x\n" not in r.stdout
    assert denied(r, f"{d}/f") and denied(r, f"{d}/old") and denied(r, d)
    assert (d / "f").read_text() == "x\n" and not (d / "old").exists()


def test_allow_file_only_that_file(world):
    f = plant(world, world.work / "files" / "f", "f-content\n")
    plant(world, f.with_name("sibling"), "sibling-content\n")
    codes, r = steps(world, "--allow-file", str(f),
                     read=f"cat {f}", write=f"echo more >> {f}", sibling=f"cat {f.parent}/sibling",
                     sibling_write=f"echo x > {f.parent}/sibling", create=f"touch {f.parent}/new")
    assert codes == {"read": 0, "write": 0, "sibling": 1, "sibling_write": 2, "create": 1}, r.stderr
    assert "f-content" in r.stdout and "sibling-content" not in r.stdout
    assert denied(r, f"{f.parent}/sibling") and denied(r, f"{f.parent}/new")
    assert f.read_text() == "f-content\nmore\n" and f.with_name("sibling").read_text() == "sibling-content\n"
    assert not f.with_name("new").exists()


def test_read_file_only_that_file(world):
    f = plant(world, world.work / "files" / "f", "f-content\n")
    plant(world, f.with_name("sibling"), "sibling-content\n")
    codes, r = steps(world, "--read-file", str(f),
                     read=f"cat {f}", write=f"echo more >> {f}", sibling=f"cat {f.parent}/sibling")
    assert codes == {"read": 0, "write": 2, "sibling": 1}, r.stderr
    assert "f-content" in r.stdout and "sibling-content" not in r.stdout
    assert denied(r, f) and denied(r, f"{f.parent}/sibling")
    assert f.read_text() == "f-content\n"


def test_write_file_only_that_file(world):
    f = plant(world, world.work / "files" / "f", "f-content\n")
    plant(world, f.with_name("sibling"), "sibling-content\n")
    codes, r = steps(world, "--write-file", str(f),
                     write=f"echo replaced > {f}", read=f"cat {f}", sibling=f"echo x > {f.parent}/sibling",
                     sibling_read=f"cat {f.parent}/sibling")
    assert codes == {"write": 0, "read": 1, "sibling": 2, "sibling_read": 1}, r.stderr
    assert "replaced" not in r.stdout and "sibling-content" not in r.stdout
    assert denied(r, f) and denied(r, f"{f.parent}/sibling")
    assert f.read_text() == "replaced\n" and f.with_name("sibling").read_text() == "sibling-content\n"


def test_allow_cwd_grants_the_working_directory_only(world):
    codes, r = steps(world, "--allow-cwd",
                     read="cat input.txt", create="echo made > made.txt", home=f"cat {world.home}/notes.txt",
                     outside=f"cat {world.outside}/secret.txt")
    assert codes == {"read": 0, "create": 0, "home": 1, "outside": 1}, r.stderr
    assert r.out["read"] == "input\n"
    assert (world.work / "made.txt").read_text() == "made\n"
    assert denied(r, "notes.txt") and denied(r, "secret.txt")
    assert_no_secret(r)


def test_without_allow_cwd_the_working_directory_is_not_granted(world):
    r = world.nono("run", "-s", "--", "/bin/cat", "input.txt")
    assert r.returncode == 1 and denied(r, "input.txt")
    assert r.stdout == ""


def _two_dirs(world) -> tuple[Path, Path, Path]:
    d1, d2, d3 = world.work / "d1", world.work / "d2", world.work / "d3"
    for d in (d1, d2, d3):
        d.mkdir()
    chown_tree(world)
    return d1, d2, d3


def test_allow_comma_list(world):
    d1, d2, d3 = _two_dirs(world)
    codes, r = steps(world, "-a", f"{d1},{d2}", one=f"touch {d1}/x", two=f"touch {d2}/x", three=f"touch {d3}/x")
    assert codes == {"one": 0, "two": 0, "three": 1}, r.stderr
    assert denied(r, f"{d3}/x")
    assert (d1 / "x").exists() and (d2 / "x").exists() and not (d3 / "x").exists()


def test_nono_allow_env_var(world):
    d1, d2, d3 = _two_dirs(world)
    r = world.nono("run", "-s", "--", "/bin/sh", "-c",
                   f"touch {d1}/x; echo @@one=$?; touch {d2}/x; echo @@two=$?; touch {d3}/x; echo @@three=$?",
                   env=world.env(NONO_ALLOW=f"{d1},{d2}"))
    assert "@@one=0" in r.stdout and "@@two=0" in r.stdout and "@@three=1" in r.stdout, r.stderr
    assert denied(r, f"{d3}/x")
    assert (d1 / "x").exists() and (d2 / "x").exists() and not (d3 / "x").exists()


# --------------------------------------------------------------------------- 2. outside the grants


def test_outside_read_write_list_denied(world):
    o = world.outside
    codes, r = steps(world, "--allow-cwd",
                     read=f"cat {o}/secret.txt", write=f"echo x > {o}/new", append=f"echo x >> {o}/secret.txt",
                     ls=f"ls {o}", rm=f"rm -f {o}/secret.txt", mkdir=f"mkdir {o}/d",
                     home_create=f"touch {world.home}/new", home_read=f"cat {world.home}/notes.txt",
                     home_ls=f"ls {world.home}")
    assert codes == {"read": 1, "write": 2, "append": 2, "ls": 2, "rm": 1, "mkdir": 1,
                     "home_create": 1, "home_read": 1, "home_ls": 2}, r.stderr
    assert_no_secret(r)
    assert "secret.txt" not in r.stdout and ".ssh" not in r.stdout  # no listing leaked
    for p in (f"{o}/secret.txt", f"{o}/new", o, f"{world.home}/new", world.home):
        assert denied(r, p), p
    assert sorted(os.listdir(o)) == ["secret.txt"] and (o / "secret.txt").read_text() == "outside-secret\n"
    assert not (world.home / "new").exists()


def test_o_path_handle_does_not_open_outside(world):
    """An O_PATH fd on a non-granted directory gives nothing: openat() through it is checked."""
    code = (f"import os\nfd = os.open({str(world.outside)!r}, os.O_PATH)\n"
            "try:\n    print(os.read(os.open('secret.txt', os.O_RDONLY, dir_fd=fd), 100))\n"
            "except PermissionError as e:\n    print('DENIED', e.errno)\n")
    r = world.nono("run", "-s", "--allow-cwd", "--", PY, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "DENIED 13\n"


def test_etc_shadow_denied_for_root(root_world):
    assert os.access("/etc/shadow", os.R_OK)  # root could read it unsandboxed
    r = root_world.nono("run", "-s", "--allow-cwd", "--", "/bin/cat", "/etc/shadow")
    assert r.returncode == 1
    assert denied(r, "/etc/shadow")
    assert "root:" not in r.stdout


# --------------------------------------------------------------------------- 3. symlinks


def test_planted_symlinks_out_of_a_granted_dir_are_denied(world):
    (world.work / "to_secret").symlink_to(world.outside / "secret.txt")
    (world.work / "to_key").symlink_to(world.home / ".ssh" / "id_rsa")
    (world.work / "to_outside").symlink_to(world.outside)
    (world.work / "to_ssh").symlink_to(world.home / ".ssh")
    chown_tree(world)
    codes, r = steps(world, "--allow-cwd",
                     secret="cat to_secret", key="cat to_key", dir_file="cat to_outside/secret.txt",
                     dir_ls="ls to_outside", ssh_ls="ls to_ssh", write="echo x >> to_secret",
                     ok="cat input.txt")
    assert codes == {"secret": 1, "key": 1, "dir_file": 1, "dir_ls": 2, "ssh_ls": 2, "write": 2, "ok": 0}, r.stderr
    assert_no_secret(r)
    for p in ("to_secret", "to_key", "to_outside/secret.txt", "to_outside", "to_ssh"):
        assert denied(r, p), p
    assert (world.outside / "secret.txt").read_text() == "outside-secret\n"


def test_symlink_created_inside_the_sandbox_is_denied(world):
    codes, r = steps(world, "--allow-cwd",
                     mk1=f"ln -s {world.outside}/secret.txt l1", mk2=f"ln -s {world.home}/.ssh/id_rsa l2",
                     mk3=f"ln -s {world.outside} l3",
                     r1="cat l1", r2="cat l2", r3="cat l3/secret.txt", w3="echo x > l3/new")
    assert codes == {"mk1": 0, "mk2": 0, "mk3": 0, "r1": 1, "r2": 1, "r3": 1, "w3": 2}, r.stderr
    assert_no_secret(r)
    assert denied(r, "l1") and denied(r, "l2") and denied(r, "l3/secret.txt") and denied(r, "l3/new")
    assert not (world.outside / "new").exists()


def test_granting_a_symlink_resolves_it(world):
    """A grant names the symlink's target: a link to ~/.ssh is refused like ~/.ssh itself."""
    (world.work / "keys").symlink_to(world.home / ".ssh")
    (world.work / "rc").symlink_to(world.home / ".bashrc")
    chown_tree(world)
    r = world.nono("run", "-s", "--read", str(world.work / "keys"), "--", "/bin/true")
    assert r.returncode == 1 and "protected by group:deny_credentials" in r.stderr
    assert "--bypass-protection" in r.stderr
    r = world.nono("run", "-s", "--read-file", str(world.work / "rc"), "--", "/bin/true")
    assert r.returncode == 1 and "protected by group:deny_shell_configs" in r.stderr


# --------------------------------------------------------------------------- 4. hard links


def test_hardlinks_to_denied_files_fail(world):
    codes, r = steps(world, "--allow", str(world.home), "--allow-cwd",
                     key=f"ln {world.home}/.ssh/id_rsa x", outside=f"ln {world.outside}/secret.txt y",
                     aws=f"ln {world.home}/.aws/credentials z", ok="ln input.txt input2.txt")
    assert codes == {"key": 1, "outside": 1, "aws": 1, "ok": 0}, r.stderr
    assert sum(XDEV in line or DENIED in line for line in r.stderr.splitlines()) == 3, r.stderr
    assert denied(r, ".ssh/id_rsa", XDEV) and denied(r, "secret.txt", XDEV)
    assert not any((world.work / n).exists() for n in ("x", "y", "z"))
    assert (world.work / "input2.txt").read_text() == "input\n"


# --------------------------------------------------------------------------- 5. rename / move


def test_move_from_read_only_dir_into_granted_dir_fails(world):
    other = world.base / "other"
    plant(world, other / "file", "other-file\n")
    codes, r = steps(world, "--allow", str(world.work), "--read", str(other),
                     mv=f"mv {other}/file {world.work}/", py=f"{PY} -c 'import os; "
                     f"os.rename(\"{other}/file\", \"{world.work}/file2\")'", cp=f"cp {other}/file {world.work}/copy")
    assert codes == {"mv": 1, "py": 1, "cp": 0}, r.stderr
    assert denied(r, f"{other}/file") and "PermissionError" in r.stderr
    assert (other / "file").read_text() == "other-file\n"
    assert not (world.work / "file").exists() and not (world.work / "file2").exists()


def test_move_between_two_writable_dirs_works(world):
    """Control for the REFER tests: both sides granted read+write, the rename succeeds."""
    other = world.base / "other"
    plant(world, other / "file", "other-file\n")
    r = sh(world, "--allow", str(world.work), "--allow", str(other),
           script=f"{PY} -c 'import os; os.rename(\"{other}/file\", \"{world.work}/file\")'")
    assert r.returncode == 0, r.stderr
    assert (world.work / "file").read_text() == "other-file\n" and not (other / "file").exists()


def test_move_out_of_granted_dir_fails(world):
    codes, r = steps(world, "--allow-cwd",
                     mv=f"mv input.txt {world.outside}/",
                     py=f"{PY} -c 'import os; os.rename(\"input.txt\", \"{world.outside}/moved\")'")
    assert codes == {"mv": 1, "py": 1}, r.stderr
    assert "PermissionError" in r.stderr or "OSError" in r.stderr
    assert (world.work / "input.txt").read_text() == "input\n"
    assert sorted(os.listdir(world.outside)) == ["secret.txt"]


def test_rename_denied_dir_into_granted_place_fails(world):
    h = world.home
    codes, r = steps(world, "--allow", str(h), "--allow-cwd",
                     mv_work=f"mv {h}/.ssh {world.work}/ssh",
                     py=f"{PY} -c 'import os; os.rename(\"{h}/.ssh\", \"{world.work}/ssh2\")'",
                     mv_file=f"mv {h}/.ssh/id_rsa {world.work}/key",
                     mv_home=f"mv {h}/.ssh {h}/notssh",
                     cat=f"cat {world.work}/ssh/id_rsa {world.work}/ssh2/id_rsa {world.work}/key")
    assert codes["mv_work"] == 1 and codes["py"] == 1 and codes["mv_file"] == 1 and codes["mv_home"] == 1, r.stderr
    assert codes["cat"] == 1
    assert_no_secret(r)
    assert denied(r, f"{h}/.ssh")
    assert (h / ".ssh" / "id_rsa").read_text().endswith("PLANTED-SECRET\n")
    assert not any((world.work / n).exists() for n in ("ssh", "ssh2", "key")) and not (h / "notssh").exists()


# --------------------------------------------------------------------------- 6. /proc

PROC_PROBE = r'''
import os, sys
pid, outside = sys.argv[1], sys.argv[2]
secret = os.path.join(outside, "secret.txt")
targets = [
    ("environ", f"/proc/{pid}/environ", "read"),
    ("task_environ", f"/proc/{pid}/task/{pid}/environ", "read"),
    ("root", f"/proc/{pid}/root{secret}", "read"),
    ("root_ls", f"/proc/{pid}/root{outside}", "list"),
    ("cwd", f"/proc/{pid}/cwd/../outside/secret.txt", "read"),
    ("fd0", f"/proc/{pid}/fd/0", "read"),
    ("fd3", f"/proc/{pid}/fd/3", "read"),
    ("mem", f"/proc/{pid}/mem", "read"),
    ("maps", f"/proc/{pid}/maps", "read"),
    ("cmdline", f"/proc/{pid}/cmdline", "read"),
]
for label, path, kind in targets:
    try:
        if kind == "list":
            got = " ".join(os.listdir(path))
        else:
            with open(path, "rb") as f:
                got = f.read(4096).decode("latin-1").replace("\0", " ")
        print(f"{label} OK {got!r}")
    except OSError as e:
        print(f"{label} DENIED {e.errno}")
'''


def _probe_lines(r: subprocess.CompletedProcess[str]) -> dict[str, str]:
    out = {}
    for line in r.stdout.splitlines():
        label, _, rest = line.partition(" ")
        out[label] = rest
    return out


def test_proc_self_root_and_cwd_do_not_escape(world):
    put_probe(world, "probe.py", PROC_PROBE)
    r = world.nono("run", "-s", "--allow-cwd", "--", PY, "probe.py", "self", str(world.outside))
    assert r.returncode == 0, r.stderr
    res = _probe_lines(r)
    assert res["root"] == "DENIED 13" and res["root_ls"] == "DENIED 13" and res["cwd"] == "DENIED 13", r.stdout
    assert res["environ"].startswith("OK") and res["maps"].startswith("OK")  # its own /proc entries stay readable
    assert OUTSIDE_SECRET not in r.stdout


def _assert_proc_denied(r: subprocess.CompletedProcess[str], secrets: tuple[str, ...]) -> None:
    assert r.returncode == 0, r.stderr
    res = _probe_lines(r)
    for label in ("environ", "task_environ", "root", "root_ls", "cwd", "fd0", "mem", "maps"):
        assert res[label] == "DENIED 13", f"{label}: {res[label]}\n{r.stdout}"
    assert res["fd3"].startswith("DENIED"), r.stdout
    assert res["cmdline"].startswith("OK"), r.stdout  # the pid is visible: the denial is the kernel's ptrace check
    for s in secrets:
        assert s not in r.stdout


def test_proc_of_supervisor_is_denied(world):
    probe = ("import os, runpy, sys\n"
             "sys.argv = ['probe.py', str(os.getppid()), sys.argv[1]]\nrunpy.run_path('probe.py')\n")
    put_probe(world, "probe.py", PROC_PROBE)
    put_probe(world, "via_ppid.py", probe)
    env = world.env(SUPERVISOR_ONLY_SECRET="s3cr3t-in-supervisor-env")
    # The probe prints only what it read from /proc/<ppid>: the marker in the supervisor's environment
    # must not come back.
    r = world.nono("run", "-s", "--allow-cwd", "--", PY, "via_ppid.py", str(world.outside), env=env)
    _assert_proc_denied(r, (OUTSIDE_SECRET, "s3cr3t-in-supervisor-env"))
    assert "python" in _probe_lines(r)["cmdline"] and "nono" in _probe_lines(r)["cmdline"]  # it was the supervisor


def test_proc_of_unrelated_process_is_denied(world):
    put_probe(world, "probe.py", PROC_PROBE)
    secret_fd = os.open(world.outside / "secret.txt", os.O_RDONLY)
    try:
        victim = subprocess.Popen(world.user.prefix + ["/bin/sleep", "30"], cwd=world.outside,
                                  env={"PATH": "/usr/bin:/bin", "VICTIM_TOKEN": "victim-env-secret"},
                                  stdin=secret_fd, pass_fds=(secret_fd,))
    finally:
        os.close(secret_fd)
    try:
        deadline = time.monotonic() + 10  # wait until setpriv has exec'd sleep
        while time.monotonic() < deadline:
            with open(f"/proc/{victim.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"/bin/sleep"):
                    break
            time.sleep(0.01)
        with open(f"/proc/{victim.pid}/environ", "rb") as f:  # unsandboxed, the secret IS there
            assert b"victim-env-secret" in f.read()
        r = world.nono("run", "-s", "--allow-cwd", "--", PY, "probe.py", str(victim.pid),
                       str(world.outside))
    finally:
        victim.kill()
        victim.wait(timeout=10)
    _assert_proc_denied(r, (OUTSIDE_SECRET, "victim-env-secret"))
    assert "sleep" in _probe_lines(r)["cmdline"]


# --------------------------------------------------------------------------- 7. inherited fd


def test_inherited_fd_is_closed(world):
    fd = os.open(world.outside / "secret.txt", os.O_RDONLY)
    try:
        code = ("import os, sys\nfd = int(sys.argv[1])\n"
                "try:\n    print('READ', os.read(fd, 100))\nexcept OSError as e:\n    print('ERR', e.errno)\n")
        cmd = nono_cmd(world, "run", "-s", "--allow-cwd", "--", PY, "-c", code, str(fd))
        r = subprocess.run(cmd, cwd=world.work, env=world.env(), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ERR 9\n"  # EBADF: nono closed it before exec
    assert_no_secret(r)


# --------------------------------------------------------------------------- 8. deny inside allow


def test_allow_home_keeps_credentials_and_shell_files_denied(world):
    h = world.home
    codes, r = steps(world, "--allow", str(h),
                     read="cat ~/notes.txt", write="echo more >> ~/notes.txt",
                     key="cat ~/.ssh/id_rsa", aws="cat ~/.aws/credentials", ls_ssh="ls ~/.ssh",
                     bashrc_w="echo evil >> ~/.bashrc", bashrc_r="cat ~/.bashrc",
                     rm_ssh="rm -rf ~/.ssh", rm_key="rm -f ~/.ssh/id_rsa", new_key="touch ~/.ssh/authorized_keys",
                     ssh2="mkdir ~/.ssh2", ssh2_file="touch ~/.ssh2/x",
                     new_top="touch ~/newfile", ls_home="ls ~", rm_top="rm -f ~/notes.txt")
    assert codes == {"read": 0, "write": 0, "key": 1, "aws": 1, "ls_ssh": 2, "bashrc_w": 2, "bashrc_r": 1,
                     "rm_ssh": 1, "rm_key": 1, "new_key": 1, "ssh2": 1, "ssh2_file": 1,
                     # documented decomposition limits: ~ itself has no rights, so no new top-level
                     # entries, no listing and no removing top-level entries
                     "new_top": 1, "ls_home": 2, "rm_top": 1}, r.stderr
    assert r.out["read"] == "notes\n" and r.out["ls_ssh"] == r.out["ls_home"] == ""
    assert_no_secret(r)
    for p in (".ssh/id_rsa", ".aws/credentials", ".ssh", ".bashrc", ".ssh2", "newfile"):
        assert denied(r, f"{h}/{p}"), p
    assert (h / "notes.txt").read_text() == "notes\nmore\n"
    assert (h / ".bashrc").read_text() == "# rc\n"
    assert (h / ".ssh" / "id_rsa").exists() and sorted(os.listdir(h / ".ssh")) == ["id_rsa"]
    assert not (h / ".ssh2").exists() and not (h / "newfile").exists()


def test_nested_deny_inside_allowed_config(world):
    cfg = world.home / ".config"
    plant(world, cfg / "gcloud" / "x", "GCLOUD-SECRET\n")
    plant(world, cfg / "other" / "y", "other-y\n")
    codes, r = steps(world, "--allow", str(cfg),
                     read=f"cat {cfg}/other/y", write=f"echo w >> {cfg}/other/y", create=f"touch {cfg}/other/new",
                     gcloud=f"cat {cfg}/gcloud/x", gcloud_ls=f"ls {cfg}/gcloud", gcloud_w=f"touch {cfg}/gcloud/z",
                     gh=f"mkdir {cfg}/gh", new_top=f"mkdir {cfg}/newapp")
    assert codes == {"read": 0, "write": 0, "create": 0, "gcloud": 1, "gcloud_ls": 2, "gcloud_w": 1,
                     "gh": 1, "new_top": 1}, r.stderr
    assert r.out["read"] == "other-y\n" and r.out["gcloud_ls"] == ""
    assert_no_secret(r)
    assert denied(r, f"{cfg}/gcloud/x") and denied(r, f"{cfg}/gcloud") and denied(r, f"{cfg}/gh")
    assert (cfg / "other" / "y").read_text() == "other-y\nw\n" and (cfg / "other" / "new").exists()
    assert not (cfg / "gcloud" / "z").exists() and not (cfg / "gh").exists()


def test_deny_leaf_that_is_a_symlink_is_denied_at_its_target(world):
    """~/.bashrc -> ~/dotfiles/bashrc (a dotfile manager): the target is denied too."""
    h = world.home
    (h / ".bashrc").unlink()
    plant(world, h / "dotfiles" / "bashrc", "# real rc\n")
    plant(world, h / "dotfiles" / "vimrc", "vimrc\n")
    (h / ".bashrc").symlink_to("dotfiles/bashrc")
    chown_tree(world)
    codes, r = steps(world, "--allow", str(h),
                     via_link="echo evil >> ~/.bashrc", via_target="echo evil >> ~/dotfiles/bashrc",
                     read_target="cat ~/dotfiles/bashrc", sibling="cat ~/dotfiles/vimrc")
    assert codes == {"via_link": 2, "via_target": 2, "read_target": 1, "sibling": 0}, r.stderr
    assert denied(r, "dotfiles/bashrc")
    assert (h / "dotfiles" / "bashrc").read_text() == "# real rc\n"


def test_deny_leaf_symlink_to_a_dir_outside_home_is_denied_there(world):
    """~/.aws -> <vault>/aws: granting <vault> still keeps the credentials out."""
    h, vault = world.home, world.base / "vault"
    plant(world, vault / "aws" / "credentials", "[default]\naws_secret_access_key=PLANTED\n")
    plant(world, vault / "public.txt", "public\n")
    shutil.rmtree(h / ".aws")
    (h / ".aws").symlink_to(vault / "aws")
    chown_tree(world)
    codes, r = steps(world, "--allow", str(vault),
                     direct=f"cat {vault}/aws/credentials", via_home="cat ~/.aws/credentials",
                     ls=f"ls {vault}/aws", public=f"cat {vault}/public.txt")
    assert codes == {"direct": 1, "via_home": 1, "ls": 2, "public": 0}, r.stderr
    assert r.out["public"] == "public\n"
    assert_no_secret(r)
    assert denied(r, f"{vault}/aws/credentials")


def test_symlinked_home_keeps_denies(world):
    """HOME is a symlink (e.g. /home -> /data/home): denies apply to both spellings."""
    link = world.base / "homelink"
    link.symlink_to(world.home)
    chown_tree(world)
    env = world.env(HOME=str(link))
    for grant in (link, world.home):
        r = world.nono("run", "-s", "--allow", str(grant), "--", "/bin/sh", "-c",
                       f"cat {link}/.ssh/id_rsa; echo @@a=$?; cat {world.home}/.ssh/id_rsa; echo @@b=$?; "
                       f"echo x >> {world.home}/.bashrc; echo @@c=$?; cat {link}/notes.txt; echo @@d=$?", env=env)
        assert "@@a=1" in r.stdout and "@@b=1" in r.stdout and "@@c=2" in r.stdout, (grant, r.stdout, r.stderr)
        assert "notes\n@@d=0" in r.stdout, (grant, r.stdout, r.stderr)
        assert_no_secret(r)
        assert denied(r, ".ssh/id_rsa") and denied(r, ".bashrc")
    assert (world.home / ".bashrc").read_text() == "# rc\n"


# Regression: deny paths were once resolved only at their last component, so a symlinked
# ~/.config (dotfile managers) exposed ~/.config/gcloud.
@pytest.mark.parametrize("grant", ["~", "~/.config", "~/.config/gcloud"])
def test_deny_below_a_symlinked_ancestor_is_denied(world, grant):
    h = world.home
    plant(world, h / "dotfiles" / "config" / "gcloud" / "credentials.db", "GCLOUD-SECRET\n")
    plant(world, h / "dotfiles" / "config" / "other" / "y", "other-y\n")
    (h / ".config").symlink_to("dotfiles/config")
    chown_tree(world)
    r = sh(world, "--allow", str(h) + grant[1:],
           script="cat ~/.config/gcloud/credentials.db; cat ~/dotfiles/config/gcloud/credentials.db")
    assert "GCLOUD-SECRET" not in r.stdout
    if grant == "~/.config/gcloud":
        assert r.returncode == 1 and "--bypass-protection" in r.stderr  # refused like ~/.ssh
    else:
        assert r.returncode == 1 and denied(r, "credentials.db")


def test_granting_a_denied_dir_needs_bypass(world):
    ssh = world.home / ".ssh"
    r = world.nono("run", "-s", "--allow", str(ssh), "--", "/bin/cat", str(ssh / "id_rsa"))
    assert r.returncode == 1
    assert "--bypass-protection" in r.stderr and "protected by group:deny_credentials" in r.stderr
    assert SSH_SECRET not in r.stdout
    r = world.nono("run", "-s", "--read-file", str(ssh / "id_rsa"), "--", "/bin/cat", str(ssh / "id_rsa"))
    assert r.returncode == 1 and "--bypass-protection" in r.stderr and SSH_SECRET not in r.stdout
    r = world.nono("run", "-s", "--allow", str(ssh), "--bypass-protection", str(ssh), "--",
                   "/bin/cat", str(ssh / "id_rsa"))
    assert r.returncode == 0, r.stderr
    assert SSH_SECRET in r.stdout


def test_bypass_lifts_only_the_named_deny(world):
    h = world.home
    codes, r = steps(world, "--allow", str(h), "--bypass-protection", str(h / ".ssh"),
                     key="cat ~/.ssh/id_rsa", aws="cat ~/.aws/credentials", bashrc="cat ~/.bashrc")
    assert codes == {"key": 0, "aws": 1, "bashrc": 1}, r.stderr
    assert SSH_SECRET in r.stdout and "aws_secret_access_key" not in r.stdout
    assert denied(r, ".aws/credentials") and denied(r, ".bashrc")


def test_bypass_without_grant_is_refused(world):
    r = world.nono("run", "-s", "--bypass-protection", str(world.home / ".ssh"), "--", "/bin/true")
    assert r.returncode == 1 and "has no matching grant" in r.stderr


# --------------------------------------------------------------------------- 9. protected nono state


@pytest.mark.parametrize("root", [".config/nono", ".local/state/nono", ".nono"])
def test_protected_state_roots_cannot_be_granted(world, root):
    state = world.home / root
    plant(world, state / "sub" / "state.json", "STATE-SECRET\n")
    for flags in (["--allow", str(state)], ["--read", str(state / "sub")],
                  ["--read-file", str(state / "sub" / "state.json")]):
        r = world.nono("run", "-s", *flags, "--", "/bin/cat", str(state / "sub" / "state.json"))
        assert r.returncode == 1, (flags, r.stderr)
        assert "protected nono state root" in r.stderr, (flags, r.stderr)
        assert_no_secret(r)


def test_protected_state_stays_denied_inside_allow_home(world):
    h = world.home
    plant(world, h / ".config" / "nono" / "profiles" / "p.json", "STATE-SECRET\n")
    plant(world, h / ".local" / "state" / "nono" / "audit.log", "STATE-SECRET\n")
    codes, r = steps(world, "--allow", str(h),
                     cfg="cat ~/.config/nono/profiles/p.json", state="cat ~/.local/state/nono/audit.log",
                     tamper="echo '{}' > ~/.config/nono/profiles/p.json", drop="touch ~/.local/state/nono/x")
    assert codes == {"cfg": 1, "state": 1, "tamper": 2, "drop": 1}, r.stderr
    assert_no_secret(r)
    assert (h / ".config" / "nono" / "profiles" / "p.json").read_text() == "STATE-SECRET\n"


def test_protected_state_below_a_symlinked_ancestor_is_denied(world):
    """Contrast with the deny-group bug above: protected roots are canonicalised, ancestors included."""
    h = world.home
    plant(world, h / "dotfiles" / "config" / "nono" / "p.json", "STATE-SECRET\n")
    (h / ".config").symlink_to("dotfiles/config")
    chown_tree(world)
    codes, r = steps(world, "--allow", str(h),
                     via_link="cat ~/.config/nono/p.json", via_target="cat ~/dotfiles/config/nono/p.json")
    assert codes == {"via_link": 1, "via_target": 1}, r.stderr
    assert_no_secret(r)
    r = world.nono("run", "-s", "--read", str(h / ".config" / "nono"), "--", "/bin/true")
    assert r.returncode == 1 and "protected nono state root" in r.stderr


def test_empty_entry_in_allow_list_is_a_usage_error(world):
    r = world.nono("run", "-s", "-a", f"{world.work},", "--", "/bin/true")
    assert r.returncode == 2 and "empty path" in r.stderr


# --------------------------------------------------------------------------- 10. bad input


def test_missing_path_is_skipped_with_warning(world):
    missing = world.work / "does-not-exist"
    r = world.nono("run", "--read", str(missing), "--allow-cwd", "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert "some requested sandbox grants were skipped because the path does not exist" in r.stderr
    assert str(missing) in r.stderr


def test_file_given_to_dir_grant_is_refused(world):
    r = world.nono("run", "-s", "--read", str(world.work / "input.txt"), "--", "/bin/true")
    assert r.returncode == 1
    assert "is a file, but a directory grant was requested" in r.stderr and "--read-file" in r.stderr


def test_dir_given_to_file_grant_is_refused(world):
    r = world.nono("run", "-s", "--read-file", str(world.outside), "--", "/bin/true")
    assert r.returncode == 1
    assert "is a directory, but a single-file grant was requested" in r.stderr


@pytest.mark.parametrize("spelling", ["./sub", "sub", "sub/../sub", "./sub/.", "sub//"])
def test_relative_grants_resolve_against_cwd(world, spelling):
    plant(world, world.work / "sub" / "a", "sub-a\n")
    codes, r = steps(world, "--read", spelling, read="cat sub/a", sibling="cat input.txt")
    assert codes == {"read": 0, "sibling": 1}, r.stderr
    assert r.out["read"] == "sub-a\n" and r.out["sibling"] == ""
    assert denied(r, "input.txt")
