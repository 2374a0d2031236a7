"""Signed checkpoints catch a DBA who rewrites history and re-chains every hash.

The hash chain alone cannot: whoever can write the table can recompute every hash after
an edit, and the head row with them. A checkpoint kept outside the database, signed with
an Ed25519 key the DBA does not hold, still names the old head hash; and a checkpoint file
the DBA edits to match fails its signature.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from mlflow_governance.audit.chain import row_hash
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.cli import main
from tests.audit.conftest import ROWS
from tests.audit.test_retention import s3  # noqa: F401  (the moto S3 fixture)
from tests.tamper import triggers_off


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """An Ed25519 key pair in PEM files, as openssl writes them."""
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "checkpoint-key.pem"
    public = tmp_path / "checkpoint-key.pub"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def rewrite_history(engine: sa.Engine, row_id: int, **values: Any) -> None:
    """What a DBA who knows the chain does: edit a row, re-chain every later hash and the
    head, so the log verifies on its own again."""
    with engine.begin() as conn, triggers_off(conn):
        rows = [dict(r._mapping) for r in conn.execute(sa.select(audit_log).order_by("id"))]
        prev = rows[row_id - 2]["hash"] if row_id > 1 else "0" * 64
        for row in rows[row_id - 1 :]:
            if row["id"] == row_id:
                row.update(values)
            row["prev_hash"] = prev
            row["hash"] = prev = row_hash(row)
            conn.execute(
                audit_log.update()
                .where(audit_log.c.id == row["id"])
                .values(**{k: row[k] for k in (*values, "prev_hash", "hash")})
            )
        conn.execute(audit_head.update().where(audit_head.c.id == HEAD_ROW_ID).values(hash=prev))


def verify(registry_uri: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = cli("audit", "verify", "--registry-uri", registry_uri, "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def checked(registry_uri: str, checkpoint: Path, key: Path) -> tuple[int, dict[str, Any]]:
    return verify(registry_uri, "--checkpoint", str(checkpoint), "--verify-key", str(key))


def test_a_rechained_rewrite_passes_verify_alone_but_not_the_signed_checkpoint(
    logged: int, registry_uri: str, sql: sa.Engine, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoint = tmp_path / "head.json"
    result = cli("audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(checkpoint),
                 "--sign-key", str(private))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "signed by key" in result.output
    signed = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert signed["signature"]["algorithm"] == "ed25519" and signed["head_id"] == ROWS
    code, report = verify(
        registry_uri, "--checkpoint", str(checkpoint), "--verify-key", str(public)
    )
    assert code == 0 and report["ok"]

    rewrite_history(sql, 2, actor="mallory")
    code, report = verify(registry_uri)
    assert code == 0 and report["ok"]  # the chain alone cannot tell
    code, report = verify(
        registry_uri, "--checkpoint", str(checkpoint), "--verify-key", str(public)
    )
    assert code == 1
    assert f"row {ROWS}: its hash differs from the checkpoint" in report["problem"]

    # The DBA edits the checkpoint file to the new head: its signature no longer holds.
    with sql.connect() as conn:
        new_head = conn.execute(sa.select(audit_head.c.hash)).scalar()
    checkpoint.write_text(json.dumps({**signed, "head_hash": new_head}), encoding="utf-8")
    code, report = verify(
        registry_uri, "--checkpoint", str(checkpoint), "--verify-key", str(public)
    )
    assert code == 1
    assert "signature does not match its content" in report["problem"]


def test_a_tampered_or_foreign_or_unsigned_checkpoint_fails_the_signature_check(
    logged: int, registry_uri: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoint = tmp_path / "head.json"
    # The key may come from the environment, as a CronJob mounts it.
    result = cli("audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(checkpoint),
                 env={"MLFLOW_GOVERNANCE_CHECKPOINT_KEY": str(private)})  # fmt: skip
    assert result.exit_code == 0, result.output
    signed = json.loads(checkpoint.read_text(encoding="utf-8"))

    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**signed, "rows": signed["rows"] - 1}), encoding="utf-8")
    result = cli("audit", "verify", "--registry-uri", registry_uri, "--checkpoint",
                 str(tampered), "--verify-key", str(public))  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith(f"BROKEN: {tampered}: the checkpoint's signature")

    other = Ed25519PrivateKey.generate().public_key()
    foreign = tmp_path / "other.pub"
    foreign.write_bytes(other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    code, report = verify(
        registry_uri, "--checkpoint", str(checkpoint), "--verify-key", str(foreign)
    )
    assert code == 1 and "not by the verification key given" in report["problem"]

    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(
        json.dumps({k: v for k, v in signed.items() if k != "signature"}), encoding="utf-8"
    )
    code, report = checked(registry_uri, unsigned, public)
    assert code == 1 and "not signed" in report["problem"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_openssl_keys_work_and_a_directory_gets_timestamped_checkpoints(
    logged: int, registry_uri: str, tmp_path: Path
) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    try:
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
        )
        subprocess.run(
            ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    result = cli("audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(folder),
                 "--sign-key", str(private))  # fmt: skip
    assert result.exit_code == 0, result.output
    (written,) = folder.iterdir()
    assert written.name.startswith("checkpoint-") and written.name.endswith("Z.json")
    code, report = checked(registry_uri, written, public)
    assert code == 0 and report["ok"]


@pytest.mark.usefixtures("s3")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_checkpoints_go_to_s3_under_a_timestamped_key(
    logged: int, registry_uri: str, keys: tuple[Path, Path]
) -> None:
    import boto3

    client = boto3.client("s3")
    private, _ = keys
    result = cli("audit", "checkpoint", "--registry-uri", registry_uri, "--to",
                 "s3://audit-archive/checkpoints/prod", "--sign-key", str(private))  # fmt: skip
    assert result.exit_code == 0, result.output
    (key,) = [o["Key"] for o in client.list_objects_v2(Bucket="audit-archive")["Contents"]]
    assert key.startswith("checkpoints/prod/checkpoint-") and key.endswith("Z.json")
    body = json.loads(client.get_object(Bucket="audit-archive", Key=key)["Body"].read())
    assert body["head_id"] == ROWS and "signature" in body
