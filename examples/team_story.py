"""The team story, end to end: policy, refusals, requests, two approvals, rollback.

Data scientists register and test models; ML engineers move them to Staging; release
managers approve Production; ops may only read. Everything below uses the stock MLflow
client (local mode: the actor comes from MLFLOW_TRACKING_USERNAME) and the
``mlflow-governance`` CLI, on SQLite files in the current directory.

Run it with ``make demo`` (after the quickstart) or ``python examples/team_story.py``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

POLICY = Path(__file__).parent / "policies" / "team.yaml"
MODEL = "fraud-detector"


def heading(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)))


def as_user(name: str) -> None:
    """Switch the acting user for the next calls (local mode reads it per call)."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = name


def cli(*args: str) -> None:
    """Run one mlflow-governance command and print what it prints."""
    from click.testing import CliRunner

    from mlflow_governance.cli import main

    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "?")
    print(f"$ {user}> mlflow-governance {' '.join(args)}")
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    print(result.output.rstrip())


def attempt(description: str, call) -> None:  # type: ignore[no-untyped-def]
    """Try a stock MLflow call and print whether it went through or why it was refused."""
    from mlflow.exceptions import MlflowException

    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "?")
    try:
        call()
        print(f"{user}: {description}: done")
    except MlflowException as exc:
        print(f"{user}: {description}: {exc.error_code}\n    {exc.message}")


def train(alpha: float, run_name: str) -> str:
    """Train a small classifier on a data set shipped with scikit-learn; return its run id."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    with mlflow.start_run(run_name=run_name) as run:
        model = LogisticRegression(C=alpha, max_iter=5000).fit(x_train, y_train)
        mlflow.log_metric("accuracy", float(model.score(x_test, y_test)))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, model.predict(x_test)),
            pip_requirements=["scikit-learn"],  # skips the slow dependency inference
        )
    return run.info.run_id


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ["MLFLOW_REGISTRY_URI"] = "governed+sqlite:///team.db"
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///team-tracking.db")
    os.environ["MLFLOW_GOVERNANCE_POLICY_REFRESH"] = "0"

    import mlflow
    from mlflow import MlflowClient

    heading("The platform admin applies the team policy")
    as_user("admin")
    cli("policy", "validate", str(POLICY))
    cli("policy", "apply", str(POLICY))
    cli("policy", "explain", "--user", "alice", "--model", MODEL)

    client = MlflowClient()
    heading("alice (data science) trains and registers two versions")
    as_user("alice")
    mlflow.set_experiment("fraud")
    for n, alpha in enumerate((0.1, 1.0), start=1):
        run_id = train(alpha, f"fraud-v{n}")
        mv = mlflow.register_model(f"runs:/{run_id}/model", MODEL)
        client.set_model_version_tag(MODEL, mv.version, "validation_status", "passed")
        print(f"alice registered {MODEL} version {mv.version}")
    attempt("move version 1 to Staging", lambda: client.transition_model_version_stage(
        MODEL, 1, "Staging"))

    heading("carol (ML engineer) stages version 1; alice asks for Production")
    as_user("carol")
    attempt("move version 1 to Staging", lambda: client.transition_model_version_stage(
        MODEL, 1, "Staging"))
    as_user("alice")
    attempt("move version 1 to Production", lambda: client.transition_model_version_stage(
        MODEL, 1, "Production"))
    attempt("set @champion on version 1", lambda: client.set_registered_model_alias(
        MODEL, "champion", 1))
    attempt("approve her own request #1", lambda: _approve(1))
    cli("requests", "--state", "pending")

    heading("Two release managers approve; the second approval applies the move")
    as_user("dave")
    cli("approve", "1", "-m", "metrics reviewed")
    as_user("erin")
    cli("approve", "1", "-m", "ok for production")
    for user in ("dave", "erin"):
        as_user(user)
        cli("approve", "2", "-m", "champion follows production")
    as_user("oscar")
    champion = client.get_model_version_by_alias(MODEL, "champion")
    print(f"oscar (ops) reads: {MODEL}@champion is version {champion.version}, "
          f"stage {champion.current_stage}")

    heading("Version 2 goes the same way; version 1 is archived on the way")
    as_user("carol")
    attempt("move version 2 to Staging", lambda: client.transition_model_version_stage(
        MODEL, 2, "Staging"))
    as_user("alice")
    cli("check", MODEL, "2", "--gate", "production")
    cli("request", MODEL, "2", "--to", "Production", "-m", "better recall")
    for user in ("dave", "erin"):
        as_user(user)
        cli("approve", "3")
    for mv in client.search_model_versions(f"name = '{MODEL}'"):
        print(f"  version {mv.version}: {mv.current_stage}")

    heading("Something fails in production: roll back")
    as_user("oscar")
    attempt("delete version 2", lambda: client.delete_model_version(MODEL, 2))
    cli("rollback", MODEL, "--stage", "Production")
    as_user("admin")
    cli("rollback", MODEL, "--stage", "Production", "-m", "incident 42: revert to v1")
    cli("requests", "--state", "pending")

    heading("Load the champion and predict")
    from sklearn.datasets import load_breast_cancer

    x, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    print(f"models:/{MODEL}@champion predicts {[int(p) for p in model.predict(x.head(5))]}")

    heading("Who did what: the audit trail, the history and the chain")
    cli("audit", "list", "--model", MODEL, "--limit", "60")
    cli("history", MODEL)
    cli("audit", "verify")


def _approve(request_id: int) -> None:
    from mlflow_governance.client import GovernanceClient

    GovernanceClient().approve(request_id)


if __name__ == "__main__":
    main()
