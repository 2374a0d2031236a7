"""An approver the policy lets approve but not read the audit log, on the model page.

The request page links to the model page (audit trail, stage and alias history,
requests). The policy here gives approvers ``approve:production`` without
``audit:read``: following that link must explain the refusal, with its way out, and
still list the model's requests, not fail; the refused look is audited once.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from tests.server.conftest import ADMIN, GovServer, governance_server, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-page-model")]

POLICY = """\
version: 1
mode: enforce
groups:
  data-science: [alice]
  ml-engineers: [carol]
  release-managers: [dave, erin]
roles:
  contributor: [read, register, edit, request]
  promoter: [read, request, "transition:Staging"]
  approver: [read, "approve:production"]
  auditor: [read, "audit:read"]
  admin: ["*"]
bindings:
  - {role: contributor, principals: ["group:data-science"]}
  - {role: promoter, principals: ["group:ml-engineers"]}
  - {role: approver, principals: ["group:release-managers"]}
  - {role: admin, principals: ["user:admin"]}
gates:
  production:
    targets: {stages: [Production], aliases: [champion]}
    approvals:
      required: 2
      approver_roles: [approver]
      distinct_from: [requester, version_creator]
    apply: automatic
"""


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("governance-page-model")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with governance_server(workdir, extra_env={"MLFLOW_GOVERNANCE_POLICY": str(policy)}) as running:
        yield running


def _text(page: str) -> str:
    """The visible text of a page's ``<main>``, whitespace collapsed."""
    main = re.search(r"<main>(.*)</main>", page, re.S)
    assert main is not None, page
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", main.group(1)))).strip()


def test_an_approver_without_audit_read_is_told_why_on_the_model_page(gov: GovServer) -> None:
    name = "page-model-approver"
    register(gov, "alice", name, stage=None)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": 1, "target": "@champion", "comment": "ready"},
    )
    dave = gov.session("dave")

    # The request page offers dave the vote and the way to the model's history.
    request_page = dave.get(f"{gov.url}/governance/requests/{created['id']}", timeout=60)
    assert request_page.status_code == 200
    assert 'class="approve"' in request_page.text
    link = re.search(r'<a class="audit-trail" href="([^"]+)"', request_page.text)
    assert link is not None, request_page.text

    model_page = dave.get(f"{gov.url}{html.unescape(link.group(1))}", timeout=60)
    # The page, with the status of the refused part: 403, as the audit API answers.
    assert model_page.status_code == 403, model_page.text
    text = _text(model_page.text)
    assert "The policy does not let you read this model's audit log" in text
    assert f"Refused: dave may not audit:read on model '{name}'" in text
    assert "Ask for role auditor" in text  # the way out
    assert f"#{created['id']} version 1 → @champion : pending (by carol)" in text
    assert "Audit trail (newest" not in text and "Now holding" not in text

    # Audited as before: one refused read of the audit log, and nothing else for it.
    rows = gov.call(ADMIN, "GET", "/audit", params={"model": name, "actor": "dave"})
    assert [(r["action"], r["decision"]) for r in rows] == [("read_audit", "deny")]


def test_an_auditor_sees_the_trail_on_the_same_page(gov: GovServer) -> None:
    name = "page-model-admin"
    register(gov, "alice", name, stage=None)
    page = gov.session(ADMIN).get(f"{gov.url}/governance/model", params={"name": name}, timeout=60)
    assert page.status_code == 200
    text = _text(page.text)
    assert "Audit trail (newest" in text and "create_model_version" in text
    assert "does not let you read" not in text
