"""``audit retain``: archive the oldest rows with a manifest, cut them, keep the chain whole.

Retention writes rows 1..K (everything older than a time) as JSONL with a manifest, reads
them back, then records the anchor and deletes them in one transaction with an audit row
of its own. ``audit verify`` then starts from the anchor; ``audit verify --archive`` also
checks the archive and that the log continues from it. Only ``policy:admin`` may retain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from mlflow_governance.audit.anchor import audit_anchor
from mlflow_governance.audit.chain import format_time
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.cli import main
from tests.audit.conftest import ROWS

POLICY = """\
version: 1
mode: enforce
roles:
  admin: ["*"]
  auditor: [read, "audit:read"]
bindings:
  - role: admin
    principals: ["user:alice", "user:bob"]
  - role: auditor
    principals: ["user:oscar"]
"""


@pytest.fixture
def enforce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(path))


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def times(sql: sa.Engine) -> dict[int, str]:
    with sql.connect() as conn:
        return {
            int(r.id): format_time(r.time)
            for r in conn.execute(sa.select(audit_log.c.id, audit_log.c.time).order_by("id"))
        }


def retain(registry_uri: str, before: str, archive: str, *extra: str) -> Result:
    return cli("audit", "retain", "--registry-uri", registry_uri, "--before", before,
               "--archive", archive, *extra)  # fmt: skip


def verify(registry_uri: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = cli("audit", "verify", "--registry-uri", registry_uri, "--json", *extra)
    return result.exit_code, json.loads(result.stdout), result.output


def test_retain_archives_cuts_and_verify_starts_from_the_anchor(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path, backend: str
) -> None:
    before = times(sql)[5]  # rows 1..4 are older
    result = retain(registry_uri, before, str(tmp_path / "archive"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["rows"], data["first_id"], data["last_id"]) == (4, 1, 4)
    with sql.connect() as conn:
        remaining = conn.execute(sa.select(audit_log).order_by("id")).all()
        anchors = conn.execute(sa.select(audit_anchor)).all()
    assert [r.id for r in remaining] == [5, 6, ROWS + 1]
    # The cut left row 5 linking to the anchor: the hash of row 4, now archived.
    assert remaining[0].prev_hash == data["last_hash"] == anchors[0].last_hash
    assert (anchors[0].first_id, anchors[0].last_id, anchors[0].rows) == (1, 4, 4)
    assert anchors[0].manifest_sha256 == data["manifest_sha256"]
    assert anchors[0].archived_by == "bob"  # the last actor of the logged fixture
    own = remaining[-1]
    assert (own.action, own.actor, own.decision) == ("audit_retain", "bob", "allow")
    details = json.loads(own.details)
    assert details["manifest_sha256"] == data["manifest_sha256"]
    assert (details["first_id"], details["last_id"], details["rows"]) == (1, 4, 4)

    # The archive: JSONL of rows 1..4 and a manifest that describes it.
    manifest = json.loads(Path(data["manifest"]).read_text(encoding="utf-8"))
    lines = Path(data["jsonl"]).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3, 4]
    assert manifest["last_hash"] == data["last_hash"] and manifest["rows"] == 4
    assert manifest["prev_hash"] == "0" * 64 and manifest["head_id"] == ROWS

    code, report, output = verify(registry_uri)
    assert code == 0 and report["ok"] and report["rows"] == 3, output
    code, report, output = verify(registry_uri, "--archive", data["manifest"])
    assert code == 0 and report["ok"], output
    text = cli("audit", "verify", "--registry-uri", registry_uri, "--archive", data["manifest"])
    assert "4 archived rows in 1 archive(s) intact" in text.output


def test_a_second_cut_continues_the_chain_and_old_checkpoints_still_hold(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "early.json"
    assert cli("audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(checkpoint))
    first = json.loads(retain(registry_uri, times(sql)[3], str(tmp_path / "a"), "--json").stdout)
    second = json.loads(retain(registry_uri, times(sql)[6], str(tmp_path / "a"), "--json").stdout)
    assert (first["first_id"], first["last_id"]) == (1, 2)
    assert (second["first_id"], second["last_id"]) == (3, 5)
    both = ("--archive", first["manifest"], "--archive", second["manifest"])
    code, report, output = verify(registry_uri, "--checkpoint", str(checkpoint), *both)
    assert code == 0 and report["ok"], output
    # The checkpoint's row (6) is still in the table; one inside an archive is checked there.
    mark = json.loads(checkpoint.read_text(encoding="utf-8"))
    with sql.connect() as conn:
        row_4 = conn.execute(sa.select(audit_anchor.c.last_hash)).all()
    assert len(row_4) == 2
    archived = tmp_path / "archived-mark.json"
    lines = Path(second["jsonl"]).read_text(encoding="utf-8").splitlines()
    archived.write_text(
        json.dumps({**mark, "rows": 4, "head_id": 4, "head_hash": json.loads(lines[1])["hash"]}),
        encoding="utf-8",
    )
    code, report, output = verify(registry_uri, "--checkpoint", str(archived), *both)
    assert code == 0 and report["ok"], output
    forged = tmp_path / "forged-mark.json"
    forged.write_text(json.dumps({**mark, "head_id": 4, "head_hash": "a" * 64}), "utf-8")
    code, report, output = verify(registry_uri, "--checkpoint", str(forged), *both)
    assert code == 1 and "row 4 in archive" in report["problem"], output
    # Skipping the first archive: the second does not start the chain.
    code, report, _ = verify(registry_uri, "--archive", second["manifest"], "--archive",
                             first["manifest"])  # fmt: skip
    assert code == 1 and "does not follow" in report["problem"]


def test_an_altered_archive_is_caught(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path
) -> None:
    data = json.loads(retain(registry_uri, times(sql)[5], str(tmp_path), "--json").stdout)
    jsonl = Path(data["jsonl"])
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    rows[1]["actor"] = "mallory"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, report, output = verify(registry_uri, "--archive", data["manifest"])
    assert code == 1 and "the file was changed or replaced" in report["problem"], output
    # Re-recording the sha256 in the manifest does not help: row 2's hash breaks.
    import hashlib

    manifest_path = Path(data["manifest"])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["jsonl_sha256"] = hashlib.sha256(jsonl.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    code, report, output = verify(registry_uri, "--archive", data["manifest"])
    assert code == 1 and "row 2: its content does not match its hash" in report["problem"]


def test_nothing_older_is_a_no_op_that_is_still_audited(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path
) -> None:
    result = retain(registry_uri, "2001-01-01T00:00:00Z", str(tmp_path / "none"))
    assert result.exit_code == 0, result.output
    assert "Nothing to archive" in result.output
    assert not (tmp_path / "none").exists()
    assert list(times(sql)) == list(range(1, ROWS + 2))
    future = retain(registry_uri, "2999-01-01T00:00:00Z", str(tmp_path / "none"))
    assert future.exit_code == 1 and "in the future" in future.output


def test_retain_without_policy_admin_is_refused_and_audited(
    logged: int,
    registry_uri: str,
    sql: sa.Engine,
    enforce: None,
    tmp_path: Path,
    as_user: Callable[[str], None],
) -> None:
    as_user("oscar")  # reads the audit log, may not cut it
    result = CliRunner().invoke(
        main,
        ["audit", "retain", "--registry-uri", registry_uri, "--before", times(sql)[5],
         "--archive", str(tmp_path / "a")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "policy:admin" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "a").exists()
    with sql.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.id, audit_log.c.actor, audit_log.c.decision).where(
                audit_log.c.action == "audit_retain"
            )
        ).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_anchor)).scalar() == 0
    assert [(r.actor, r.decision) for r in rows] == [("oscar", "deny")]
    assert min(times(sql)) == 1


def test_a_broken_chain_is_not_archived(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path
) -> None:
    from tests.tamper import tamper

    tamper(sql, audit_log.update().where(audit_log.c.id == 2).values(actor="eve"))
    result = retain(registry_uri, times(sql)[5], str(tmp_path / "a"))
    assert result.exit_code == 1
    assert "Refusing to archive rows 1..4: the chain is broken" in result.output
    assert min(times(sql)) == 1 and not (tmp_path / "a").exists()


# ---------------------------------------------------------------------- S3


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(
            Bucket="audit-archive",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        )
        yield client


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_retain_to_s3_with_a_manifest_and_verify_from_there(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, s3: Any
) -> None:
    result = retain(registry_uri, times(sql)[5], "s3://audit-archive/registry/prod", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    stem = "registry/prod/governance-audit-000000000001-000000000004"
    assert data["manifest"] == f"s3://audit-archive/{stem}.manifest.json"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="audit-archive")["Contents"])
    assert keys == [f"{stem}.jsonl", f"{stem}.manifest.json"]
    code, report, output = verify(registry_uri, "--archive", data["manifest"])
    assert code == 0 and report["ok"], output
    # Retention never overwrites an archive: the same cut again is refused before any delete.
    s3.delete_object(Bucket="audit-archive", Key=f"{stem}.manifest.json")
    assert min(times(sql)) == 5


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_archive_that_cannot_be_written_deletes_nothing(
    logged: int, registry_uri: str, sql: sa.Engine, enforce: None, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = retain(registry_uri, times(sql)[5], str(blocker / "archive"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Cannot write the archive" in result.output and "nothing was deleted" in result.output
    assert min(times(sql)) == 1
