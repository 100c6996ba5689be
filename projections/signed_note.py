"""C2SP signed notes (Ed25519) and tlog checkpoints, as Go's `golang.org/x/mod/sumdb/note`
defines them.

A signed note is UTF-8 text ending in "\\n", a blank line, then signature lines
`— <key name> <base64(4-byte big-endian key id || 64-byte Ed25519 signature)>` (U+2014 and
a space). The signature covers the text, final newline included. Key id =
SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]; verifier key string =
`<name>+<8 hex key id>+<base64(0x01 || public key)>`.

A checkpoint (C2SP tlog-checkpoint) is a note whose text is exactly three lines: the log's
origin, the tree size in decimal, the base64 RFC 9162 root hash. The log's key name is its
origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM_ED25519 = 0x01
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, then a space
SIGNATURES_MAX = 100  # the spec asks verifiers to accept at least 16
NOTE_BYTES_MAX = 1_000_000
# Go's rule for key names: non-empty, no '+', no whitespace, printable.
_KEY_NAME = re.compile(r"^[^\s+]+$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or whose signature does not verify."""


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALGORITHM_ED25519]) + public_key)
    return int(struct.unpack(">I", digest.digest()[:4])[0])


def _check_name(name: str) -> None:
    if not _KEY_NAME.match(name) or not name.isprintable():
        raise NoteError(f"invalid key name {name!r}: non-empty, no '+', no whitespace")


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        _check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise NoteError("the key id of a verifier key is 8 lower-case hex digits")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("the key of a verifier key is not base64") from None
        if len(raw) != 33 or raw[0] != ALGORITHM_ED25519:
            raise NoteError("only Ed25519 verifier keys (0x01 || 32 bytes) are supported")
        public_key = raw[1:]
        if key_id(name, public_key) != int(hex_id, 16):
            raise NoteError("the verifier key's id does not match its name and key")
        return cls(name, int(hex_id, 16), public_key)

    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALGORITHM_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


class Signer:
    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._private_key = private_key
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = Verifier(name, key_id(name, public), public)

    @classmethod
    def from_go_skey(cls, skey: str) -> Signer:
        """Go's `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>` (tests, interop)."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("not a Go note signer key")
        raw = base64.b64decode(parts[4])
        if len(raw) != 33 or raw[0] != ALGORITHM_ED25519:
            raise NoteError("only Ed25519 signer keys are supported")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if f"{signer.verifier.key_id:08x}" != parts[3]:
            raise NoteError("the signer key's id does not match")
        return signer

    def sign(self, text: str) -> str:
        """The signed note: text, a blank line, this key's signature line."""
        if not text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        signature = self._private_key.sign(text.encode())
        blob = struct.pack(">I", self.verifier.key_id) + signature
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


def open_note(note: str, verifiers: list[Verifier]) -> str:
    """The note's text if at least one known verifier's signature verifies; signatures of
    unknown (name, key id) pairs are ignored, a known one that fails rejects the note."""
    if len(note.encode()) > NOTE_BYTES_MAX:
        raise NoteError("note too large")
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise NoteError("a signed note is text, a blank line and signature lines")
    text += "\n"
    lines = signatures[:-1].split("\n")
    if len(lines) > SIGNATURES_MAX:
        raise NoteError("too many signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = 0
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with '— '")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("a signature is not base64") from None
        if len(blob) < 5:
            raise NoteError("a signature is shorter than its key id")
        verifier = known.get((name, int(struct.unpack(">I", blob[:4])[0])))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), blob[4:]):
            raise NoteError(f"the signature of {name} does not verify")
        verified += 1
    if not verified:
        raise NoteError("no signature by a known key")
    return text


# --- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:3]):
            raise NoteError("a checkpoint is origin, size and root hash lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not _DECIMAL.match(size):
            raise NoteError("checkpoint size is not a decimal number")
        try:
            root_bytes = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("checkpoint root is not base64") from None
        if len(root_bytes) != 32:
            raise NoteError("checkpoint root is not a SHA-256 hash")
        return cls(origin, int(size), root_bytes)


def sign_checkpoint(signer: Signer, checkpoint: Checkpoint) -> str:
    return signer.sign(checkpoint.text())


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint by the log's key; the origin must be the key's name."""
    checkpoint = Checkpoint.parse(open_note(note, [verifier]))
    if checkpoint.origin != verifier.name:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {verifier.name!r}")
    return checkpoint


# --- key files -------------------------------------------------------------------------------


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 key as PKCS8 PEM, or a raw 32-byte seed (binary, hex or base64 text)."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise NoteError(f"{path} does not hold an Ed25519 private key")
        return key
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    text = data.strip().decode("ascii", errors="replace")
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            seed = decode(text)
        except ValueError:
            continue
        if len(seed) == 32:
            return Ed25519PrivateKey.from_private_bytes(seed)
    raise NoteError(f"{path} holds neither a PKCS8 PEM Ed25519 key nor a 32-byte seed")


def create_private_key_file(path: Path) -> bool:
    """Create `path` (mode 0600) with a fresh PKCS8 PEM key unless it exists. The key is
    written to a private temporary file first and linked into place (link fails if the
    name exists), so processes starting together end with one complete key. True if
    this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)
