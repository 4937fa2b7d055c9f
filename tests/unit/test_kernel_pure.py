"""Pure parts of the kernel layer: the BPF assembler and rights tables."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from nono import _jsonlite
from nono.kernel import landlock as ll
from nono.kernel import seccomp as sc


def _decode(prog: bytes):
    return [(int.from_bytes(prog[i:i + 2], "little"), prog[i + 2], prog[i + 3], int.from_bytes(prog[i + 4:i + 8], "little"))
            for i in range(0, len(prog), 8)]


def test_every_filter_variant_is_well_formed():
    for arch in sc.ARCHES.values():
        for net in (False, True):
            for med in (False, True):
                insns = _decode(sc.build_filter(restrict_network=net, mediate_unix=med, arch=arch))
                assert insns[0] == (0x20, 0, 0, 4)  # load arch first
                assert insns[1][3] == arch.audit
                for i, (code, jt, jf, _k) in enumerate(insns):
                    if code & 0x07 == 0x05:  # BPF_JMP: targets stay inside the program
                        assert i + 1 + jt < len(insns) and i + 1 + jf < len(insns)
                assert insns[-1][0] == 0x06  # ends in a return
                returns = {k for code, _, _, k in insns if code == 0x06}
                assert sc.RET_KILL_PROCESS in returns and sc.RET_ALLOW in returns
                assert (sc.RET_USER_NOTIF in returns) == med


def test_read_and_write_partition_every_right():
    every = ll.fs_rights(ll.LATEST_ABI)
    assert ll.ACCESS_READ | ll.ACCESS_WRITE == every
    assert ll.ACCESS_READ & ll.ACCESS_WRITE == 0
    assert ll.FILE_RIGHTS & ll.READ_DIR == 0
    assert ll.fs_rights(1) == (1 << 13) - 1 and ll.fs_rights(3) & ll.TRUNCATE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_jsonlite_roundtrips_like_json(value):
    assert json.loads(_jsonlite.dumps(value)) == value
    assert json.loads(_jsonlite.dumps_compact(value)) == value
    assert _jsonlite.loads(json.dumps(value)) == value
