"""What MLflow's own permissions allow, asked of basic-auth on the governance app's behalf.

The governance app serves MLflow's registry routes itself (see
:mod:`mlflow_governance.server.auth`), so basic-auth's validators do not run for them: the
policy decides what a user may do with a *model*. Two of MLflow's decisions still stand
and are asked here, through basic-auth's public :func:`mlflow.server.auth.authorize` and
its users store, so they resolve exactly as basic-auth resolves them (roles, ``DENY``,
workspace admins, ``default_permission``, ``grant_default_workspace_access``):

* **the workspace boundary** (``--enable-workspaces``): a request is scoped to the workspace
  in its ``X-MLflow-Workspace`` header, and MLflow lets a user into a workspace's registry
  only with a role there. Reading needs a registry-wide or workspace-wide grant that reads
  (the seeded ``user`` role's ``USE`` does); writing needs one that can *use* the workspace
  (``USE`` or ``MANAGE``, MLflow's rule for creating anything there). A ``DENY`` on
  ``registered_model`` ``*`` in the workspace keeps a user out even when the workspace
  grant would let them in, as it does in MLflow. Grants on one model are not consulted:
  per-model rights are the policy's.
* **runs and logged models**: whether a user may read a run (its experiment) or a logged
  model, for the approval page that shows a version's source run and metrics.

Basic-auth's admins pass both, as they pass basic-auth's own checks.
"""

from __future__ import annotations

import logging
from typing import Any

_logger = logging.getLogger(__name__)

#: Registry reads (gets, searches, downloads) need ``read`` on the workspace; every other
#: registry route changes something and needs ``use``.
READ = "read"
USE = "use"


def workspaces_enabled() -> bool:
    """Whether the server runs with ``--enable-workspaces``."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES

    return bool(MLFLOW_ENABLE_WORKSPACES.get())


def request_workspace() -> str | None:
    """The workspace MLflow resolved for the current request (None without workspaces)."""
    from mlflow.utils import workspace_context

    name = workspace_context.get_request_workspace()
    return str(name) if name else None


def is_admin(username: str) -> bool:
    """Whether basic-auth knows ``username`` as one of its admins."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import auth as basic_auth

    try:
        return bool(basic_auth.store.get_user(username).is_admin)
    except MlflowException:
        return False  # authenticated by a custom function but unknown to basic-auth


def workspace_refusal(username: str, action: str) -> str | None:
    """Why MLflow keeps ``username`` out of the registry of the request's workspace.

    Args:
        username: The user basic-auth authenticated.
        action: :data:`READ` or :data:`USE`.

    Returns:
        The refusal message, or None when MLflow lets the user in (always None when
        workspaces are off).
    """
    if not workspaces_enabled() or is_admin(username):
        return None
    from mlflow.server.auth.permissions import (
        RESOURCE_TYPE_REGISTERED_MODEL,
        RESOURCE_TYPE_WORKSPACE,
    )
    from mlflow.server.auth.requirements import Requirement

    workspace = request_workspace()
    workspace_grant = (RESOURCE_TYPE_WORKSPACE, "*")
    # The registry-wide grant decides when the user holds one in the workspace (a DENY
    # there wins); otherwise the workspace-wide grant does, as in basic-auth's resolver.
    requirement = Requirement(
        RESOURCE_TYPE_REGISTERED_MODEL, "*", action, fallback_if_no_grant=(workspace_grant,)
    )
    if workspace is not None and _authorize(username, workspace_grant, [requirement]):
        return None
    needed = "read" if action == READ else "change"
    return (
        f"Refused: {username} may not {needed} models in workspace '{workspace or 'unknown'}': "
        f"MLflow grants {username} no role there that allows it. Ask an admin of that "
        "workspace to assign you a role in it (e.g. its 'user' role), or choose your own "
        "workspace."
    )


def may_read_run(username: str, run: Any) -> bool:
    """Whether MLflow lets ``username`` read ``run`` (a ``mlflow.entities.Run``)."""
    from mlflow.server.auth.permissions import RESOURCE_TYPE_RUN

    return _may_read_in_experiment(username, str(run.info.experiment_id), RESOURCE_TYPE_RUN)


def may_read_logged_model(username: str, model: Any) -> bool:
    """Whether MLflow lets ``username`` read a logged model (``mlflow.entities.LoggedModel``)."""
    from mlflow.server.auth.permissions import RESOURCE_TYPE_LOGGED_MODEL

    return _may_read_in_experiment(username, str(model.experiment_id), RESOURCE_TYPE_LOGGED_MODEL)


def _may_read_in_experiment(username: str, experiment_id: str, child_type: str) -> bool:
    if is_admin(username):
        return True
    from mlflow.server.auth.permissions import RESOURCE_TYPE_EXPERIMENT
    from mlflow.server.auth.requirements import Requirement

    experiment = (RESOURCE_TYPE_EXPERIMENT, experiment_id)
    # What basic-auth requires to read a run or a logged model: read on its experiment,
    # and on the child type where a grant on that type exists (else the experiment's).
    return _authorize(
        username,
        experiment,
        [
            Requirement(RESOURCE_TYPE_EXPERIMENT, experiment_id, READ),
            Requirement(child_type, "*", READ, fallback_if_no_grant=(experiment,)),
        ],
    )


def _authorize(username: str, anchor: tuple[str, str], requirements: list[Any]) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.server import auth as basic_auth

    try:
        return bool(basic_auth.authorize(username, anchor, requirements))
    except MlflowException as exc:
        # An unknown user or an unresolvable resource: MLflow denies, and so do we.
        _logger.info("MLflow permission check for %r failed: %s", username, exc.error_code)
        return False
