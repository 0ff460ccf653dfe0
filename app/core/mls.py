"""What a Delivery Service can read of an MLS message (RFC 9420), without keys.

Pure: bytes in, a header out, or `MlsFormatError` with a stable `reason`.
Nothing here decrypts or verifies a signature; it reads the clear parts of
an `MLSMessage` (RFC 9420 §6) in the TLS presentation language (§2.1):

- 1 PublicMessage: group_id, epoch, sender, authenticated_data, content_type
  (the content after it is not parsed, so its end is not checked);
- 2 PrivateMessage: group_id, epoch, content_type;
- 3 Welcome: cipher_suite, the KeyPackageRef of each new member;
- 4 GroupInfo: version, cipher_suite, group_id and epoch of its GroupContext;
- 5 KeyPackage: version, cipher_suite, its KeyPackageRef.

Where the structure is parsed to its end, bytes after it are an error
(`trailing_bytes`). Variable-length vectors (`<V>`, §2.1.2) use a QUIC-style
varint: a 2-bit prefix gives 1, 2 or 4 bytes (at most 30 bits of length);
the prefix `11` is invalid, and a length that is not minimally encoded is
refused (RFC 9420's reference decoder does so), so one value has one
encoding. ts-mls 1.6.4 always encodes minimally, though its decoder accepts
either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

MLS10 = 1
#: MLS_128_DHKEMP256_AES128GCM_SHA256_P256: the one suite Confide uses.
SUITE_P256 = 2
#: The suites whose hash is SHA-256 (RFC 9420 §17.1): their refs are computed here.
SHA256_SUITES = frozenset({1, 2, 3})

PUBLIC_MESSAGE, PRIVATE_MESSAGE, WELCOME, GROUP_INFO, KEY_PACKAGE = 1, 2, 3, 4, 5
APPLICATION, PROPOSAL, COMMIT = 1, 2, 3
MEMBER, EXTERNAL, NEW_MEMBER_PROPOSAL, NEW_MEMBER_COMMIT = 1, 2, 3, 4
BASIC, X509 = 1, 2
#: LeafNodeSource of a leaf inside a KeyPackage.
LEAF_FROM_KEY_PACKAGE = 1

KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"
#: The label of a room's MLS group id (`room_group_id`).
ROOM_GROUP_LABEL = b"Confide MLS group v1"

Reason = Literal[
    "truncated",
    "trailing_bytes",
    "bad_varint",
    "non_minimal_varint",
    "unknown_version",
    "unknown_wire_format",
    "unknown_content_type",
    "unknown_sender_type",
    "unknown_credential_type",
    "bad_leaf_node_source",
]


class MlsFormatError(ValueError):
    """The bytes are not an MLS message this parser reads; `reason` says why."""

    def __init__(self, reason: Reason, offset: int) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.reason: Reason = reason
        self.offset = offset


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise MlsFormatError("truncated", len(self.data))
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def varint(self) -> int:
        start = self.pos
        first = self.uint(1)
        prefix = first >> 6
        if prefix == 3:
            raise MlsFormatError("bad_varint", start)
        size = 1 << prefix
        value = first & 0x3F
        for byte in self.take(size - 1):
            value = (value << 8) | byte
        if prefix and value < 1 << (8 * (size >> 1) - 2):
            raise MlsFormatError("non_minimal_varint", start)
        return value

    def vector(self) -> bytes:
        return self.take(self.varint())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MlsFormatError("trailing_bytes", self.pos)


def _vectors(blob: bytes) -> list[bytes]:
    """A vector of `opaque x<V>` items, each as bytes."""
    inner = _Reader(blob)
    items = []
    while inner.pos < len(blob):
        items.append(inner.vector())
    return items


def encode_varint(n: int) -> bytes:
    """The minimal encoding of a vector length (RFC 9420 §2.1.2)."""
    if n < 0 or n >= 1 << 30:
        raise ValueError("a vector length is at most 2**30 - 1")
    if n < 1 << 6:
        return n.to_bytes(1, "big")
    if n < 1 << 14:
        return (n | 0x4000).to_bytes(2, "big")
    return (n | 0x8000_0000).to_bytes(4, "big")


def ref_hash(label: bytes, value: bytes) -> bytes:
    """RefHash(label, value) with SHA-256 (RFC 9420 §5.2)."""
    data = encode_varint(len(label)) + label + encode_varint(len(value)) + value
    return hashlib.sha256(data).digest()


def key_package_ref(key_package: bytes) -> bytes:
    """The KeyPackageRef of an encoded KeyPackage (without the MLSMessage header)."""
    return ref_hash(KEY_PACKAGE_REF_LABEL, key_package)


def room_group_id(room_id: str) -> bytes:
    """The MLS group id of a room: RefHash("Confide MLS group v1", room id as UTF-8).

    32 bytes, the same for every client and instance, computed from the id alone;
    the label keeps it apart from any other hash of a room id (PROTOCOL.md).
    """
    return ref_hash(ROOM_GROUP_LABEL, room_id.encode("utf-8"))


@dataclass(frozen=True)
class PublicMessageHeader:
    group_id: bytes
    epoch: int
    sender_type: int
    #: The leaf index (member) or sender index (external); None for new members.
    sender_index: int | None
    authenticated_data: bytes
    content_type: int
    wire_format: Literal[1] = 1


@dataclass(frozen=True)
class PrivateMessageHeader:
    group_id: bytes
    epoch: int
    content_type: int
    wire_format: Literal[2] = 2


@dataclass(frozen=True)
class WelcomeHeader:
    cipher_suite: int
    #: The KeyPackageRef of each new member, in the Welcome's order.
    new_members: tuple[bytes, ...]
    wire_format: Literal[3] = 3


@dataclass(frozen=True)
class GroupInfoHeader:
    version: int
    cipher_suite: int
    group_id: bytes
    epoch: int
    wire_format: Literal[4] = 4


@dataclass(frozen=True)
class KeyPackageHeader:
    version: int
    cipher_suite: int
    #: The KeyPackageRef, for a suite whose hash is SHA-256; else None.
    ref: bytes | None
    wire_format: Literal[5] = 5


Header = (
    PublicMessageHeader | PrivateMessageHeader | WelcomeHeader | GroupInfoHeader | KeyPackageHeader
)


def _content_type(r: _Reader) -> int:
    start = r.pos
    content_type = r.uint(1)
    if content_type not in (APPLICATION, PROPOSAL, COMMIT):
        raise MlsFormatError("unknown_content_type", start)
    return content_type


def _public(r: _Reader) -> PublicMessageHeader:
    group_id = r.vector()
    epoch = r.uint(8)
    start = r.pos
    sender_type = r.uint(1)
    sender_index: int | None = None
    if sender_type in (MEMBER, EXTERNAL):
        sender_index = r.uint(4)
    elif sender_type not in (NEW_MEMBER_PROPOSAL, NEW_MEMBER_COMMIT):
        raise MlsFormatError("unknown_sender_type", start)
    authenticated_data = r.vector()
    content_type = _content_type(r)
    # The content, signature and tag follow; they are not parsed here.
    return PublicMessageHeader(
        group_id, epoch, sender_type, sender_index, authenticated_data, content_type
    )


def _private(r: _Reader) -> PrivateMessageHeader:
    group_id = r.vector()
    epoch = r.uint(8)
    content_type = _content_type(r)
    r.vector()  # authenticated_data
    r.vector()  # encrypted_sender_data
    r.vector()  # ciphertext
    r.end()
    return PrivateMessageHeader(group_id, epoch, content_type)


def _welcome(r: _Reader) -> WelcomeHeader:
    cipher_suite = r.uint(2)
    secrets = _Reader(r.vector())
    refs = []
    while secrets.pos < len(secrets.data):
        refs.append(secrets.vector())  # new_member: KeyPackageRef
        secrets.vector()  # HPKECiphertext.kem_output
        secrets.vector()  # HPKECiphertext.ciphertext
    r.vector()  # encrypted_group_info
    r.end()
    return WelcomeHeader(cipher_suite, tuple(refs))


def _group_info(r: _Reader) -> GroupInfoHeader:
    start = r.pos
    version = r.uint(2)
    if version != MLS10:
        raise MlsFormatError("unknown_version", start)
    cipher_suite = r.uint(2)
    group_id = r.vector()
    epoch = r.uint(8)
    r.vector()  # tree_hash
    r.vector()  # confirmed_transcript_hash
    r.vector()  # GroupContext extensions
    r.vector()  # GroupInfo extensions
    r.vector()  # confirmation_tag
    r.uint(4)  # signer
    r.vector()  # signature
    r.end()
    return GroupInfoHeader(version, cipher_suite, group_id, epoch)


def _credential(r: _Reader) -> None:
    start = r.pos
    credential_type = r.uint(2)
    if credential_type == BASIC:
        r.vector()  # identity
    elif credential_type == X509:
        _vectors(r.vector())  # certificates: each opaque cert_data<V>
    else:
        raise MlsFormatError("unknown_credential_type", start)


def _key_package(r: _Reader) -> KeyPackageHeader:
    begin = r.pos
    version = r.uint(2)
    if version != MLS10:
        raise MlsFormatError("unknown_version", begin)
    cipher_suite = r.uint(2)
    r.vector()  # init_key
    # LeafNode
    r.vector()  # encryption_key
    r.vector()  # signature_key
    _credential(r)
    for _ in range(5):  # capabilities: versions, suites, extensions, proposals, credentials
        r.vector()
    start = r.pos
    if r.uint(1) != LEAF_FROM_KEY_PACKAGE:
        raise MlsFormatError("bad_leaf_node_source", start)
    r.uint(8)  # lifetime.not_before
    r.uint(8)  # lifetime.not_after
    r.vector()  # leaf extensions
    r.vector()  # leaf signature
    r.vector()  # KeyPackage extensions
    r.vector()  # signature
    r.end()
    ref = key_package_ref(r.data[begin:]) if cipher_suite in SHA256_SUITES else None
    return KeyPackageHeader(version, cipher_suite, ref)


def parse(data: bytes) -> Header:
    """The clear header of an encoded `MLSMessage`, or `MlsFormatError`."""
    r = _Reader(bytes(data))
    version = r.uint(2)
    if version != MLS10:
        raise MlsFormatError("unknown_version", 0)
    wire_format = r.uint(2)
    if wire_format == PUBLIC_MESSAGE:
        return _public(r)
    if wire_format == PRIVATE_MESSAGE:
        return _private(r)
    if wire_format == WELCOME:
        return _welcome(r)
    if wire_format == GROUP_INFO:
        return _group_info(r)
    if wire_format == KEY_PACKAGE:
        return _key_package(r)
    raise MlsFormatError("unknown_wire_format", 2)
