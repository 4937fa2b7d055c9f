"""SHA-256 without ``hashlib``: importing it loads OpenSSL (~4 ms here); the
builtin ``_sha2``/``_sha256`` module costs ~0.3 ms and is plenty for short records."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _load() -> 'Any':
    import sys

    for name in (("_sha2", "_sha256") if sys.version_info >= (3, 12) else ("_sha256", "_sha2")):
        try:
            return __import__(name).sha256
        except ImportError:
            continue
    import hashlib  # pragma: no cover - a Python without the builtin module

    return hashlib.sha256


sha256: 'Any' = _load()


def hexdigest(data: bytes) -> str:
    return str(sha256(data).hexdigest())


def digest(data: bytes) -> bytes:
    return bytes(sha256(data).digest())


def merkle_push(stack: 'list[tuple[int, bytes]]', leaf_hash: bytes) -> None:
    """Add one leaf to an incremental Merkle tree (a stack of perfect subtrees).

    The leaves are event hashes (already SHA-256 of a record), used as they are; internal
    nodes are ``SHA256(0x01 || left || right)`` and the shape is RFC 6962's (a left subtree
    of the largest power of two), so the root is computed the same way by a verifier.
    """
    node = (1, leaf_hash)
    while stack and stack[-1][0] == node[0]:
        size, left = stack.pop()
        node = (size * 2, digest(b"\x01" + left + node[1]))
    stack.append(node)


def merkle_root(stack: 'list[tuple[int, bytes]]') -> str:
    """The root of the tree ``stack`` holds (RFC 6962: ``SHA256(0x01 || left || right)``); empty: SHA256('')."""
    if not stack:
        return hexdigest(b"")
    root = stack[-1][1]
    for _size, node in reversed(stack[:-1]):
        root = digest(b"\x01" + node + root)
    return root.hex()
