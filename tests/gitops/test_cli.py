"""``mlflow-governance gitops render``: run through click, in local mode and with a
stand-in for the server (remote mode writes the files on the caller's machine)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mlflow_governance.access.local import LocalAccess
from mlflow_governance.cli.gitops import gitops
from mlflow_governance.gitops import FILES
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from tests.gitops.conftest import Service
from tests.gitops.test_service import promote_through_request
from tests.workflow.conftest import Registry


def run(*args: str) -> Result:
    return CliRunner().invoke(gitops, ["render", *args], catch_exceptions=False)


@pytest.mark.skipif(
    not hasattr(LocalAccess, "gitops_render"),
    reason="LocalAccess.gitops_render(model, *, alias, stage, image) is not wired yet "
    "(it calls GovernanceService.render_release)",
)
def test_local_mode_writes_the_manifests_and_says_what_it_rendered(
    reg: Registry, service: Service, tmp_path: Path
) -> None:
    rid = promote_through_request(reg, 2, "@champion")
    reg.as_user("oscar")
    out = tmp_path / "deploy" / "fraud"
    result = run("--model", "fraud", "--alias", "champion", "--out", str(out), "--image", "i:1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [f"Wrote {out / name}" for name in FILES]
    assert f"fraud version 2 holds @champion (request #{rid}, approved by dave, erin)" in lines[3]
    expected = service.render_release(
        Identity("oscar", SOURCE_ASSERTED), "fraud", alias="champion", image="i:1"
    )["files"]
    assert {name: (out / name).read_text(encoding="utf-8") for name in FILES} == expected

    as_json = run("--model", "fraud", "--stage", "Staging", "--out", str(out), "--json")
    data = json.loads(as_json.output)
    assert (data["version"], data["target"], data["request_id"]) == (2, "Staging", None)
    assert data["files"] == [str(out / name) for name in FILES]

    missing = run("--model", "fraud", "--alias", "nobody", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 1 and "holds alias 'nobody'" in missing.output
    assert not (tmp_path / "x").exists()


def test_exactly_one_of_alias_and_stage(tmp_path: Path) -> None:
    for flags in ([], ["--alias", "a", "--stage", "Production"]):
        result = run("--model", "fraud", *flags, "--out", str(tmp_path))
        assert result.exit_code == 2 and "exactly one of --alias or --stage" in result.output


class _Server:
    """What RemoteAccess returns: the service's dict, decoded from JSON."""

    remote = True

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.calls: list[tuple[Any, ...]] = []

    def notice(self) -> None:
        return None

    def gitops_render(self, model: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((model, kwargs))
        return {
            "model": model,
            "version": 3,
            "target": "Production",
            "request_id": None,
            "approvers": [],
            "image": "i:1",
            "name": "mlflow-m-production",
            "files": self.files,
        }


def test_remote_answers_are_written_locally_under_fixed_names_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = _Server({name: f"# {name}\n" for name in FILES})
    # The module itself: the package's attribute of that name is the click group.
    module = importlib.import_module("mlflow_governance.cli.gitops")
    monkeypatch.setattr(module, "connect", lambda *args: server)
    result = run("--model", "m", "--stage", "Production", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert server.calls == [("m", {"alias": None, "stage": "Production", "image": None})]
    assert (tmp_path / "a" / "service.yaml").read_text() == "# service.yaml\n"
    assert "moved there without a promotion request" in result.output

    # A server (or a man in the middle) cannot make the command write outside --out.
    server.files = {"../escape.yaml": "x"}
    result = run("--model", "m", "--stage", "Production", "--out", str(tmp_path / "b"))
    assert result.exit_code == 1 and "Not a manifest file name" in result.output
    assert not (tmp_path / "escape.yaml").exists()
