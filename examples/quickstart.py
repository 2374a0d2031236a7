"""mlflow-governance quickstart: a governed MLflow registry on SQLite, end to end.

Run it from an empty folder (``make demo`` does so in ``.demo/``). It writes ``mlflow.db``
and ``mlruns/`` there, then:

1. alice trains two scikit-learn classifiers and registers them as versions 1 and 2;
2. bob moves stages (Staging, then Production) and the ``champion`` alias;
3. the ``champion`` is loaded by its model URI and makes a prediction;
4. the audit trail, the stage/alias history and the hash chain are shown through the
   ``mlflow-governance`` command line.

Nothing in steps 1 to 3 is specific to the plugin: it is the stock MLflow API. The only
change is the registry URI, ``governed+sqlite:///mlflow.db``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings

import mlflow
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from mlflow_governance.cli import main as governance_cli

MODEL = "iris-classifier"
# Plain MLflow configuration: tracking and registry share one SQLite file in this folder.
# The "governed+" prefix is all it takes to route registry writes through the plugin.
TRACKING_URI = "sqlite:///mlflow.db"
REGISTRY_URI = "governed+sqlite:///mlflow.db"


def configure() -> None:
    """Point MLflow (and the mlflow-governance CLI) at the database; keep the output quiet."""
    os.environ["MLFLOW_TRACKING_URI"] = TRACKING_URI
    os.environ["MLFLOW_REGISTRY_URI"] = REGISTRY_URI
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Stages are deprecated in MLflow 3 (aliases replace them) but still widely used, and
    # the plugin governs both. Without a policy the plugin also warns, once, that it only
    # records: this demo says so in its output instead.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="mlflow-governance: no policy configured")


def heading(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def act_as(user: str) -> None:
    """Switch the acting user. In local mode the plugin records MLFLOW_TRACKING_USERNAME."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = user


def governance(*args: str, show: bool = True) -> str:
    """Run ``mlflow-governance ARGS`` in this process; print its output and return it."""
    if show:
        print(f"$ mlflow-governance {' '.join(args)}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        governance_cli.main(args=list(args), prog_name="mlflow-governance", standalone_mode=False)
    if show:
        print(out.getvalue().rstrip(), flush=True)
    return out.getvalue()


def train_and_register(c: float, data: list) -> str:
    """Train one classifier, log it to a run and register it as a new version."""
    X_train, X_test, y_train, y_test = data
    with mlflow.start_run(run_name=f"logreg-C{c}"):
        model = LogisticRegression(C=c, max_iter=1000).fit(X_train, y_train)
        accuracy = model.score(X_test, y_test)
        mlflow.log_param("C", c)
        mlflow.log_metric("accuracy", accuracy)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X_test, model.predict(X_test)),
            pip_requirements=["scikit-learn"],  # skips a slow requirements inference
            registered_model_name=MODEL,  # the stock API: the plugin records who did it
        )
    version = info.registered_model_version
    print(f"alice registered {MODEL} version {version} (C={c}, accuracy {accuracy:.2f})")
    return str(version)


def main() -> None:
    configure()
    heading("Setup")
    print(f"tracking URI: {TRACKING_URI}")
    print(f"registry URI: {REGISTRY_URI}")
    print(
        "No policy is configured, so the plugin runs audit-only: nothing is refused and\n"
        "every registry write is recorded. Set MLFLOW_GOVERNANCE_POLICY or run\n"
        "'mlflow-governance policy apply FILE' to enforce (see docs/policy.md)."
    )

    heading("alice trains and registers two versions")
    act_as("alice")
    governance("whoami")
    X, y = load_iris(return_X_y=True, as_frame=True)
    data = train_test_split(X, y, test_size=0.3, random_state=0)
    v1 = train_and_register(0.05, data)
    v2 = train_and_register(1.0, data)

    heading("bob promotes version 1, then replaces it with version 2")
    act_as("bob")
    client = MlflowClient()
    client.transition_model_version_stage(MODEL, v1, "Staging")
    client.transition_model_version_stage(MODEL, v1, "Production")
    client.set_registered_model_alias(MODEL, "champion", v1)
    print(f"bob: version {v1} -> Staging -> Production; @champion -> version {v1}")
    client.transition_model_version_stage(MODEL, v2, "Staging")
    client.transition_model_version_stage(MODEL, v2, "Production", archive_existing_versions=True)
    client.set_registered_model_alias(MODEL, "champion", v2)
    print(
        f"bob: version {v2} -> Staging -> Production, archiving version {v1}; "
        f"@champion -> version {v2}"
    )

    heading(f"Predicting with models:/{MODEL}@champion")
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    flowers = data[1].head(3)  # three flowers of the test split
    names = load_iris().target_names
    predicted = [str(names[i]) for i in champion.predict(flowers)]
    print(f"@champion is version {client.get_model_version_by_alias(MODEL, 'champion').version}")
    print(f"predictions for 3 test flowers: {predicted}")

    heading("The audit trail: one row per registry change, with its actor")
    governance("audit", "list", "--model", MODEL)

    heading("History: who held which stage and alias, and when")
    governance("history", MODEL)
    # A moment between the two promotions: when bob first pointed @champion at version 1.
    rows = json.loads(governance("audit", "list", "--model", MODEL, "--json", show=False))
    first_champion = next(
        row
        for row in rows
        if row["action"] == "set_registered_model_alias" and row["alias_after"] == int(v1)
    )
    print()
    governance("history", MODEL, "--at", first_champion["time"])

    heading("Verifying the hash chain")
    governance("audit", "verify")
    print(
        f"\nDone. Browse it with: mlflow ui --backend-store-uri {TRACKING_URI} "
        f"--registry-store-uri {REGISTRY_URI}"
    )


if __name__ == "__main__":
    main()
