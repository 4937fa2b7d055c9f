"""Fuzz the profile loader: random, schema-shaped and mutated profiles never produce a traceback.

Each example is written to its own file (the loader caches documents by file,
mtime and size) and fed to ``profiles.resolve`` (plus ``to_policy``),
``profiles.validate_file`` and the CLI (``nono profile validate``/``show``).
Only :class:`nono.errors.NonoError` may come out of the library calls;
``main()`` must return an int and never raise.

Inputs with their own regression tests (``test_fixed_*`` in test_profiles.py)
are kept out of the strategies, which keeps each example fast: nesting
deeper than ~1000, integers over 4300 digits, YAML anchors (recursive
aliases), lone surrogates, YAML scalars PyYAML fails to construct (``!!int``,
``2020-02-30``, ...), and integral floats in the schema-agreement test.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nono.cli.main import main
from nono.errors import NonoError
from nono.policy import groups, profiles, schema

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    database=None)
BUILTIN_DIR = Path(profiles.BUILTIN_DIR)
BUILTIN_TEXTS = {p.name: p.read_text() for p in sorted(BUILTIN_DIR.glob("*.json"))}
RICH_JSONC = """{
  "$schema": "https://nono.sh/schemas/nono-profile.schema.json",
  // a hand-written profile touching most sections
  "meta": {"name": "rich", "version": "1", "description": "fuzz seed", "author": null},
  "extends": ["claude-code", "python-dev"],
  "groups": {"include": ["git_config", {"name": "rust_runtime", "when": "linux"}], "exclude": ["user_tools"]},
  "filesystem": {
    "read": ["$WORKDIR/docs", "~/notes", {"path": "/opt/x", "when": ["macos", "linux"]},],
    "allow": ["$XDG_CACHE_HOME/rich"], "read_file": ["~/.richrc"], "deny": ["$WORKDIR/secret"],
    "bypass_protection": [], "unix_socket": ["/run/x.sock"]
  },
  /* network */
  "network": {"network_profile": null, "open_port": [8080], "listen_port": [9000], "connect_port": [443],
              "credentials": [], "allow_http2": false},
  "environment": {"allow_vars": ["RICH_*"], "deny_vars": ["AWS_*"], "set_vars": {"RICH": "1"}},
  "workdir": {"access": "read"},
  "security": {"signal_mode": "isolated", "ipc_mode": "full"},
  "policy": {"add_allow_read": ["/legacy"]},
  "rollback": {"exclude_patterns": ["*.log"]},
}
"""
RICH_YAML = """# yaml seed
extends: codex
meta: {name: rich-yaml, description: "fuzz"}
groups:
  include: [git_config]
filesystem:
  read:
    - $WORKDIR/docs
    - {path: /opt/y, when: "!macos"}
  deny: [~/.secret]
network:
  block: true
  open_port: [8080]
environment:
  set_vars: {A: "1"}
workdir: {access: readwrite}
"""
SEEDS = {**BUILTIN_TEXTS, "rich.jsonc": RICH_JSONC, "rich.yaml": RICH_YAML}


# ------------------------------------------------------------------------------------------
# Workspace: one temporary HOME/XDG_CONFIG_HOME/cwd for the module, a fresh file per example
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    mp = pytest.MonkeyPatch()
    for d in ("home", "xdg", "work", "files"):
        (root / d).mkdir()
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("XDG_CONFIG_HOME", str(root / "xdg"))
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        mp.delenv(var, raising=False)
    mp.chdir(root / "work")
    yield root
    mp.undo()


_counter = itertools.count()


def _path(ws: Path, suffix: str) -> Path:
    return ws / "files" / f"f{next(_counter)}{suffix}"


def _write_text(ws: Path, text: str, suffix: str) -> str:
    p = _path(ws, suffix)
    p.write_text(text, encoding="utf-8")
    return str(p)


def _write_bytes(ws: Path, data: bytes, suffix: str) -> str:
    p = _path(ws, suffix)
    p.write_bytes(data)
    return str(p)


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)  # anything but a return is a failure of the test
    assert isinstance(code, int), code
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


CLI_VARIANTS = ("validate", "validate-json", "show", "show-json")


def exercise(path: str, workdir: str, variant: str = "validate") -> None:
    """Feed one file everywhere; only NonoError may escape the library, nothing may escape main().

    ``variant`` picks the CLI command run on it (one per example keeps the suite fast;
    hypothesis draws it, so every command sees every kind of input).
    """
    try:
        resolved = profiles.resolve(path)
    except NonoError:
        resolved = None
    if resolved is not None:
        try:
            resolved.to_policy(workdir)
        except NonoError:
            pass
        resolved.not_enforced()
        resolved.needs_proxy()
    if variant.startswith("show"):  # the validate variants call validate_file through the CLI
        try:
            problems, _legacy = profiles.validate_file(path)
            assert all(isinstance(p, str) for p in problems)
            if problems:
                assert resolved is None  # schema problems always stop resolution
        except NonoError:
            assert resolved is None
    if variant == "validate":
        code, _out, _err = _cli(["profile", "validate", path])
        assert code in (0, 1)
        assert (code == 0) == (resolved is not None)
    elif variant == "validate-json":
        code, out, _err = _cli(["profile", "validate", path, "--json", "--strict"])
        assert code in (0, 1, 2)
        assert json.loads(out)["exit_code"] == code
        assert (code != 1) == (resolved is not None)
    else:
        argv = ["profile", "show", path] + (["--json"] if variant == "show-json" else [])
        code, out, _err = _cli(argv)
        assert code in (0, 1)
        assert (code == 0) == (resolved is not None)
        if code == 0 and variant == "show-json":
            json.loads(out)


# ------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------
SCHEMA = schema.schema()


def _deref(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].split("/")[-1]]
    return node


def _all_keys(node: dict, seen: set[int], out: set[str]) -> None:
    node = _deref(node)
    if id(node) in seen:
        return
    seen.add(id(node))
    for k, v in node.get("properties", {}).items():
        out.add(k)
        _all_keys(v, seen, out)
    for comb in ("oneOf", "anyOf"):
        for o in node.get(comb, ()):
            _all_keys(o, seen, out)
    for sub in ("items", "additionalProperties"):
        if isinstance(node.get(sub), dict):
            _all_keys(node[sub], seen, out)


_keys: set[str] = set()
_all_keys(SCHEMA, set(), _keys)
ALL_KEYS = sorted(_keys) + ["policy", "add_allow_read", "add_deny_access", "override_deny", "exclude_groups",
                            "groups", "alow", "reed", "Filesystem"]
TOP_KEYS = sorted(SCHEMA["properties"]) + ["policy"]
GROUP_NAMES = sorted(groups.data()["groups"]) + ["no_such_group", "node_runtim", "deny_keychains_macos"]
PROFILE_NAMES = sorted(p.stem for p in BUILTIN_DIR.glob("*.json")) + ["nope", "bad name", "", "x/y", "z.json"]
PATHS = ["/", "/usr", "/tmp/x", "~", "~/x", "~/.ssh", "$HOME/a", "$WORKDIR", "$WORKDIR/../up", "$TMPDIR/t",
         "$XDG_CONFIG_HOME/c", "${XDG_CACHE_HOME}/c", "$UID", "$NONO_CONFIG/p", "$NOPE/x", "${NOPE", "$", "rel",
         "../rel", "./x", "/x/../../y", "/a b/c", "/ünï/ç", "", " "]
CONDITIONS = ["linux", "macos", "!macos", "!linux", "linux:debian", "macos:>=15", "LINUX", "", "!"]
WORDS = PATHS + CONDITIONS + GROUP_NAMES + PROFILE_NAMES + ["none", "read", "write", "readwrite", "isolated",
                                                            "allow_all", "full", "developer", "claude-code", "PATH",
                                                            "NONO_X", "A=B", "https://x.example", "*.example.com"]

# Text without lone surrogates (hypothesis' default); no integral floats where noted.
text = st.text(max_size=12)
word = st.sampled_from(WORDS)
strings = st.one_of(word, text)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.integers(-5, 70000), finite_floats,
                    strings)
scalars_no_integral = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000),
                                finite_floats.filter(lambda f: not f.is_integer()), strings)
keys = st.one_of(st.sampled_from(ALL_KEYS), text)
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(keys, c, max_size=4)),
                           max_leaves=12)


def from_schema(node: dict, depth: int = 0, *, integral_floats: bool = True) -> st.SearchStrategy:
    """Values shaped by the schema (mostly valid), with some noise mixed in at every level."""
    raw = node
    node = _deref(node)
    ref = raw.get("$ref", "")
    kw = {"integral_floats": integral_floats}
    # noise: any JSON value near the top, cheap scalars deeper down (generation cost)
    noise = (json_values if depth < 2 else scalars) if integral_floats else \
        (_no_integral(json_values) if depth < 2 else scalars_no_integral)
    if ref.endswith("/pathEntry"):
        return st.one_of(st.sampled_from(PATHS), st.fixed_dictionaries(
            {"path": st.sampled_from(PATHS)}, optional={"when": st.one_of(st.sampled_from(CONDITIONS),
                                                                          st.lists(st.sampled_from(CONDITIONS), max_size=3))}),
            noise)
    if ref.endswith("/nameEntry"):
        return st.one_of(st.sampled_from(GROUP_NAMES), st.fixed_dictionaries(
            {"name": st.sampled_from(GROUP_NAMES)}, optional={"when": st.sampled_from(CONDITIONS)}), noise)
    alts: list[st.SearchStrategy] = []
    for comb in ("oneOf", "anyOf"):
        for o in node.get(comb, ()):
            alts.append(from_schema(o, depth + 1, **kw))
    if "enum" in node:
        alts.append(st.sampled_from(node["enum"]))
    t = node.get("type")
    for typ in ([t] if isinstance(t, str) else (t or [])):
        if typ == "object":
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            if depth >= 5:
                alts.append(st.just({}))
                continue
            if props:
                subs = {k: from_schema(v, depth + 1, **kw) for k, v in props.items()}
                required = [k for k in node.get("required", ()) if k in subs]
                alts.append(st.lists(st.sampled_from(sorted(subs)), max_size=3, unique=True).flatmap(
                    lambda ks, subs=subs, required=required: st.fixed_dictionaries(
                        {k: subs[k] for k in dict.fromkeys(required + ks)})))
            if isinstance(extra, dict):
                alts.append(st.dictionaries(st.sampled_from(WORDS), from_schema(extra, depth + 1, **kw), max_size=3))
            if not props and not isinstance(extra, dict):
                alts.append(st.dictionaries(text, noise, max_size=3))
        elif typ == "array":
            items = node.get("items", {})
            item = from_schema(items, depth + 1, **kw) if items else noise
            alts.append(st.lists(item, max_size=4, unique_by=(lambda x: json.dumps(x, sort_keys=True))
                                 if node.get("uniqueItems") else None))
        elif typ == "string":
            alts.append(strings)
        elif typ == "integer":
            lo, hi = node.get("minimum", -5), node.get("maximum", 70000)
            alts.append(st.integers(lo - 2, hi + 2))
        elif typ == "number":
            alts.append(finite_floats if integral_floats else finite_floats.filter(lambda f: not f.is_integer()))
        elif typ == "boolean":
            alts.append(st.booleans())
        elif typ == "null":
            alts.append(st.none())
    if not alts:
        return noise
    return st.one_of(*alts) if depth < 2 else st.one_of(*alts, noise)


def _no_integral(strategy: st.SearchStrategy) -> st.SearchStrategy:
    def ok(v) -> bool:
        if isinstance(v, float):
            return not v.is_integer()
        if isinstance(v, list):
            return all(ok(x) for x in v)
        if isinstance(v, dict):
            return all(ok(x) for x in v.values())
        return True

    return strategy.filter(ok)


def _top_level(integral_floats: bool = True) -> st.SearchStrategy:
    """A profile with up to 4 top-level sections, each shaped by the schema."""
    props = SCHEMA["properties"]
    subs = {k: from_schema(v, 1, integral_floats=integral_floats) for k, v in props.items()}
    return st.lists(st.sampled_from(sorted(props)), max_size=4, unique=True).flatmap(
        lambda ks: st.fixed_dictionaries({k: subs[k] for k in ks}))


schema_docs = _top_level()
random_docs = st.dictionaries(st.one_of(st.sampled_from(TOP_KEYS), text), json_values, max_size=5)
documents = st.one_of(schema_docs, random_docs, json_values)


variants = st.sampled_from(CLI_VARIANTS)


def _yaml_dump(doc, flow: bool | None = None) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # only writing the input; nono's loader is under test
    return yaml.dump(doc, Dumper=dumper, allow_unicode=True, default_flow_style=flow)


def _dump_jsonc(doc, comments: bool) -> str:
    text_ = json.dumps(doc, indent=2)
    if comments:
        text_ = "// leading comment\n" + text_.replace("\n", " /* c */\n", 3) + "\n/* trailing */\n"
    return text_


# ------------------------------------------------------------------------------------------
# Random JSON-ish documents
# ------------------------------------------------------------------------------------------
@SETTINGS
@given(doc=documents, comments=st.booleans(), suffix=st.sampled_from([".json", ".jsonc"]), variant=variants)
def test_random_json_documents_never_crash(ws, doc, comments, suffix, variant):
    exercise(_write_text(ws, _dump_jsonc(doc, comments), suffix), str(ws / "work"), variant)


@SETTINGS
@given(doc=documents, variant=variants)
def test_random_documents_as_yaml_never_crash(ws, doc, variant):
    pytest.importorskip("yaml")
    exercise(_write_text(ws, _yaml_dump(doc), ".yaml"), str(ws / "work"), variant)


@SETTINGS
@given(doc=schema_docs, variant=variants)
def test_schema_shaped_documents_validate_consistently(ws, doc, variant):
    """validate_file and resolve agree: no schema problems unless resolve fails for a reason the schema can't see."""
    path = _write_text(ws, json.dumps(doc), ".json")
    problems, _legacy = profiles.validate_file(path)
    try:
        profiles.resolve(path)
        resolved = True
    except NonoError as exc:
        resolved = False
        assert str(exc)
    if problems:
        assert not resolved
    exercise(path, str(ws / "work"), variant)


# ------------------------------------------------------------------------------------------
# Mutations of real profile files
# ------------------------------------------------------------------------------------------
PUNCT = ['"', "{", "}", "[", "]", ",", ":", "//", "/*", "*/", "\\", "\n", " ", "null", "true", "-", "0", "1e9",
         "\\u00e9", "\\n", "#", "- ", "  ", "\t", "'", "?"]
edit = st.tuples(st.sampled_from(["delete", "insert", "replace", "duplicate"]), st.integers(0, 1 << 20),
                 st.integers(1, 12), st.one_of(st.sampled_from(PUNCT), st.text(max_size=4)))


def _mutate(text_: str, edits) -> str:
    s = text_
    for op, pos, n, what in edits:
        i = pos % (len(s) + 1)
        if op == "delete":
            s = s[:i] + s[i + n:]
        elif op == "insert":
            s = s[:i] + what + s[i:]
        elif op == "replace":
            s = s[:i] + what + s[i + len(what):]
        else:
            s = s[:i] + s[i:i + n] + s[i:]
    return s


@SETTINGS
@given(seed=st.sampled_from(sorted(SEEDS)), edits=st.lists(edit, min_size=1, max_size=6),
       suffix=st.sampled_from([".json", ".yaml"]), variant=variants)
def test_mutated_profiles_never_crash(ws, seed, edits, suffix, variant):
    exercise(_write_text(ws, _mutate(SEEDS[seed], edits), suffix), str(ws / "work"), variant)


@SETTINGS
@given(seed=st.sampled_from(sorted(SEEDS)),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.binary(min_size=0, max_size=4), st.integers(0, 4)),
                      min_size=1, max_size=5),
       suffix=st.sampled_from([".json", ".yml"]), variant=variants)
def test_byte_mutated_profiles_never_crash(ws, seed, edits, suffix, variant):
    data = SEEDS[seed].encode()
    for pos, chunk, drop in edits:
        i = pos % (len(data) + 1)
        data = data[:i] + chunk + data[i + drop:]
    exercise(_write_bytes(ws, data, suffix), str(ws / "work"), variant)


# ------------------------------------------------------------------------------------------
# Random YAML text
# ------------------------------------------------------------------------------------------
# Not here: the tags !!int, !!float, !!bool, !!timestamp and invalid dates (2020-02-30): PyYAML's constructors raise
# IndexError/ValueError/KeyError/AttributeError for bad values, which escape nono (regression tests in test_profiles.py).
YAML_TOKENS = [":", ": ", "\n", "  ", "    ", "- ", "[", "]", "{", "}", ", ", "'", '"', "# c\n", "!!str ", "!!null ",
               "!!binary ", "!!set ", "!!omap ", "!!pairs ", "!!python/object:os.system ", "!local ",
               "~", "null", "true", "no", "on", "1", "-1", "0x1F", "0o17", "1e3", ".inf", ".nan", "2020-01-01",
               "12:30:00", "|\n", ">-\n", "---\n", "...\n", "? ", "\t", "%YAML 1.1\n", "<<: ", "=", "\\", "\\x41",
               "%TAG ! tag:x,2000:\n"] + [k + ": " for k in TOP_KEYS] + ["read: ", "include: ", "access: ",
                                                                         "open_port: ", "extends: "] + PATHS
yaml_text = st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=3)), max_size=40).map(
    lambda parts: "".join(parts).replace("&", "")  # no anchors: recursive aliases have their own regression test
)


@SETTINGS
@given(src=yaml_text, suffix=st.sampled_from([".yaml", ".yml", ".json"]), variant=variants)
def test_random_yaml_text_never_crashes(ws, src, suffix, variant):
    exercise(_write_text(ws, src, suffix), str(ws / "work"), variant)


@SETTINGS
@given(doc=schema_docs, variant=variants)
def test_structured_yaml_never_crashes(ws, doc, variant):
    pytest.importorskip("yaml")
    src = _yaml_dump(doc, flow=False)
    exercise(_write_text(ws, src, ".yml"), str(ws / "work"), variant)


# ------------------------------------------------------------------------------------------
# Our validator agrees with jsonschema
# ------------------------------------------------------------------------------------------
jsonschema = pytest.importorskip("jsonschema")
_JS = jsonschema.Draft202012Validator(SCHEMA)
agreement_docs = st.one_of(_top_level(integral_floats=False), _no_integral(random_docs),
                           _no_integral(json_values))


@SETTINGS
@given(doc=agreement_docs)
def test_validator_agrees_with_jsonschema(doc):
    ours = schema.validate(doc)
    theirs = list(_JS.iter_errors(doc))
    assert (ours == []) == (theirs == []), (
        f"ours: {[str(p) for p in ours]}; jsonschema: {[e.message for e in theirs]}")
    # every problem names a dotted key that exists in the document (or the top level)
    for p in ours:
        assert str(p)
        cur = doc
        for part in p.key.split(".") if p.key else ():
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                assert "." in p.key and any("." in str(k) for k in _all_dict_keys(doc)), (p.key, doc)
                break


def _all_dict_keys(v):
    if isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _all_dict_keys(x)
    elif isinstance(v, list):
        for x in v:
            yield from _all_dict_keys(x)


def test_files_are_unique_per_example(ws):
    # sanity: the helper never reuses a name (the loader caches by file, mtime and size)
    a, b = _path(ws, ".json"), _path(ws, ".json")
    assert a != b and not os.path.exists(a)
