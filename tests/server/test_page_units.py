"""The approval page's formatting, without a server: metrics and the outcome line."""

from __future__ import annotations

import dataclasses

import pytest

from mlflow_governance.server.page import FILTERS, format_metric, outcome_line
from mlflow_governance.workflow.request_rows import RequestView, Target
from mlflow_governance.workflow.tables import STATES


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.9500000000000001, "0.95"),
        (0.1 + 0.2, "0.3"),
        (0.973, "0.973"),
        (0.987654, "0.987654"),
        (41.0, "41"),
        (0.0, "0"),
        (-1.5, "-1.5"),
        (123456.789, "123457"),
        (12345678.9, "12345678.9"),
        (1e-7, "1e-07"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
    ],
)
def test_metrics_are_rounded_for_reading(value: float, shown: str) -> None:
    assert format_metric(value) == shown


def test_the_filters_cover_every_request_state() -> None:
    assert list(FILTERS) == [
        "pending",
        "approved",
        "applied",
        "rejected",
        "cancelled",
        "expired",
        "superseded",
        "all",
    ]
    assert set(STATES) < set(FILTERS)  # a state added to the workflow gets a filter too


BASE = RequestView(
    id=7,
    kind="promotion",
    model="fraud",
    version=3,
    target=Target.parse("@champion"),
    gate="production",
    state="applied",
    requester="carol",
    comment=None,
    archive_existing=False,
    created_at="2026-11-26T06:00:00.000000Z",
    updated_at="2026-11-26T07:00:00.000000Z",
    closed_by="erin",
    closed_reason="approvals satisfied",
    applied_at="2026-11-26T07:00:00.123456Z",
    applied_by="erin",
)


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({}, "Applied by erin at 2026-11-26 07:00:00 UTC: approvals satisfied."),
        (
            {"applied_by": "admin"},
            "Applied by admin at 2026-11-26 07:00:00 UTC, approved by erin: approvals satisfied.",
        ),
        (
            {"state": "rejected", "closed_reason": "latency too high", "applied_at": None},
            "Rejected by erin at 2026-11-26 07:00:00 UTC: latency too high.",
        ),
        (
            {"state": "expired", "closed_by": None, "closed_reason": None, "applied_at": None},
            "Expired at 2026-11-26 07:00:00 UTC.",
        ),
    ],
)
def test_the_outcome_names_each_fact_once(changes: dict[str, object], line: str) -> None:
    assert outcome_line(dataclasses.replace(BASE, **changes)) == line  # type: ignore[arg-type]
