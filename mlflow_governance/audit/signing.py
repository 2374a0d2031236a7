"""Ed25519 signatures on audit checkpoints.

A checkpoint (the chain head: row count, head id and hash, time) kept outside the
database reveals a log that was cut or rewritten after it, unless whoever rewrote the log
also rewrote the checkpoint. Signed with a key the database administrator does not hold,
it cannot be rewritten unnoticed: ``audit verify --checkpoint FILE --verify-key PUB``
checks the signature before it compares the log with the checkpoint.

Keys are PEM files, as ``openssl genpkey -algorithm ed25519`` writes them (PKCS#8) and
``openssl pkey -pubout`` derives the public half (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_governance.exceptions import InvalidRequest

ALGORITHM = "ed25519"
#: The key under which a checkpoint file carries its signature.
SIGNATURE_FIELD = "signature"


def payload(checkpoint: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: every field but the signature, as compact sorted JSON."""
    fields = {key: value for key, value in checkpoint.items() if key != SIGNATURE_FIELD}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"Cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_private_key(path: str) -> Any:
    """An Ed25519 private key from a PEM file.

    Raises:
        InvalidRequest: Unreadable, encrypted, or not an Ed25519 private key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(_read(path, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            f"{path} is not an unencrypted PEM private key ({exc}); make one with "
            "'openssl genpkey -algorithm ed25519 -out checkpoint-key.pem'."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidRequest(f"{path} holds a {type(key).__name__}, not an Ed25519 key.")
    return key


def load_public_key(path: str) -> Any:
    """An Ed25519 public key from a PEM file.

    Raises:
        InvalidRequest: Unreadable or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(_read(path, "verification key"))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            f"{path} is not a PEM public key ({exc}); derive it from the signing key with "
            "'openssl pkey -in checkpoint-key.pem -pubout -out checkpoint-key.pub'."
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidRequest(f"{path} holds a {type(key).__name__}, not an Ed25519 key.")
    return key


def key_id(public_key: Any) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of the sha256 of its
    raw bytes (so a reader can tell which key signed)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(checkpoint: Mapping[str, Any], private_key: Any) -> dict[str, Any]:
    """The checkpoint with its signature added.

    Args:
        checkpoint: The checkpoint as ``audit checkpoint`` returns it.
        private_key: An Ed25519 private key (:func:`load_private_key`).
    """
    signature = private_key.sign(payload(checkpoint))
    return {
        **{key: value for key, value in checkpoint.items() if key != SIGNATURE_FIELD},
        SIGNATURE_FIELD: {
            "algorithm": ALGORITHM,
            "key_id": key_id(private_key.public_key()),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }


def signature_problem(checkpoint: Mapping[str, Any], public_key: Any) -> str | None:
    """Why the checkpoint's signature does not hold under ``public_key``, or None.

    Args:
        checkpoint: A checkpoint file's parsed JSON.
        public_key: The Ed25519 public key it must be signed with.
    """
    from cryptography.exceptions import InvalidSignature

    block = checkpoint.get(SIGNATURE_FIELD)
    if not isinstance(block, Mapping):
        return "the checkpoint is not signed (no signature field)"
    if block.get("algorithm") != ALGORITHM:
        return f"the checkpoint is signed with {block.get('algorithm')!r}, not {ALGORITHM}"
    expected_id = key_id(public_key)
    if block.get("key_id") != expected_id:
        return (
            f"the checkpoint was signed by key {block.get('key_id')}, not by the verification "
            f"key given ({expected_id})"
        )
    try:
        signature = base64.b64decode(str(block.get("value", "")), validate=True)
        public_key.verify(signature, payload(checkpoint))
    except (InvalidSignature, ValueError):
        return (
            "the checkpoint's signature does not match its content: the file was altered "
            "after it was signed"
        )
    return None
