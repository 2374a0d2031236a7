"""``render_release`` on a real registry: the holder of a stage or alias, and the
applied request (and its approvers) that put it there."""

from __future__ import annotations

import pytest
import yaml

from mlflow_governance.exceptions import InvalidRequest, NotFound, PermissionDenied
from mlflow_governance.gitops import FILES
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from tests.gitops.conftest import Service
from tests.workflow.conftest import Registry

OSCAR = Identity("oscar", SOURCE_ASSERTED)  # ops: the viewer role, read only
MALLORY = Identity("mallory", SOURCE_ASSERTED)  # in no binding of team.yaml


def promote_through_request(reg: Registry, version: int, to: str) -> int:
    """carol asks, dave and erin approve: the gate applies the move automatically."""
    rid = int(reg.run("carol", lambda: reg.gov.request("fraud", version, to))["id"])
    reg.run("dave", lambda: reg.gov.approve(rid))
    assert reg.run("erin", lambda: reg.gov.approve(rid))["state"] == "applied"
    return rid


def image_args(result: dict) -> tuple[str, list[str]]:
    deployment = yaml.safe_load(result["files"]["deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return container["image"], container["args"]


def test_alias_resolves_to_its_version_with_the_request_and_approvers(
    reg: Registry, service: Service
) -> None:
    rid = promote_through_request(reg, 2, "@champion")
    result = service.render_release(OSCAR, "fraud", alias="@champion", image="img:1")
    assert (result["model"], result["version"], result["target"]) == ("fraud", 2, "@champion")
    assert (result["request_id"], result["approvers"]) == (rid, ["dave", "erin"])
    assert sorted(result["files"]) == sorted(FILES)
    image, args = image_args(result)
    assert image == "img:1"
    assert args[args.index("-m") + 1] == "models:/fraud/2"
    notes = yaml.safe_load(result["files"]["deployment.yaml"])["metadata"]["annotations"]
    assert notes["mlflow-governance/request-id"] == str(rid)
    assert notes["mlflow-governance/approvers"] == '["dave", "erin"]'
    # The same state renders the same bytes; without the "@" it is the same alias.
    again = service.render_release(OSCAR, "fraud", alias="champion", image="img:1")
    assert again == result


def test_stage_resolves_to_its_newest_version_with_the_request(
    reg: Registry, service: Service
) -> None:
    rid = promote_through_request(reg, 1, "Production")
    result = service.render_release(OSCAR, "fraud", stage="production")
    assert (result["version"], result["target"], result["request_id"]) == (1, "Production", rid)
    assert result["approvers"] == ["dave", "erin"]
    assert image_args(result)[1][1] == "models:/fraud/1"
    # Staging was reached by a seeding move, without a request: nobody vouches for it.
    staged = service.render_release(OSCAR, "fraud", stage="Staging")
    assert (staged["version"], staged["request_id"], staged["approvers"]) == (2, None, [])
    assert "request-id" not in staged["files"]["deployment.yaml"]


def test_a_move_without_a_request_has_no_approvers(reg: Registry, service: Service) -> None:
    reg.run("admin", lambda: reg.mlflow.set_registered_model_alias("fraud", "champion", 1))
    result = service.render_release(OSCAR, "fraud", alias="champion", image="img:1")
    assert (result["version"], result["request_id"], result["approvers"]) == (1, None, [])


def test_an_earlier_request_does_not_vouch_for_a_later_move(
    reg: Registry, service: Service
) -> None:
    promote_through_request(reg, 1, "@champion")
    # The admin's break glass moves the alias to 2 without a request, then back to 1:
    # the request that once applied v1 is not what put v1 there now.
    for version in (2, 1):
        reg.run(
            "admin", lambda v=version: reg.mlflow.set_registered_model_alias("fraud", "champion", v)
        )
    result = service.render_release(OSCAR, "fraud", alias="champion", image="img:1")
    assert (result["version"], result["request_id"]) == (1, None)


def test_default_image_is_the_setting_or_mlflows_own(
    reg: Registry, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import version

    promote_through_request(reg, 1, "@champion")
    result = service.render_release(OSCAR, "fraud", alias="champion")
    assert result["image"] == f"ghcr.io/mlflow/mlflow:v{version('mlflow')}"
    monkeypatch.setenv("MLFLOW_GOVERNANCE_GITOPS_IMAGE", "registry.example/serving:9")
    result = service.render_release(OSCAR, "fraud", alias="champion")
    assert image_args(result)[0] == "registry.example/serving:9"


def test_read_is_required_and_the_refusal_audited(reg: Registry, service: Service) -> None:
    promote_through_request(reg, 1, "@champion")
    with pytest.raises(PermissionDenied) as info:
        service.render_release(MALLORY, "fraud", alias="champion")
    assert "mallory" in str(info.value)
    (row,) = reg.audit(actor="mallory", decision="deny")
    assert (row["action"], row["model"]) == ("gitops_render", "fraud")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({}, InvalidRequest, "exactly one of alias"),
        ({"alias": "champion", "stage": "Production"}, InvalidRequest, "exactly one of alias"),
        ({"alias": "latest"}, InvalidRequest, "'latest'"),
        ({"stage": "Archived"}, InvalidRequest, "Staging or Production"),
        ({"stage": "Prod-ish"}, InvalidRequest, "neither a stage nor an alias"),
        ({"alias": "champion"}, NotFound, "holds alias 'champion'"),
        ({"stage": "Production"}, NotFound, "holds stage Production"),
    ],
)
def test_helpful_errors(service: Service, kwargs: dict, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        service.render_release(OSCAR, "fraud", **kwargs)


def test_a_missing_model_is_not_found(service: Service) -> None:
    with pytest.raises(NotFound, match="'nope' does not exist"):
        service.render_release(OSCAR, "nope", alias="champion")
