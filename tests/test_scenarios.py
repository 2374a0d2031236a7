"""The scenario matrix: every permission and every gate rule, allowed once and refused once.

Each test plays one rule of ``tests/workflow/policies/scenarios.yaml`` on a fresh copy of
a seeded SQLite registry, in local mode (``MLFLOW_TRACKING_USERNAME`` names the actor):

- ``via="client"``: registry calls through the stock ``MlflowClient`` (registry URI
  ``governed+sqlite:...``), workflow actions (request, approve, rollback...) through
  ``GovernanceClient``, the Python API of the approval workflow;
- ``via="cli"``: the same story through ``mlflow-governance`` (click's runner on
  ``mlflow_governance.cli.main``). Registry writes with no command of their own
  (register, edit, delete, tags) exist only in the client column.

Refusals are ``PERMISSION_DENIED`` naming who, what, the rule and what would allow it
(the command line prints the same message and exits 1).

The seeded registry (who created what, where it stands):

=============== == ======= ========================= =============================
model           v  creator  stage / aliases          notes
=============== == ======= ========================= =============================
fraud-detector  1  alice    Production, @champion     validation_status=passed
fraud-detector  2  alice    Staging                   validation_status=passed
fraud-detector  3  alice    Staging                   no tags
fraud-detector  4  alice    None
fraud-detector  5  fay      Staging                   validation_status=passed
fraud-detector  6  alice    None                      good run, signed model
fraud-detector  7  alice    None                      bad run (accuracy 0.8), signed
fraud-detector  8  alice    None                      good run, unsigned model
fraud-rollback  1  alice    Archived (was Production, @champion, @canary-a)
fraud-rollback  2  alice    Production, @champion, @canary-a
public-data, ops-tools, secret-model: version 1 each (created by root).
=============== == ======= ========================= =============================
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.query import AuditFilter, list_rows
from mlflow_governance.client import GovernanceClient
from mlflow_governance.entry import build_store
from mlflow_governance.workflow.promotion import Workflow
from tests.workflow import (
    Cli,
    Tracking,
    add_version,
    alias_of,
    assert_refusal_text,
    backdate,
    policy_path,
    request_id_in,
    seed_registry,
    session_root,
    stages_of,
    tracking_assets,
)

FRAUD = "fraud-detector"
BACK = "fraud-rollback"
VIAS = pytest.mark.parametrize("via", ["client", "cli"])


# ---------------------------------------------------------------------- the registry


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Tracking:
    return tracking_assets(session_root(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def seeded(
    _sqlite_template: Path, tracking: Tracking, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    def plan(store: Any) -> None:
        passed = {"validation_status": "passed"}
        versions = [
            add_version(
                store,
                FRAUD,
                tags=passed,
                stages=["Staging", "Production"],
                aliases=["champion"],
            ),
            add_version(store, FRAUD, tags=passed, stages=["Staging"]),
            add_version(store, FRAUD, stages=["Staging"]),
            add_version(store, FRAUD),
            add_version(store, FRAUD, creator="fay", tags=passed, stages=["Staging"]),
            add_version(store, FRAUD, source=tracking.signed_model, run_id=tracking.good_run),
            add_version(store, FRAUD, source=tracking.signed_model, run_id=tracking.bad_run),
            add_version(store, FRAUD, source=tracking.unsigned_model, run_id=tracking.good_run),
        ]
        assert versions == [1, 2, 3, 4, 5, 6, 7, 8]
        for _ in range(2):
            add_version(
                store,
                BACK,
                tags=passed,
                source=tracking.signed_model,
                run_id=tracking.good_run,
                stages=["Staging", "Production"],
                aliases=["champion", "canary-a"],
            )
        for model in ("public-data", "ops-tools", "secret-model"):
            add_version(store, model, creator="root")

    folder = tmp_path_factory.mktemp("scenarios")
    return seed_registry(_sqlite_template, folder / "seeded.db", plan, tracking.uri)


# ---------------------------------------------------------------------- one scenario


@dataclass
class Outcome:
    """What one action came to, through either interface.

    Attributes:
        ok: It did what was asked.
        code: ``OK``, an MLflow error code (``PERMISSION_DENIED``...), or ``PENDING``
            (``promote`` left a request waiting: exit status 3).
        message: The refusal or error message (without the CLI's ``Error: ``).
        data: The result (a request, a rollback, a check...), when there is one.
    """

    ok: bool
    code: str = "OK"
    message: str = ""
    data: Any = None

    def refused(self, *, actor: str, action: str, rule: str, allow: str) -> str:
        assert not self.ok and self.code == "PERMISSION_DENIED", self
        return assert_refusal_text(self.message, actor=actor, action=action, rule=rule, allow=allow)


@dataclass
class Scenario:
    """A fresh registry under the scenario policy, driven through the stock client or CLI."""

    uri: str
    monkeypatch: pytest.MonkeyPatch
    mlflow: MlflowClient
    gov: GovernanceClient
    cli: Cli
    store: Any

    def as_user(self, user: str) -> None:
        self.monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)

    def client(self, user: str, call: Callable[[], Any]) -> Outcome:
        """Run a client call as ``user``; an MlflowException becomes a failed outcome."""
        self.as_user(user)
        try:
            return Outcome(True, data=call())
        except MlflowException as exc:
            return Outcome(False, exc.error_code, exc.message)

    def command(self, user: str, *args: str) -> Outcome:
        """Run a CLI command with ``--json`` as ``user``."""
        result = self.cli(user, *args, "--json")
        if result.exit_code == 0:
            return Outcome(True, data=json.loads(result.stdout))
        if result.exit_code == 3:  # promote or rollback: not applied, a request is waiting
            data = json.loads(result.stdout)
            if data.get("status") == "requested":  # a rollback asked for, as it should be
                return Outcome(True, data=data)
            return Outcome(False, "PENDING", data["request"].get("needs") or "", data)
        text = result.stderr.strip()
        message = text[len("Error: ") :] if text.startswith("Error: ") else text
        code = (
            "PERMISSION_DENIED" if message.startswith("Refused: ") else f"EXIT {result.exit_code}"
        )
        return Outcome(False, code, message)

    # -------------------------------------------------------------- actions, both ways

    def move(self, user: str, model: str, version: int, to: str, via: str) -> Outcome:
        """A stage or alias move: the stock client's call, or ``promote``."""
        if via == "cli":
            return self.command(user, "promote", model, str(version), "--to", to)
        if to.startswith("@"):
            return self.client(
                user, lambda: self.mlflow.set_registered_model_alias(model, to[1:], version)
            )
        return self.client(
            user, lambda: self.mlflow.transition_model_version_stage(model, version, to)
        )

    def request(self, user: str, model: str, version: int, to: str, via: str) -> Outcome:
        if via == "cli":
            return self.command(user, "request", model, str(version), "--to", to)
        return self.client(user, lambda: self.gov.request(model, version, to))

    def vote(self, verb: str, user: str, request_id: int, via: str) -> Outcome:
        """``approve``, ``reject`` or ``cancel``."""
        if via == "cli":
            return self.command(user, verb, str(request_id))
        return self.client(user, lambda: getattr(self.gov, verb)(request_id))

    def approve(self, user: str, request_id: int, via: str) -> Outcome:
        return self.vote("approve", user, request_id, via)

    def rollback(
        self, user: str, model: str, via: str, *, stage: str | None = None, alias: str | None = None
    ) -> Outcome:
        if via == "cli":
            flag = ["--stage", stage] if stage else ["--alias", str(alias)]
            return self.command(user, "rollback", model, *flag)
        return self.client(user, lambda: self.gov.rollback(model, stage=stage, alias=alias))

    def opened(self, user: str, model: str, version: int, to: str, via: str) -> int:
        """Open a request that must succeed; its id."""
        out = self.request(user, model, version, to, via)
        assert out.ok, out
        assert out.data["state"] == "pending" and out.data["requester"] == user
        return int(out.data["id"])

    # -------------------------------------------------------------- reading the state

    def stages(self, model: str = FRAUD) -> dict[int, str]:
        return stages_of(self.store, model)

    def alias(self, alias: str, model: str = FRAUD) -> int | None:
        return alias_of(self.store, model, alias)

    def req(self, request_id: int) -> dict[str, Any]:
        """A request as stored (no read checks)."""
        return Workflow(self.store).get(request_id).to_dict()

    def open_requests(self, model: str = FRAUD) -> list[dict[str, Any]]:
        views = Workflow(self.store).list(model=model)
        return [v.to_dict() for v in views if v.state in ("pending", "approved")]

    def audit(self, **kwargs: Any) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return list_rows(conn, AuditFilter(**kwargs))


@pytest.fixture
def s(
    seeded: Path, tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scenario]:
    path = tmp_path / "registry.db"
    shutil.copy(seeded, path)
    uri = f"governed+sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", policy_path("scenarios"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    store = build_store(uri)
    yield Scenario(
        uri=uri,
        monkeypatch=monkeypatch,
        mlflow=MlflowClient(tracking_uri=tracking.uri, registry_uri=uri),
        gov=GovernanceClient(uri),
        cli=Cli(uri),
        store=store,
    )
    store.engine.dispose()


# ====================================================================== permissions


@VIAS
def test_read(s: Scenario, via: str) -> None:
    if via == "client":
        allowed = s.client("zed", lambda: s.mlflow.get_model_version("public-data", 1))
        assert allowed.ok and int(allowed.data.version) == 1
        refused = s.client("zed", lambda: s.mlflow.get_registered_model(FRAUD))
    else:
        # check reads the version's tags and metrics: read on the model is needed.
        allowed = s.command("zed", "check", "public-data", "1", "--gate", "production")
        assert allowed.code == "EXIT 1"  # it ran: the version fails the gate's checks (1)
        refused = s.command("zed", "check", FRAUD, "1", "--gate", "production")  # exit 2
    refused.refused(actor="zed", action="read", rule="default-deny", allow="Ask for role reader")
    assert "bindings[11] grants it only on models public-*" in refused.message


def test_register(s: Scenario) -> None:
    allowed = s.client("alice", lambda: s.mlflow.create_model_version(FRAUD, "file:///m/9"))
    assert allowed.ok and int(allowed.data.version) == 9 and allowed.data.user_id == "alice"
    refused = s.client("carol", lambda: s.mlflow.create_model_version(FRAUD, "file:///m/10"))
    refused.refused(
        actor="carol", action="register", rule="default-deny", allow="Ask for role builder"
    )
    assert sorted(s.stages()) == list(range(1, 10))


def test_edit(s: Scenario) -> None:
    assert s.client("alice", lambda: s.mlflow.update_model_version(FRAUD, 2, "better")).ok
    refused = s.client("carol", lambda: s.mlflow.set_model_version_tag(FRAUD, 2, "k", "v"))
    refused.refused(actor="carol", action="edit", rule="default-deny", allow="Ask for role builder")
    assert "k" not in s.store.raw_version(FRAUD, 2).tags


def test_delete(s: Scenario) -> None:
    refused = s.client("alice", lambda: s.mlflow.delete_model_version(FRAUD, 4))
    refused.refused(
        actor="alice", action="delete", rule="default-deny", allow="Ask for role cleaner"
    )
    assert s.client("bob", lambda: s.mlflow.delete_model_version(FRAUD, 4)).ok
    assert 4 not in s.stages()


@VIAS
def test_request(s: Scenario, via: str) -> None:
    allowed = s.request("alice", FRAUD, 2, "Production", via)
    assert allowed.ok and allowed.data["state"] == "pending"
    refused = s.request("vic", FRAUD, 3, "Production", via)
    refused.refused(
        actor="vic", action="request promotion", rule="default-deny", allow="Ask for role builder"
    )
    if via == "client":
        # A stock move held by a gate: with 'request' it opens (then reuses) the request...
        def champion_5() -> Any:
            return s.mlflow.set_registered_model_alias(FRAUD, "champion", 5)

        first, again = s.client("carol", champion_5), s.client("carol", champion_5)
        assert request_id_in(first.message) == request_id_in(again.message)
        # ...without it nothing is opened, and the refusal names both ways out.
        vic = s.client(
            "vic", lambda: s.mlflow.transition_model_version_stage(FRAUD, 3, "Production")
        )
        vic.refused(
            actor="vic",
            action="transition:Production",
            rule="default-deny",
            allow="To ask for the move instead: ask for role builder",
        )
    opened = {(r["version"], r["target"], r["requester"]) for r in s.open_requests()}
    assert opened == {(2, "Production", "alice")} | (
        {(5, "@champion", "carol")} if via == "client" else set()
    )


@VIAS
def test_transition(s: Scenario, via: str) -> None:
    assert s.move("carol", FRAUD, 4, "Staging", via).ok
    refused = s.move("alice", FRAUD, 6, "Staging", via)
    refused.refused(
        actor="alice", action="transition:Staging", rule="default-deny", allow="Ask for role stager"
    )
    assert (s.stages()[4], s.stages()[6]) == ("Staging", "None")


@VIAS
def test_alias(s: Scenario, via: str) -> None:
    assert s.move("carol", FRAUD, 2, "@shadow-1", via).ok
    refused = s.move("carol", FRAUD, 2, "@blue", via)
    refused.refused(
        actor="carol", action="alias:blue", rule="default-deny", allow="Ask for role admin"
    )
    assert (s.alias("shadow-1"), s.alias("blue")) == (2, None)


@VIAS
def test_approve(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 6, "@canary-b", via)
    refused = s.approve("dave", rid, via)  # dave approves production, not canary
    refused.refused(
        actor="dave",
        action="approve request",
        rule="default-deny",
        allow="Ask for roles admin or canary-approver",
    )
    allowed = s.approve("cal", rid, via)
    assert allowed.ok and allowed.data["state"] == "approved"
    assert [a["approver"] for a in allowed.data["approvals"]] == ["cal"]


@VIAS
@pytest.mark.parametrize("who", ["rita", "alice"])
def test_audit_read(s: Scenario, via: str, who: str) -> None:
    if via == "client":
        out = s.client(who, lambda: s.gov.history(FRAUD))
    else:
        out = s.command(who, "audit", "list", "--model", FRAUD)
    if who == "rita":
        assert out.ok and out.data
        return
    out.refused(
        actor="alice", action="audit:read", rule="default-deny", allow="Ask for role auditor"
    )


@VIAS
def test_policy_admin(s: Scenario, via: str, tmp_path: Path) -> None:
    changed = tmp_path / "changed.yaml"
    changed.write_text(Path(policy_path("scenarios")).read_text() + "# reviewed\n")
    if via == "client":

        def apply(user: str) -> Outcome:
            return s.client(user, lambda: s.gov.apply_policy(changed))
    else:

        def apply(user: str) -> Outcome:
            return s.command(user, "policy", "apply", str(changed))

    apply("alice").refused(
        actor="alice", action="policy:admin", rule="default-deny", allow="Ask for role policy-admin"
    )
    allowed = apply("pat")
    assert allowed.ok and allowed.data["changed"] and "+# reviewed" in allowed.data["diff"]


@VIAS
def test_star_is_bounded_by_models(s: Scenario, via: str) -> None:
    # ops holds role admin ('*') on ops-* only; root holds it everywhere.
    if via == "client":
        assert s.client("ops", lambda: s.mlflow.delete_model_version("ops-tools", 1)).ok
        assert s.client("root", lambda: s.mlflow.delete_model_version("secret-model", 1)).ok
        refused = s.client("ops", lambda: s.mlflow.delete_model_version(FRAUD, 4))
        action, allow = "delete", "Ask for role cleaner"
    else:
        assert s.move("ops", "ops-tools", 1, "Staging", via).ok
        assert s.move("root", "secret-model", 1, "@blue", via).ok
        refused = s.move("ops", FRAUD, 4, "Staging", via)
        action, allow = "transition:Staging", "Ask for role stager"
    refused.refused(actor="ops", action=action, rule="default-deny", allow=allow)
    assert "bindings[10] grants it only on models ops-*" in refused.message


# ====================================================================== gate rules


@VIAS
def test_targets_stages(s: Scenario, via: str) -> None:
    assert s.move("carol", FRAUD, 4, "Staging", via).ok  # Staging: no gate, moved at once
    held = s.move("carol", FRAUD, 2, "Production", via)  # Production: the gate holds it
    _held_with_request(s, held, via, "carol", "transition:Production", 2, "Production")
    assert s.stages()[2] == "Staging"
    # Leaving a gated stage needs the right to enter it: carol may archive, not this one.
    out = s.move("carol", FRAUD, 1, "Archived", via)
    out.refused(
        actor="carol",
        action="transition:Archived",
        rule="default-deny",
        allow="Ask for role shipper",
    )
    assert "version 1 stands in gated stage Production; moving it out needs" in out.message
    assert s.stages()[1] == "Production"


@VIAS
def test_targets_aliases(s: Scenario, via: str) -> None:
    assert s.move("carol", FRAUD, 2, "@shadow-2", via).ok
    held = s.move("carol", FRAUD, 2, "@champion", via)
    _held_with_request(s, held, via, "carol", "alias:champion", 2, "@champion")
    assert (s.alias("shadow-2"), s.alias("champion")) == (2, 1)


def _held_with_request(
    s: Scenario, held: Outcome, via: str, actor: str, action: str, version: int, target: str
) -> int:
    """A move the gate held: a request was opened and is named."""
    if via == "cli":
        assert held.code == "PENDING", held
        request = held.data["request"]
        rid = int(request["id"])
        assert (request["state"], request["target"]) == ("pending", target)
    else:
        held.refused(actor=actor, action=action, rule="gates.production", allow="is open")
        rid = request_id_in(held.message)
    assert "needs 2 approvals from role reviewer, 0 so far" in held.message
    req = s.req(rid)
    assert (req["version"], req["target"], req["requester"]) == (version, target, actor)
    return rid


@VIAS
def test_from_stages(s: Scenario, via: str) -> None:
    ok = s.opened("alice", FRAUD, 2, "Production", via)
    s.approve("dave", ok, via)
    assert s.approve("erin", ok, via).data["state"] == "applied"
    assert s.stages()[2] == "Production"
    # Version 4 stands in None: approvals alone do not move it.
    held = s.opened("alice", FRAUD, 4, "Production", via)
    s.approve("dave", held, via)
    last = s.approve("erin", held, via)
    assert last.ok and last.data["state"] == "approved"
    assert "check from_stages fails (expected stage Staging, got None)" in last.data["apply_error"]
    refused = s.move("alice", FRAUD, 4, "Production", via)
    refused.refused(
        actor="alice",
        action="transition:Production",
        rule="gates.production",
        allow=f"Request #{held} is approved but cannot apply yet",
    )
    assert "check from_stages fails" in refused.message
    assert s.stages()[4] == "None"


@VIAS
def test_approvals_required(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 2, "Production", via)
    assert s.approve("dave", rid, via).data["state"] == "pending"
    held = s.move("alice", FRAUD, 2, "Production", via)
    if via == "client":
        held.refused(
            actor="alice",
            action="transition:Production",
            rule="gates.production",
            allow=f"Request #{rid} is open",
        )
    else:
        assert held.code == "PENDING" and held.data["request"]["id"] == rid
    assert "needs 2 approvals from role reviewer, 1 so far" in held.message
    assert s.stages()[2] == "Staging"
    assert s.approve("erin", rid, via).data["state"] == "applied"
    assert s.stages()[2] == "Production"


@VIAS
def test_approver_roles(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 2, "Production", via)
    # vic's role grants approve:production, but the gate names only role reviewer.
    refused = s.approve("vic", rid, via)
    refused.refused(
        actor="vic", action="approve request", rule="default-deny", allow="Ask for role reviewer"
    )
    assert "holds none of role reviewer" in refused.message
    allowed = s.approve("dave", rid, via)
    assert allowed.ok and [a["approver"] for a in allowed.data["approvals"]] == ["dave"]


@VIAS
def test_distinct_from_requester(s: Scenario, via: str) -> None:
    rid = s.opened("fay", FRAUD, 2, "Production", via)  # fay builds and reviews
    refused = s.approve("fay", rid, via)
    refused.refused(
        actor="fay",
        action="approve request",
        rule="gates.production.approvals",
        allow="Another approver has to approve this request",
    )
    assert "is the requester; the gate requires a different approver" in refused.message
    assert s.approve("dave", rid, via).data["approvals"][0]["approver"] == "dave"


@VIAS
def test_distinct_from_version_creator(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 5, "Production", via)  # fay created version 5
    refused = s.approve("fay", rid, via)
    refused.refused(
        actor="fay",
        action="approve request",
        rule="gates.production.approvals",
        allow="Another approver has to approve this request",
    )
    assert "created the version; the gate requires a different approver" in refused.message
    assert s.approve("dave", rid, via).ok


@VIAS
def test_expire_after(s: Scenario, via: str) -> None:
    old = s.opened("alice", FRAUD, 2, "Production", via)
    s.approve("dave", old, via)
    assert backdate(s.store, "approvals", "time", timedelta(days=2), request_id=old) == 1
    after = s.approve("erin", old, via)  # dave's approval is two days old: 1d is the limit
    assert after.data["state"] == "pending"
    held = s.move("alice", FRAUD, 2, "Production", via)
    assert "needs 2 approvals from role reviewer, 1 so far" in held.message
    # "given 2d ago" (or 2d1s on a slow machine): the approval is two days old.
    assert re.search(
        r"dave's approval does not count \(expired: given 2d(\d+s)? ago, approvals expire "
        r"after 1d\)",
        held.message,
    ), held.message
    if via == "client":
        held.refused(
            actor="alice",
            action="transition:Production",
            rule="gates.production",
            allow=f"Request #{old} is open",
        )
    assert s.stages()[2] == "Staging"
    assert s.approve("fay", old, via).data["state"] == "applied"  # fresh: erin and fay
    assert s.stages()[2] == "Production"


@VIAS
def test_checks_metrics(s: Scenario, via: str) -> None:
    good = s.opened("alice", FRAUD, 6, "@canary-b", via)  # accuracy 0.97
    bad = s.opened("alice", FRAUD, 7, "@canary-c", via)  # accuracy 0.8
    for rid in (good, bad):
        assert s.approve("cal", rid, via).data["state"] == "approved"
    assert s.move("alice", FRAUD, 6, "@canary-b", via).ok
    refused = s.move("alice", FRAUD, 7, "@canary-c", via)
    refused.refused(
        actor="alice",
        action="alias:canary-c",
        rule="gates.canary",
        allow=f"Request #{bad} is approved but cannot apply yet",
    )
    assert "check metric accuracy fails (expected >= 0.9, got 0.8)" in refused.message
    assert (s.alias("canary-b"), s.alias("canary-c")) == (6, None)


@VIAS
def test_checks_tags(s: Scenario, via: str) -> None:
    good = s.opened("alice", FRAUD, 2, "Production", via)
    bad = s.opened("alice", FRAUD, 3, "@champion", via)  # version 3 has no validation_status
    for rid in (good, bad):
        s.approve("dave", rid, via)
        s.approve("erin", rid, via)
    assert s.req(good)["state"] == "applied" and s.stages()[2] == "Production"
    refused = s.move("alice", FRAUD, 3, "@champion", via)
    refused.refused(
        actor="alice",
        action="alias:champion",
        rule="gates.production",
        allow=f"Request #{bad} is approved but cannot apply yet",
    )
    assert "check tag validation_status fails (expected passed, got missing)" in refused.message
    assert s.alias("champion") == 1


@VIAS
def test_checks_signature(s: Scenario, via: str) -> None:
    signed = s.opened("alice", FRAUD, 6, "@canary-b", via)
    unsigned = s.opened("alice", FRAUD, 8, "@canary-c", via)
    for rid in (signed, unsigned):
        s.approve("cal", rid, via)
    assert s.move("alice", FRAUD, 6, "@canary-b", via).ok
    refused = s.move("alice", FRAUD, 8, "@canary-c", via)
    refused.refused(
        actor="alice",
        action="alias:canary-c",
        rule="gates.canary",
        allow=f"Request #{unsigned} is approved but cannot apply yet",
    )
    assert "check signature fails (expected present, got missing)" in refused.message
    assert "metric accuracy" not in refused.message  # the good run: only the signature fails


@VIAS
def test_apply_automatic(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 3, "Production", via)
    s.approve("dave", rid, via)
    held = s.approve("erin", rid, via)  # the last approval, but the tag check fails
    assert held.data["state"] == "approved" and "validation_status" in held.data["apply_error"]
    assert s.stages()[3] == "Staging"
    s.client(
        "alice", lambda: s.mlflow.set_model_version_tag(FRAUD, 3, "validation_status", "passed")
    )
    # Approved once: the requester's next move applies it (no more approvals needed).
    assert s.move("alice", FRAUD, 3, "Production", via).ok
    applied = s.req(rid)
    assert (applied["state"], applied["applied_by"]) == ("applied", "alice")
    # The plain case: the second approval applies the move by itself.
    auto = s.opened("alice", FRAUD, 2, "@champion", via)
    s.approve("dave", auto, via)
    done = s.approve("erin", auto, via)
    assert (done.data["state"], done.data["applied_by"]) == ("applied", "erin")
    assert s.alias("champion") == 2


@VIAS
def test_apply_manual(s: Scenario, via: str) -> None:
    rid = s.opened("alice", FRAUD, 6, "@canary-b", via)
    approved = s.approve("cal", rid, via)
    assert approved.data["state"] == "approved" and s.alias("canary-b") is None  # not applied
    refused = s.move("bob", FRAUD, 6, "@canary-b", via)  # neither requester nor alias:canary-*
    refused.refused(
        actor="bob", action="alias:canary-b", rule="default-deny", allow="Ask for role shipper"
    )
    assert f"request #{rid} is approved but bob" in refused.message
    assert s.move("alice", FRAUD, 6, "@canary-b", via).ok  # the requester promotes
    assert s.alias("canary-b") == 6 and s.req(rid)["state"] == "applied"
    # Someone holding the permission may apply it too (sam: alias:canary-*).
    other = s.opened("alice", FRAUD, 6, "@canary-z", via)
    s.approve("cal", other, via)
    assert s.move("sam", FRAUD, 6, "@canary-z", via).ok
    assert s.req(other)["applied_by"] == "sam"


@VIAS
def test_rollback_approvals(s: Scenario, via: str) -> None:
    # production: rollback_approvals 0 -> restored at once (from Archived: from_stages
    # does not apply to a version that held the stage before).
    done = s.rollback("carol", BACK, via, stage="Production")
    assert done.ok and (done.data["status"], done.data["version"]) == ("applied", 1)
    assert s.stages(BACK) == {1: "Production", 2: "Archived"}
    # canary: rollback_approvals 1 -> a rollback request, nothing moves yet.
    asked = s.rollback("carol", BACK, via, alias="canary-a")
    assert asked.ok and asked.data["status"] == "requested"
    rid = int(asked.data["request"]["id"])
    assert asked.data["request"]["kind"] == "rollback"
    assert "needs 1 approval" in asked.data["request"]["needs"]
    held = s.move("carol", BACK, 1, "@canary-a", via)
    if via == "client":
        held.refused(
            actor="carol",
            action="alias:canary-a",
            rule="gates.canary",
            allow=f"Request #{rid} is open. Follow it with",
        )
    else:
        assert held.code == "PENDING" and held.data["request"]["id"] == rid
    assert s.alias("canary-a", BACK) == 2
    assert s.approve("cal", rid, via).data["state"] == "approved"  # apply: manual
    assert s.move("carol", BACK, 1, "@canary-a", via).ok
    assert s.alias("canary-a", BACK) == 1


@VIAS
def test_break_glass_roles(s: Scenario, via: str) -> None:
    # sam may move to Production but holds no break-glass role: the gate holds him.
    held = s.move("sam", FRAUD, 3, "Production", via)
    _held_with_request(s, held, via, "sam", "transition:Production", 3, "Production")
    # root (admin) breaks glass: version 3 fails the tag check and has no approval.
    assert s.move("root", FRAUD, 3, "Production", via).ok
    assert s.stages()[3] == "Production" and s.stages()[1] == "Archived"
    (review,) = [r for r in s.open_requests() if r["kind"] == "review"]
    assert (review["state"], review["requester"], review["version"]) == ("pending", "root", 3)
    row = s.audit(action="transition_model_version_stage", version=3)[-1]
    assert row["details"]["break_glass"] is True and row["request_id"] == review["id"]
    assert row["rule"] == "gates.production.break_glass_roles"
    # The review stays pending until approved; approving it moves nothing.
    s.approve("dave", review["id"], via)
    assert s.approve("erin", review["id"], via).data["state"] == "approved"
    assert s.stages()[3] == "Production"


@VIAS
def test_archive_existing(s: Scenario, via: str) -> None:
    # Outside the gate nothing is archived: Staging keeps the versions it had.
    assert s.move("carol", FRAUD, 4, "Staging", via).ok
    assert sorted(v for v, st in s.stages().items() if st == "Staging") == [2, 3, 4, 5]
    # Through the gate (archive_existing: true) the old holder is archived in the same
    # transaction, although the request did not ask for it.
    rid = s.opened("alice", FRAUD, 2, "Production", via)
    s.approve("dave", rid, via)
    s.approve("erin", rid, via)
    assert (s.stages()[2], s.stages()[1]) == ("Production", "Archived")
    moved, archived = s.audit(action="transition_model_version_stage")[-2:]
    assert (moved["version"], moved["stage_after"], moved["request_id"]) == (2, "Production", rid)
    assert (archived["version"], archived["stage_after"]) == (1, "Archived")
    assert archived["details"] == {"side_effect": True} and archived["time"] == moved["time"]


def test_protect_delete(s: Scenario) -> None:
    assert s.client("bob", lambda: s.mlflow.delete_model_version(FRAUD, 4)).ok
    refused = s.client("bob", lambda: s.mlflow.delete_model_version(FRAUD, 1))
    refused.refused(
        actor="bob",
        action="delete",
        rule="protect_delete",
        allow="Move the version out of the protected stage or alias first",
    )
    assert (
        "version 1 holds protected Production (protect_delete: Production, champion)"
        in refused.message
    )
    # An alias protects as a stage does (root breaks glass to point @champion at 6).
    assert s.client("root", lambda: s.mlflow.set_registered_model_alias(FRAUD, "champion", 6)).ok
    refused = s.client("bob", lambda: s.mlflow.delete_model_version(FRAUD, 6))
    assert "version 6 holds protected champion" in refused.message
    assert {1, 6} <= set(s.stages())


def test_reserved_tags(s: Scenario) -> None:
    assert s.client("alice", lambda: s.mlflow.set_model_version_tag(FRAUD, 2, "team", "x")).ok
    refused = s.client(
        "root", lambda: s.mlflow.set_model_version_tag(FRAUD, 2, "mlflow.governance.review", "ok")
    )
    refused.refused(
        actor="root",
        action="set tag 'mlflow.governance.review'",
        rule="reserved tags",
        allow="Choose a key that does not start with",
    )
    row = s.audit(decision="deny")[-1]
    assert (row["actor"], row["rule"], row["version"]) == ("root", "reserved tags", 2)


@pytest.mark.parametrize(
    ("model", "allowed"),
    [
        ("fraud-x", True),
        ("churn-x", True),
        ("churn-xy", False),
        ("risk-a1", True),
        ("risk-b", True),
        ("risk-c1", False),
        ("Risk-a1", False),
    ],
)
def test_binding_model_globs(s: Scenario, model: str, allowed: bool) -> None:
    # builder is bound to fraud-*, churn-? and risk-[ab]* (case-sensitive).
    out = s.client("alice", lambda: s.mlflow.create_registered_model(model))
    if allowed:
        assert out.ok
        return
    out.refused(actor="alice", action="register", rule="default-deny", allow="Ask for role builder")
    assert "bindings[0] grants it only on models fraud-*, churn-?, risk-[ab]*" in out.message
