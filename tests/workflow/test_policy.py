"""``policy apply``, ``show`` and ``explain`` against the database.

An applied policy is versioned (one row per change), audited with its diff, needs
``policy:admin`` once a policy is in force, and reaches every store on the same database
at its next check (``MLFLOW_GOVERNANCE_POLICY_REFRESH=0`` here: at once).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from mlflow_governance.entry import build_store
from tests.workflow import acting, assert_refused, policy_path
from tests.workflow.conftest import Registry


@pytest.fixture
def lab_v2(tmp_path: Path) -> Path:
    """lab.yaml with lin added to the researchers."""
    text = Path(policy_path("lab")).read_text()
    changed = text.replace("researchers: [ana, ben]", "researchers: [ana, ben, lin]")
    assert changed != text
    path = tmp_path / "lab-v2.yaml"
    path.write_text(changed)
    return path


def test_apply_is_versioned_audited_and_needs_policy_admin(
    reg: Registry, lab_v2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY_REFRESH", "0")  # look at every call
    assert reg.cli.json("ana", "policy", "show")["origin"] == "default"
    other = build_store(reg.uri)  # a second process's store on the same database
    other.policies.current()  # it has looked once already: the default

    first = reg.cli.json("ana", "policy", "apply", policy_path("lab"))  # anyone, the first time
    assert (first["id"], first["changed"]) == (1, True)
    assert first["diff"].startswith("--- no policy\n")
    assert other.policies.current().origin == "database:1"

    refused = reg.cli.refused("ana", "policy", "apply", str(lab_v2))
    assert refused.startswith("Refused: ana may not policy:admin on the policy: ")
    assert "(rule: default-deny). Ask for role sre on every model" in refused
    (denied,) = reg.audit(action="policy_apply", decision="deny")
    assert denied["actor"] == "ana"

    with acting("lin"), pytest.raises(MlflowException) as before:
        other.create_registered_model("exp-9")
    assert_refused(
        before.value,
        actor="lin",
        action="register",
        rule="default-deny",
        allow="Ask for role researcher",
    )

    second = reg.cli.json("sre", "policy", "apply", str(lab_v2))
    assert (second["id"], second["changed"]) == (2, True)
    assert "-  researchers: [ana, ben]\n+  researchers: [ana, ben, lin]\n" in second["diff"]
    rows = reg.audit(action="policy_apply", decision="allow")
    assert [(r["actor"], r["details"]["policy_id"]) for r in rows] == [("ana", 1), ("sre", 2)]
    assert rows[1]["details"]["diff"] == second["diff"]
    assert rows[1]["details"]["sha256"] == second["sha256"]

    # The other store follows at its next look: lin may register now.
    assert other.policies.current().origin == "database:2"
    with acting("lin"):
        assert other.create_registered_model("exp-9").name == "exp-9"

    again = reg.cli("sre", "policy", "apply", str(lab_v2))
    assert again.exit_code == 0 and "Policy unchanged (already applied as #2)." in again.stdout
    shown = reg.cli.json("ana", "policy", "show")
    assert shown["origin"] == "database:2"
    assert shown["policy"]["groups"]["researchers"] == ["ana", "ben", "lin"]
    other.engine.dispose()


def test_a_policy_file_in_the_environment_wins(reg: Registry) -> None:
    reg.cli.json("ana", "policy", "apply", policy_path("lab"))
    reg.use_policy("team")
    assert reg.cli.json("ana", "policy", "show")["origin"].startswith("file:")
    result = reg.cli("admin", "policy", "apply", policy_path("open"))
    assert result.exit_code == 0
    assert "this process enforces the file" in result.stderr
    assert "(MLFLOW_GOVERNANCE_POLICY) instead of the applied policy" in result.stderr


def test_explain(reg: Registry) -> None:
    reg.use_policy("team")
    carol = reg.cli.json("oscar", "policy", "explain", "--user", "carol", "--model", "fraud")
    assert (carol["user"], carol["model"], carol["mode"]) == ("carol", "fraud", "enforce")
    granted = {p["permission"]: p["rule"] for p in carol["permissions"]}
    assert granted == {
        "read": "bindings[1] (role promoter)",
        "request": "bindings[1] (role promoter)",
        "transition:Staging": "bindings[1] (role promoter)",
        "alias:challenger": "bindings[1] (role promoter)",
    }
    (gate,) = carol["gates"]
    assert (gate["gate"], gate["may_approve"], gate["may_break_glass"]) == (
        "production",
        False,
        False,
    )
    dave = reg.cli.json("oscar", "policy", "explain", "--user", "dave", "--model", "fraud")
    assert dave["gates"][0]["may_approve"] is True
    admin = reg.cli.json("oscar", "policy", "explain", "--user", "admin", "--model", "fraud")
    assert admin["gates"][0]["may_break_glass"] is True
    assert {p["permission"] for p in admin["permissions"]} == {"*"}
    text = reg.cli("oscar", "policy", "explain", "--user", "carol", "--model", "fraud")
    assert text.exit_code == 0
    assert "carol on model fraud (mode enforce, policy file:" in text.stdout
    assert "transition:Staging  bindings[1] (role promoter)" in text.stdout


def test_two_processes_two_policies_get_true_advice(reg: Registry) -> None:
    """The new user's trap: one process enforces a file, another runs without it.

    The request opened under the file's gate cannot be voted on where no such gate is in
    force; the refusal says which policy is in force here and both real ways out, and
    ``policy show`` says where each side's policy comes from.
    """
    version = reg.seed("fraud", tags={"validation_status": "passed"}, stages=["Staging"])
    reg.use_policy("team")
    opened = reg.cli.json("carol", "request", "fraud", str(version), "--to", "Production")
    assert reg.cli.json("carol", "policy", "show")["source"]["kind"] == "file"

    reg.monkeypatch.delenv("MLFLOW_GOVERNANCE_POLICY")  # the other shell: no policy at all
    shown = reg.cli.json("dave", "policy", "show")
    assert shown["source"] == {"kind": "default", "path": None, "sha256": None, "version": None}
    refused = reg.cli("dave", "approve", str(opened["id"]))
    assert refused.exit_code == 1
    message = refused.stderr
    assert "names gate 'production', which the policy in force here, the built-in" in message
    assert "act through that server (--tracking-uri)" in message
    assert "cancel it and request again" not in message

    # Once a policy is applied and this process's file differs, every command says so once.
    reg.cli.json("admin", "policy", "apply", policy_path("open"))
    reg.use_policy("team")
    listed = reg.cli("dave", "requests")
    assert listed.stderr.count("Warning: MLFLOW_GOVERNANCE_POLICY=") == 1
    assert "newest applied policy is #1" in listed.stderr


def test_a_vote_on_a_closed_request_says_what_to_do(reg: Registry) -> None:
    version = reg.seed("fraud", tags={"validation_status": "passed"}, stages=["Staging"])
    reg.use_policy("team")
    opened = reg.cli.json("carol", "request", "fraud", str(version), "--to", "Production")
    reg.cli.json("carol", "cancel", str(opened["id"]))
    late = reg.cli("dave", "approve", str(opened["id"]))
    assert late.exit_code == 1
    assert "request #1 is cancelled; only open requests can change" in late.stderr
    assert "open a new request (mlflow-governance request NAME VERSION" in late.stderr
