"""The CI/CD examples under ``examples/ci/`` and ``examples/argocd/`` tell one story and run.

Each pipeline (GitHub Actions, Jenkins, GitLab CI) is parsed, its ``mlflow-governance``
lines are extracted in order, and they are executed as real shell steps against a real
governance server, the way the CI system would: ``bash`` with only ``PATH``, ``HOME``, the
server's URL and the CI service account's credentials (carol) in its environment, no
database URL. While ``promote --wait`` waits, dave and erin approve over REST. The lines
that are not governance commands (tests, the staging deploy, git) are not run; the tests
check they are there, in the story's order. The exit-code handling around the waiting step
is run too, with an unreachable server (exit 5) and with no approvers (exit 4).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server.conftest import (
    GovServer,
    approve_when_waiting,
    governance_server,
    password_of,
    register,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ci-examples")]

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
WORKFLOW = CI / "github" / "workflow.yml"
ACTION = CI / "github" / "governance-step" / "action.yml"
JENKINSFILE = CI / "Jenkinsfile"
GITLAB = CI / ".gitlab-ci.yml"
ARGO_APP = ROOT / "examples" / "argocd" / "application.yaml"
CLI = Path(sys.executable).with_name("mlflow-governance")
SERVICE_ACCOUNT = "carol"

#: The story every pipeline tells, as (what, pattern over the shell lines) in order.
STORY: list[tuple[str, str]] = [
    ("the model's tests", r"\bpytest\b"),
    ("gate check", r'^mlflow-governance check "\$MODEL" "\$VERSION" --gate production$'),
    ("promote to Staging", r'^mlflow-governance promote "\$MODEL" "\$VERSION" --to Staging$'),
    ("deploy to staging", r"deploy/staging\.sh"),
    ("request Production", r'^mlflow-governance request "\$MODEL" "\$VERSION" --to Production\b'),
    (
        "promote to Production, waiting",
        r'^mlflow-governance promote "\$MODEL" "\$VERSION" --to Production --wait --timeout 3600$',
    ),
    (
        "render the manifests",
        r'^mlflow-governance gitops render --model "\$MODEL" --stage Production '
        r'--out "deploy/\$MODEL"$',
    ),
    ("commit the folder", r'git add "deploy/\$MODEL"'),
    ("commit", r"\bgit commit\b"),
    ("push", r"\bgit push\b"),
]

#: What a CI job's environment must not hold: the database, a registry URI, a policy file.
FORBIDDEN = re.compile(
    r"MLFLOW_REGISTRY_URI|governed\+|postgresql|mysql|sqlite|MLFLOW_GOVERNANCE_POLICY"
)


# --- Reading the examples ---------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _script_lines(text: str) -> list[str]:
    """The lines of a shell script, stripped, without blanks and comments."""
    stripped = (line.strip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def github_lines() -> list[str]:
    """The workflow's shell lines in order; a governance-step's ``run`` input counts as one."""
    workflow = _load_yaml(WORKFLOW)
    lines: list[str] = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                lines += _script_lines(step["run"])
            elif step.get("uses", "").endswith("/governance-step"):
                lines.append(step["with"]["run"].strip())
    return lines


_SH_STEP = re.compile(r"\bsh\s*\(?\s*(?:script:\s*)?('''|\"\"\"|'|\")(.*?)\1", re.S)


def jenkins_lines() -> list[str]:
    """The shell lines of the Jenkinsfile's ``sh '...'`` steps, in order."""
    text = JENKINSFILE.read_text(encoding="utf-8")
    return [line for match in _SH_STEP.finditer(text) for line in _script_lines(match[2])]


def gitlab_jobs() -> list[tuple[str, dict[str, Any]]]:
    """GitLab's jobs in the order of their stages (then of the file)."""
    config = _load_yaml(GITLAB)
    stages = config["stages"]
    jobs = [(k, v) for k, v in config.items() if isinstance(v, dict) and "stage" in v]
    return sorted(jobs, key=lambda item: stages.index(item[1]["stage"]))


def gitlab_lines() -> list[str]:
    return [
        line for _, job in gitlab_jobs() for item in job["script"] for line in _script_lines(item)
    ]


PIPELINES: dict[str, Callable[[], list[str]]] = {
    "github": github_lines,
    "jenkins": jenkins_lines,
    "gitlab": gitlab_lines,
}


def governance_commands(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("mlflow-governance ")]


def substitute(command: str, model: str, version: int) -> str:
    """Put a test model and version where the example says ``$MODEL`` and ``$VERSION``."""
    for name, value in (("MODEL", model), ("VERSION", str(version))):
        command = command.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return command


def gitops_available() -> bool:
    result = subprocess.run(
        [str(CLI), "gitops", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    return result.returncode == 0


# --- The structure of each file ---------------------------------------------------------


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_each_pipeline_tells_the_story_in_order(pipeline: str) -> None:
    lines = PIPELINES[pipeline]()
    position = -1
    for what, pattern in STORY:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"{pipeline}: no line for {what!r} ({pattern})\n" + "\n".join(lines)
        later = [i for i in found if i > position]
        assert later, f"{pipeline}: {what!r} comes before the step it should follow"
        position = later[0]
    # Exactly the story's five governance commands, nothing else against the server.
    assert len(governance_commands(lines)) == 5, governance_commands(lines)


@pytest.mark.parametrize("path", [WORKFLOW, ACTION, JENKINSFILE, GITLAB], ids=lambda p: p.name)
def test_no_pipeline_holds_a_database_url(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not FORBIDDEN.search(text), FORBIDDEN.search(text)


def test_github_workflow_triggers_and_secrets() -> None:
    workflow = _load_yaml(WORKFLOW)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "model_version.registered" in triggers["repository_dispatch"]["types"]
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"model", "version"}
    assert "client_payload.data.model" in workflow["env"]["MODEL"]
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    governed = [s for s in steps if s.get("uses", "").endswith("/governance-step")]
    assert len(governed) == 5
    for step in governed:
        assert step["with"]["tracking-uri"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
        assert step["with"]["username"] == "${{ secrets.MLFLOW_TRACKING_USERNAME }}"
        assert step["with"]["password"] == "${{ secrets.MLFLOW_TRACKING_PASSWORD }}"
        # Event values reach the command as variables, never pasted into it.
        assert "${{" not in step["with"]["run"]


def test_github_composite_action_installs_and_runs_one_command() -> None:
    action = _load_yaml(ACTION)
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"run", "tracking-uri", "username", "password"}
    install, run = action["runs"]["steps"]
    assert "pip install" in install["run"]
    assert run["env"]["MLFLOW_TRACKING_URI"] == "${{ inputs.tracking-uri }}"
    assert run["env"]["MLFLOW_TRACKING_USERNAME"] == "${{ inputs.username }}"
    assert run["env"]["MLFLOW_TRACKING_PASSWORD"] == "${{ inputs.password }}"
    assert "${{" not in run["run"], "inputs reach the script through env only"


def test_jenkinsfile_is_a_declarative_pipeline_with_credentials_binding() -> None:
    text = JENKINSFILE.read_text(encoding="utf-8")
    for block in ("pipeline {", "agent", "stages {", "stage(", "steps {"):
        assert block in text, block
    assert text.count("{") == text.count("}")
    assert "usernameVariable: 'MLFLOW_TRACKING_USERNAME'" in text
    assert "passwordVariable: 'MLFLOW_TRACKING_PASSWORD'" in text
    assert "MLFLOW_TRACKING_URI = credentials(" in text
    # Groovy must not interpolate secrets or parameters into governance commands.
    for match in _SH_STEP.finditer(text):
        if "mlflow-governance" in match[2]:
            assert match[1] in ("'", "'''"), match[0]


def test_gitlab_stages_and_variables() -> None:
    config = _load_yaml(GITLAB)
    assert config["stages"] == ["test", "gate", "staging", "production", "gitops"]
    assert "pip install" in " ".join(config["default"]["before_script"])
    assert next(name for name, _ in gitlab_jobs()) == "model-tests"
    assert config["workflow"]["rules"] == [{"if": "$MODEL && $VERSION"}]


def test_argocd_application_syncs_the_rendered_folder() -> None:
    app = _load_yaml(ARGO_APP)
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert source["path"] == f"deploy/{app['metadata']['name']}"
    assert source["repoURL"].endswith(".git") and source["targetRevision"]
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert app["spec"]["destination"]["namespace"]


# --- Running the governance lines against a real server ---------------------------------


@dataclass
class StepResult:
    command: str
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    with governance_server(tmp_path_factory.mktemp("ci-examples")) as running:
        yield running


def ci_env(gov: GovServer, **override: str) -> dict[str, str]:
    """A CI job's environment: PATH, HOME, the server's URL and the service account."""
    return {
        "PATH": f"{CLI.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLFLOW_TRACKING_URI": gov.url,
        "MLFLOW_TRACKING_USERNAME": SERVICE_ACCOUNT,
        "MLFLOW_TRACKING_PASSWORD": password_of(SERVICE_ACCOUNT),
        **override,
    }


def run_step(gov: GovServer, command: str, cwd: Path) -> StepResult:
    """Run one line as a CI shell step would, approving if it waits for approvals."""
    script = f"set -euo pipefail\n{command}\n"
    if " --wait" not in command:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=ci_env(gov),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return StepResult(command, done.returncode, done.stdout, done.stderr)
    with subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=ci_env(gov),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        log = approve_when_waiting(gov, process)
        code = process.wait(timeout=300)
        out = process.stdout.read() if process.stdout else ""
    return StepResult(command, code, out, log)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_governance_lines_run_against_the_server(
    pipeline: str, gov: GovServer, tmp_path: Path
) -> None:
    model = f"ci-{pipeline}"
    version = register(gov, "alice", model, tags={"validation_status": "passed"}, stage=None)
    can_render = gitops_available()
    results: list[StepResult] = []
    for line in governance_commands(PIPELINES[pipeline]()):
        if line.startswith("mlflow-governance gitops ") and not can_render:
            continue  # test_gitops_render_step says so
        step = run_step(gov, substitute(line, model, version), tmp_path)
        assert step.returncode == 0, step
        assert "Traceback" not in step.stderr, step
        results.append(step)

    check, staging, request, production, *render = results
    assert f"PASS: {model} version {version} against gate production" in check.stdout
    assert f"{model} version {version} is now at Staging." in staging.stdout
    assert "is pending" in request.stdout
    assert "needs 2 approvals from role approver" in production.stderr
    assert f"{model} version {version} is now at Production." in production.stdout
    with gov.as_user("oscar") as client:
        assert client.get_model_version(model, str(version)).current_stage == "Production"
    if render:
        folder = tmp_path / "deploy" / model
        assert (folder / "kustomization.yaml").is_file(), render[0]
        assert f"models:/{model}/{version}" in (folder / "deployment.yaml").read_text()

    # Every change the pipeline made is the service account's, authenticated by the server.
    rows = gov.call("dave", "GET", "/audit", params={"model": model, "limit": 1000})
    mine = [row for row in rows if row["actor"] == SERVICE_ACCOUNT]
    assert {"transition_model_version_stage", "request_promotion"} <= {r["action"] for r in mine}
    assert {row["identity_source"] for row in mine} == {"server"}


def test_gitops_render_step() -> None:
    """The render step runs in the test above once the ``gitops`` command exists."""
    if not gitops_available():
        pytest.skip(
            "mlflow-governance gitops is not available in this build: the examples' "
            "`gitops render` step was not executed (every other governance step was)"
        )
    for pipeline, lines in PIPELINES.items():
        renders = [c for c in governance_commands(lines()) if " gitops render " in c]
        assert len(renders) == 1, pipeline


# --- The exit-code handling around the waiting step -------------------------------------


def wait_snippets() -> dict[str, str]:
    """Each pipeline's shell text that runs ``promote --wait`` and interprets its code."""
    action = _load_yaml(ACTION)["runs"]["steps"][1]["run"]
    jenkins = [m[2] for m in _SH_STEP.finditer(JENKINSFILE.read_text(encoding="utf-8"))]
    gitlab = [item for _, job in gitlab_jobs() for item in job["script"]]
    return {
        "github": action,
        "jenkins": next(s for s in jenkins if " --wait " in s),
        "gitlab": next(s for s in gitlab if " --wait " in s),
    }


def github_wait_command() -> str:
    return next(c for c in github_lines() if " --wait " in c)


@pytest.mark.parametrize("pipeline", ["github", "jenkins", "gitlab"])
def test_unreachable_server_and_timeout_fail_the_job_with_a_message(
    pipeline: str, gov: GovServer, tmp_path: Path
) -> None:
    model = f"ci-codes-{pipeline}"
    version = register(gov, "alice", model, tags={"validation_status": "passed"}, stage=None)
    gov.call(
        SERVICE_ACCOUNT,
        "POST",
        "/promote",
        json={"model": model, "version": version, "to": "Staging"},
    )
    snippet = substitute(wait_snippets()[pipeline], model, version)
    extra: dict[str, str] = {}
    if pipeline == "github":
        # The action's script runs the workflow's command from the GOVERNANCE_RUN input.
        extra["GOVERNANCE_RUN"] = substitute(github_wait_command(), model, version)

    def run(script: str, **override: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env=ci_env(gov, **extra, **override),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    unreachable = run(snippet, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert unreachable.returncode == 5, unreachable
    assert "cannot be reached" in unreachable.stdout, unreachable

    # Nobody approves: the same step with a one-second timeout ends with 4, request open.
    if pipeline == "github":
        extra["GOVERNANCE_RUN"] = extra["GOVERNANCE_RUN"].replace("--timeout 3600", "--timeout 1")
    short = snippet.replace("--timeout 3600", "--timeout 1")
    timed_out = run(short)
    assert timed_out.returncode == 4, timed_out
    assert "Timed out waiting for approvals" in timed_out.stdout, timed_out
    pending = gov.call(SERVICE_ACCOUNT, "GET", "/requests", params={"model": model})
    assert [r["state"] for r in pending] == ["pending"]


def test_commands_quote_their_variables() -> None:
    """``$MODEL`` and ``$VERSION`` are always quoted, so odd names stay one argument."""
    for pipeline, lines in PIPELINES.items():
        for command in governance_commands(lines()):
            words = shlex.split(substitute(command, "a model", 7))
            assert "a model" in words or "deploy/a model" in words, (pipeline, command)
