#!/usr/bin/env python3
"""Verify a Ledgergate inclusion proof without Ledgergate: the whole algorithm on one page.

Needs only Python 3.11+ and the `cryptography` package. Usage:

    curl -s https://GATEWAY/v1/data/audit/lg_req_.../proof -H "Authorization: Bearer lg_live_..." > proof.json
    python3 verify_proof.py proof.json --public-key 'ORIGIN+KEYID+BASE64KEY'

It checks, for the checkpoint the proof names and for every event of the request:
1. the checkpoint is a C2SP signed note signed by the given Ed25519 key: key id =
   SHA-256(name || 0x0A || 0x01 || public key)[:4], signature line
   "— <name> <base64(key id || signature over the note text)>"; its text is
   "<origin>\\n<size>\\n<base64 root>\\n" and the origin is the key's name;
2. the leaf bytes decode in the documented layout (version 0x01, position u64, aggregate id
   16 bytes, version u64, topic u32-length + UTF-8, state u32-length + bytes, big-endian)
   and agree with the position and index the proof states;
3. the leaf hash SHA-256(0x00 || leaf) climbs the inclusion proof (RFC 9162 section
   2.1.3.2, node = SHA-256(0x01 || left || right)) to exactly the signed root.
Exit status 0 if everything verifies, 1 otherwise (the first failure is printed).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Invalid(Exception):
    pass


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """name, 4-byte key id, 32-byte Ed25519 public key, from '<name>+<hex id>+<base64>'."""
    name, key_id_hex, encoded = vkey.strip().split("+", 2)
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) != 33 or raw[0] != 0x01:
        raise Invalid("not an Ed25519 verifier key")
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise Invalid("the verifier key's id does not match its name and key")
    return name, key_id, raw[1:]


def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note signed by `vkey`."""
    name, key_id, public_key = parse_vkey(vkey)
    text, separator, signatures = note.rpartition("\n\n")
    if not separator:
        raise Invalid("the checkpoint is not a signed note")
    text += "\n"
    verified = False
    for line in signatures.rstrip("\n").split("\n"):
        signer, _, encoded = line.removeprefix("\u2014 ").partition(" ")
        blob = base64.b64decode(encoded)
        if not line.startswith("\u2014 ") or signer != name or blob[:4] != key_id:
            continue  # another key's signature: not ours to judge
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode())
        except InvalidSignature:
            raise Invalid("the checkpoint signature does not verify") from None
        verified = True
    if not verified:
        raise Invalid("the checkpoint carries no signature by the given key")
    origin, size, root, *extensions = text.split("\n")
    if origin != name:
        raise Invalid(f"checkpoint origin {origin!r} is not the key name {name!r}")
    return origin, int(size), base64.b64decode(root, validate=True)


def decode_leaf(leaf: bytes) -> dict[str, object]:
    version, position, aggregate, event_version = struct.unpack_from(">BQ16sQ", leaf, 0)
    if version != 1:
        raise Invalid(f"unknown leaf format version {version}")
    offset = 33
    (topic_length,) = struct.unpack_from(">I", leaf, offset)
    topic = leaf[offset + 4 : offset + 4 + topic_length].decode()
    offset += 4 + topic_length
    (state_length,) = struct.unpack_from(">I", leaf, offset)
    if offset + 4 + state_length != len(leaf):
        raise Invalid("leaf bytes do not end where their state length says")
    return {
        "position": position,
        "aggregate_id": str(uuid.UUID(bytes=aggregate)),
        "version": event_version,
        "topic": topic,
    }


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, verbatim."""
    if not 0 <= index < size:
        raise Invalid(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            raise Invalid("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            result = node(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Invalid("the inclusion proof is too short")
    return result


def verify(proof_document: dict, vkey: str) -> list[str]:
    checkpoint = proof_document.get("checkpoint")
    if not checkpoint:
        raise Invalid("the proof names no checkpoint (none signed yet)")
    origin, size, root = open_checkpoint(checkpoint["note"], vkey)
    if size != checkpoint["size"] or root.hex() != checkpoint["root_hash"]:
        raise Invalid("the checkpoint fields differ from its signed note")
    lines = [f"checkpoint {origin} size {size} root {root.hex()}: signature OK"]
    for event in proof_document["events"]:
        if not event.get("covered"):
            lines.append(f"position {event['position']}: newer than the checkpoint, not covered")
            continue
        leaf = base64.b64decode(event["leaf"], validate=True)
        fields = decode_leaf(leaf)
        if fields["position"] != event["position"]:
            raise Invalid(
                f"leaf says position {fields['position']}, proof says {event['position']}"
            )
        leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
        path = [bytes.fromhex(value) for value in event["inclusion_proof"]]
        if root_from_inclusion_proof(event["leaf_index"], size, leaf_hash, path) != root:
            raise Invalid(
                f"position {event['position']}: the inclusion proof does not reach the root"
            )
        lines.append(
            f"position {event['position']} (leaf {event['leaf_index']}, {fields['topic']}): included"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("proof", help="the JSON the proof endpoint returned ('-' for stdin)")
    parser.add_argument("--public-key", required=True, help="the log's verifier key string")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.proof == "-" else open(args.proof, encoding="utf-8").read()
        for line in verify(json.loads(text), args.public_key):
            print(line)
    except (Invalid, ValueError, KeyError, TypeError, struct.error) as error:
        print(f"INVALID: {error}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
