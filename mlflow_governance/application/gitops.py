"""``gitops render``: the version a stage or alias holds, as manifests Argo CD can sync."""

from __future__ import annotations

import os
from typing import Any

from mlflow_governance.application._core import ServiceCore, text_arg
from mlflow_governance.exceptions import InvalidRequest, NotFound
from mlflow_governance.identity import Identity
from mlflow_governance.workflow.request_rows import ALIAS, STAGE, Target
from mlflow_governance.workflow.tables import APPLIED

#: The container image when the caller names none (else MLflow's image of this MLflow).
ENV_GITOPS_IMAGE = "MLFLOW_GOVERNANCE_GITOPS_IMAGE"

#: Stages a deployment can follow: "None" and "Archived" hold many versions, none released.
_DEPLOYABLE_STAGES = ("Staging", "Production")


def _default_image() -> str:
    from importlib.metadata import version

    from mlflow_governance.gitops.render import default_image

    return os.environ.get(ENV_GITOPS_IMAGE) or default_image(version("mlflow"))


def _alias_name(text: str) -> str:
    """An alias as MLflow validates it, ``@`` allowed in front.

    Raises:
        InvalidRequest: Not a valid alias, or ``latest``: MLflow resolves that one to the
            newest version of any stage, which no gate has passed.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name

    name = text.strip().removeprefix("@")
    if name.lower() == "latest":
        raise InvalidRequest(
            "'latest' is MLflow's name for the newest version, which no gate approved: "
            "render an alias set by a promotion (e.g. champion) or a stage."
        )
    try:
        _validate_model_alias_name(name)
    except MlflowException as exc:
        raise InvalidRequest(exc.message) from None
    return name


class GitOpsActions(ServiceCore):
    """``gitops render``: a released version and its provenance as Kubernetes manifests."""

    def render_release(
        self,
        identity: Identity,
        model: Any,
        *,
        alias: Any = None,
        stage: Any = None,
        image: Any = None,
    ) -> dict[str, Any]:
        """Render the manifests of the version a stage or alias of ``model`` holds now.

        The manifests name the resolved version (``models:/M/7``), never the alias, so
        what runs changes only when a new commit of the manifests says so.

        Args:
            identity: The caller (``read`` on the model).
            model: The registered model name.
            alias: An alias (``champion`` or ``@champion``); exactly one of alias and stage.
            stage: ``Staging`` or ``Production``.
            image: The container image; default ``MLFLOW_GOVERNANCE_GITOPS_IMAGE`` of the
                service, else MLflow's image of the installed MLflow version.

        Returns:
            ``{"model", "version", "target", "request_id", "approvers", "image", "name",
            "files": {"deployment.yaml": text, "service.yaml": text,
            "kustomization.yaml": text}}``.

        Raises:
            InvalidRequest: Not exactly one of alias and stage, or a stage no release holds.
            PermissionDenied: No ``read`` on the model (audited).
            NotFound: No such model, alias, or version in the stage.
        """
        from mlflow_governance.gitops.render import Release, render

        name = text_arg(model, "model", "a registered model name")
        target = self._target(alias, stage)
        if image is not None:
            image = text_arg(image, "image", "a container image reference")
        self.require(identity, "read", name, "gitops_render")
        stored, version = self._holder_of(name, target)
        request_id, approvers = self._request_behind(stored, version, target)
        release = Release(
            model=stored,
            version=version,
            target=str(target),
            request_id=request_id,
            approvers=approvers,
            image=image or _default_image(),
        )
        return {
            "model": stored,
            "version": version,
            "target": str(target),
            "request_id": request_id,
            "approvers": list(release.approvers),
            "image": release.image,
            "name": release.name,
            "files": render(release),
        }

    @staticmethod
    def _target(alias: Any, stage: Any) -> Target:
        if (alias is None) == (stage is None):
            raise InvalidRequest(
                "Give exactly one of alias (e.g. --alias champion) or stage (e.g. --stage "
                "Production) to render."
            )
        if alias is not None:
            return Target(ALIAS, _alias_name(text_arg(alias, "alias", "an alias name")))
        target = Target.parse(text_arg(stage, "stage", "a stage name"))
        if target.kind != STAGE or target.name not in _DEPLOYABLE_STAGES:
            raise InvalidRequest(
                f"Stage {stage!r} is not a release: render Staging or Production, or an alias."
            )
        return target

    def _holder_of(self, model: str, target: Target) -> tuple[str, int]:
        """The stored model name and the version ``target`` holds.

        The store's raw reads: ``require`` above decided on the caller given, where the
        governed reads would decide again on the identity of the context.

        Raises:
            NotFound: No such model, alias, or version in the stage.
        """
        from mlflow.exceptions import MlflowException

        if not self._model_exists(model):
            raise NotFound(f"Registered model '{model}' does not exist.")
        try:
            if target.kind == ALIAS:
                held = self.store.raw_version_by_alias(model, target.name)
            else:
                newest = self.store.raw_latest_versions(model, [target.name])
                held = newest[0] if newest else None
        except MlflowException:
            # MLflow answers a missing alias with INVALID_PARAMETER_VALUE; the name was
            # checked above, so that is what it means here.
            held = None
        if held is None:
            where = f"alias '{target.name}'" if target.kind == ALIAS else f"stage {target.name}"
            raise NotFound(
                f"No version of model '{model}' holds {where}; promote one first "
                f"(mlflow-governance promote '{model}' VERSION --to {target})."
            )
        return str(held.name), int(held.version)

    def _model_exists(self, model: str) -> bool:
        from mlflow.exceptions import MlflowException
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        try:
            SqlAlchemyStore.get_registered_model(self.store, model)
        except MlflowException:
            return False
        return True

    def _request_behind(
        self, model: str, version: int, target: Target
    ) -> tuple[int | None, tuple[str, ...]]:
        """The applied request that last put ``version`` in ``target``, and its approvers.

        The audit log says which change put the version there and under which request;
        the request row says who approved it. A move made without a request (no gate, a
        gate without approvals, break glass) has neither.
        """
        from mlflow_governance.audit.history import history

        with self.store.engine.connect() as conn:
            events = history(conn, model, workspace=self.store.active_workspace())
        entered = [
            event
            for event in events
            if event.kind == target.kind
            and event.name == target.name
            and event.after is not None
            and event.version == version
        ]
        if not entered or entered[-1].request_id is None:
            return None, ()
        request_id = int(entered[-1].request_id)
        try:
            view = self.workflow.get(request_id)
        except NotFound:
            return None, ()
        # Only the request that applied this very move vouches for it (not a review
        # opened after a break glass, nor one for another version or target).
        if view.state != APPLIED or view.version != version or view.target != target:
            return None, ()
        return request_id, tuple(
            sorted({vote.approver for vote in view.approvals if vote.decision == "approve"})
        )
