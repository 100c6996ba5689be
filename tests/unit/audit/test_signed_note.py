"""C2SP signed notes and checkpoints: Go's published sumdb/note vector verifies and is
reproduced byte for byte; keys, ids and checkpoints follow the formats; tampering fails."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from projections.signed_note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    create_private_key_file,
    key_id,
    load_private_key,
    open_checkpoint,
    open_note,
)

# golang.org/x/mod/sumdb/note, note_test.go / the package documentation's example.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
    "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_gos_published_note_verifies_and_its_key_id_is_recomputed():
    verifier = Verifier.parse(GO_VKEY)
    assert verifier.key_id == 0xC74F20A3
    public = base64.b64decode(GO_VKEY.split("+", 2)[2])[1:]
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()
    assert digest[:4].hex() == "c74f20a3" == f"{key_id('PeterNeumann', public):08x}"
    assert open_note(GO_NOTE, [verifier]) == GO_TEXT
    assert verifier.vkey() == GO_VKEY


def test_signing_gos_text_with_gos_key_reproduces_the_published_note_byte_for_byte():
    signer = Signer.from_go_skey(GO_SKEY)
    assert signer.verifier.vkey() == GO_VKEY
    assert signer.sign(GO_TEXT) == GO_NOTE


def test_a_changed_text_or_signature_is_rejected_and_unknown_keys_are_not_enough():
    verifier = Verifier.parse(GO_VKEY)
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("x08go", "x08gp"), [verifier])
    other = Signer("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError):  # same name, other key id: unknown, so nothing verified
        open_note(other.sign(GO_TEXT), [verifier])
    # An unknown signature beside a good one is ignored.
    extra = other.sign(GO_TEXT).split("\n\n", 1)[1]
    assert open_note(GO_NOTE + extra, [verifier]) == GO_TEXT


def test_malformed_verifier_keys_are_rejected():
    for bad in (
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.parse(bad)


def test_a_checkpoint_is_origin_size_and_base64_root_and_opens_only_under_its_origin():
    signer = Signer("gateway.example/audit-log", Ed25519PrivateKey.generate())
    root = hashlib.sha256(b"root").digest()
    note = signer.sign(Checkpoint("gateway.example/audit-log", 1000, root).text())
    text, _, signature = note.partition("\n\n")
    assert text.split("\n") == [
        "gateway.example/audit-log",
        "1000",
        base64.b64encode(root).decode(),
    ]
    assert signature.startswith("— gateway.example/audit-log ")
    assert open_checkpoint(note, signer.verifier) == Checkpoint(
        "gateway.example/audit-log", 1000, root
    )
    foreign = signer.sign(Checkpoint("other.example/log", 1000, root).text())
    with pytest.raises(NoteError):
        open_checkpoint(foreign, signer.verifier)
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n1000\n", "\n1001\n"), signer.verifier)
    for bad_text in ("o\n01\n" + base64.b64encode(root).decode() + "\n", "o\n1\nAAAA\n", "o\n1\n"):
        with pytest.raises(NoteError):
            Checkpoint.parse(bad_text)


def test_a_generated_key_file_is_private_created_once_and_loads(tmp_path):
    path = tmp_path / "keys" / "audit.pem"
    assert create_private_key_file(path) is True
    first = path.read_bytes()
    assert create_private_key_file(path) is False
    assert path.read_bytes() == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["audit.pem"]
    load_private_key(path)
    seed = os.urandom(32)
    (tmp_path / "seed.hex").write_text(seed.hex() + "\n")
    assert load_private_key(tmp_path / "seed.hex").private_bytes_raw() == seed
