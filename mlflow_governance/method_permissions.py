"""One declarative table from registry store method to the permission it needs.

The governed store looks a method up here and nowhere else. A test lists every public
method of MLflow's ``AbstractStore`` and ``SqlAlchemyStore`` and fails when one is in none
of the tables below, so a new MLflow release cannot add an ungoverned write silently.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Writes: method -> permission template. ``{stage}`` and ``{alias}`` are filled from the
#: call's arguments, so the same method needs a different right per target.
WRITE_PERMISSIONS: Mapping[str, str] = {
    "create_registered_model": "register",
    "create_model_version": "register",
    "copy_model_version": "register",
    "update_registered_model": "edit",
    "rename_registered_model": "edit",
    "set_registered_model_tag": "edit",
    "delete_registered_model_tag": "edit",
    "update_model_version": "edit",
    "set_model_version_tag": "edit",
    "delete_model_version_tag": "edit",
    "delete_registered_model": "delete",
    "delete_model_version": "delete",
    "transition_model_version_stage": "transition:{stage}",
    "set_registered_model_alias": "alias:{alias}",
    "delete_registered_model_alias": "alias:{alias}",
    # Webhooks fire on every model's events and carry secrets: a platform-admin matter.
    "create_webhook": "policy:admin",
    "update_webhook": "policy:admin",
    "delete_webhook": "policy:admin",
    "test_webhook": "policy:admin",
}

#: Methods MLflow implements on top of the governed writes above (prompts are registered
#: models with a tag): each call lands in one of the governed methods, so it is governed
#: and audited there, with the same rights as for models.
DELEGATING: Mapping[str, str] = {
    "create_prompt": "create_registered_model",
    "delete_prompt": "delete_registered_model",
    "set_prompt_tag": "set_registered_model_tag",
    "delete_prompt_tag": "delete_registered_model_tag",
    "create_prompt_version": "create_model_version",
    "delete_prompt_version": "delete_model_version",
    "set_prompt_alias": "set_registered_model_alias",
    "delete_prompt_alias": "delete_registered_model_alias",
    "set_prompt_version_tag": "set_model_version_tag",
    "delete_prompt_version_tag": "delete_model_version_tag",
}

#: Reads: method -> permission. They change nothing in the registry. The ``link_*`` methods
#: read a prompt version and write tags on the *tracking* side (runs, traces, logged
#: models), which the tracking server authorises.
READ_PERMISSIONS: Mapping[str, str] = {
    "get_registered_model": "read",
    "search_registered_models": "read",
    "get_latest_versions": "read",
    "get_model_version": "read",
    "get_model_version_download_uri": "read",
    "search_model_versions": "read",
    "get_model_version_by_alias": "read",
    "search_prompts": "read",
    "get_prompt": "read",
    "get_prompt_version": "read",
    "get_prompt_version_by_alias": "read",
    "search_prompt_versions": "read",
    "link_prompts_to_trace": "read",
    "link_prompt_version_to_model": "read",
    "link_prompt_version_to_run": "read",
    "get_webhook": "read",
    "list_webhooks": "read",
    "list_webhooks_by_event": "read",
}

#: Public attributes that are not registry operations at all.
NOT_OPERATIONS: frozenset[str] = frozenset({"supports_workspaces", "CREATE_MODEL_VERSION_RETRIES"})


def write_permission(method: str, *, stage: str | None = None, alias: str | None = None) -> str:
    """The permission a write method needs for these arguments.

    Args:
        method: The store method name.
        stage: The target stage, for transitions.
        alias: The alias name, for alias moves.

    Returns:
        A permission string of the policy vocabulary, e.g. ``transition:Production``.
    """
    template = WRITE_PERMISSIONS[method]
    if "{" not in template:
        return template
    return template.format(stage=stage, alias=alias)
