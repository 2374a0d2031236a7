"""The approval flow in a real browser: headless Chromium driven by Playwright.

carol tries to set ``@champion`` in MLflow's own model-version page and reads our refusal
there; dave and erin approve on ``/governance/``; the alias then shows in MLflow's UI.
Logging in is basic auth, given to each browser context as HTTP credentials.

The browser is Debian's ``/usr/bin/chromium`` (``make test`` installs it); Playwright never
downloads one. Screenshots go to the test's temporary directory; with
``MLFLOW_GOVERNANCE_UPDATE_DOCS=1`` the page's screenshot also refreshes
``docs/governance-page.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import GovServer, password_of, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-sqlite")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: A metric as float arithmetic leaves it; the page shows 0.95, the title the exact value.
NOISY_METRIC = 0.9500000000000001
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "governance-page.png"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def gov(sqlite_server: GovServer) -> GovServer:
    return sqlite_server


def page_as(browser: Any, user: str, width: int = 1280, height: int = 800) -> Any:
    """A page in a fresh browser context logged in as ``user`` (HTTP basic credentials)."""
    context = browser.new_context(
        http_credentials={"username": user, "password": password_of(user)},
        viewport={"width": width, "height": height},
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def _version_with_run(gov: GovServer, name: str) -> int:
    """A version whose source run logged metrics, registered by alice."""
    with gov.as_user("alice") as client:
        experiment = client.create_experiment(f"{name}-training")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", 0.973)
        client.log_metric(run.info.run_id, "latency_ms", 41.0)
        client.log_metric(run.info.run_id, "recall", NOISY_METRIC)
        client.set_terminated(run.info.run_id)
        client.create_registered_model(name)
        mv = client.create_model_version(
            name,
            f"s3://bucket/{name}/model",
            run_id=run.info.run_id,
            tags={"validation_status": "passed"},
        )
    return int(mv.version)


def test_champion_refused_in_mlflow_ui_then_approved_on_the_governance_page(
    gov: GovServer, browser: Any, tmp_path: Path
) -> None:
    name = "browser-fraud"
    version = _version_with_run(gov, name)
    model_page = f"{gov.url}/#/models/{name}/versions/{version}"

    # carol, in MLflow's own UI: add the alias; the gate refuses and opens a request.
    carol = page_as(browser, "carol", 1400, 900)
    carol.goto(model_page)
    carol.get_by_role("button", name="Add", exact=True).first.click()
    dialog = carol.get_by_role("dialog")
    dialog.get_by_role("combobox").fill("champion")
    carol.keyboard.press("Enter")
    dialog.get_by_role("button", name="Save aliases").click()
    refusal = dialog.get_by_text(re.compile(r"Refused: carol may not alias:champion"))
    refusal.wait_for()
    message = refusal.inner_text()
    assert "gate production" in message
    request_id = int(re.search(r"Request #(\d+)", message).group(1))  # type: ignore[union-attr]
    carol.screenshot(path=str(tmp_path / "1-mlflow-ui-refusal.png"))

    # dave, on the governance page: approve from the list.
    dave = page_as(browser, "dave")
    dave.goto(f"{gov.url}/governance/")
    row = dave.locator(f"#request-{request_id}")
    assert "@champion" in row.inner_text() and "carol" in row.inner_text()
    # One comment box for both buttons.
    assert row.locator("input[name=comment]").count() == 1
    assert row.locator("form.vote button").all_inner_texts() == ["Approve", "Reject"]
    row.locator("form.vote input[name=comment]").fill("accuracy 0.973 checked")
    row.locator("form.vote button.approve").click()
    flash = dave.locator(".flash.ok")
    flash.wait_for()
    # Back on the list, where the row says what the gate still needs, the message does not.
    assert flash.inner_text() == f"Approved request #{request_id}."
    assert "1 so far" in dave.locator(f"#request-{request_id}").inner_text()
    dave.screenshot(path=str(tmp_path / "2-governance-after-first-approval.png"), full_page=True)
    if os.environ.get("MLFLOW_GOVERNANCE_UPDATE_DOCS") == "1":
        shutil.copy(tmp_path / "2-governance-after-first-approval.png", DOCS_SHOT)

    # erin, on the request's own page: the version, its run's metrics, the tags and
    # dave's approval, then the last approval that applies the move.
    erin = page_as(browser, "erin")
    erin.goto(f"{gov.url}/governance/requests/{request_id}")
    body = erin.locator("main").inner_text()
    for expected in (
        "accuracy",
        "0.973",
        "latency_ms",
        "validation_status",
        "passed",
        "dave",
        "accuracy 0.973 checked",
        "1 so far",
    ):
        assert expected in body, expected
    assert erin.locator("a", has_text=re.compile("^[0-9a-f]{32}$")).count() == 1  # source run
    # Metrics rounded for reading, the exact value kept in the title.
    recall = erin.locator("td.metric", has_text="0.95")
    assert recall.inner_text() == "0.95"
    assert recall.get_attribute("title") == repr(NOISY_METRIC)
    assert repr(NOISY_METRIC) not in body
    erin.screenshot(path=str(tmp_path / "3-request-detail.png"), full_page=True)
    assert erin.locator("input[name=comment]").count() == 1
    erin.locator("form.vote input[name=comment]").fill("ship it")
    erin.locator("form.vote button.approve").click()
    erin.locator(".flash.ok").wait_for()
    # The outcome is said once: the message confirms the vote, the page says how it ended.
    assert erin.locator(".flash.ok").inner_text() == f"Approved request #{request_id}."
    outcome = erin.locator("p.outcome").inner_text()
    assert outcome.startswith("Applied by erin at ") and outcome.endswith(": approvals satisfied.")
    main = erin.locator("main").inner_text()
    assert main.lower().count("applied by erin") == 1, main
    assert main.count("approvals satisfied") == 1, main
    erin.screenshot(path=str(tmp_path / "4-applied.png"), full_page=True)

    # Back in MLflow's UI (a fresh page, not the one with the dialog), the alias is there.
    carol.context.close()
    carol = page_as(browser, "carol", 1400, 900)
    carol.goto(model_page)
    carol.get_by_text("Creator").first.wait_for()
    alias = carol.get_by_text(re.compile(r"^@\s*champion$"))
    alias.first.wait_for()
    assert carol.get_by_role("dialog").count() == 0
    carol.screenshot(path=str(tmp_path / "5-mlflow-ui-alias.png"))
    with gov.as_user("oscar") as client:
        assert client.get_model_version_by_alias(name, "champion").version == str(version)

    # The request page leads to the model's audit trail, which shows who did what.
    dave.goto(f"{gov.url}/governance/requests/{request_id}")
    dave.locator("a.audit-trail").click()
    dave.wait_for_url(re.compile(r"/governance/model\?name="))
    trail = dave.locator("main").inner_text()
    assert "set_registered_model_alias" in trail and "erin" in trail
    dave.screenshot(path=str(tmp_path / "6-model-audit-trail.png"), full_page=True)


def test_a_hostile_model_name_is_inert_in_the_browser(
    gov: GovServer, browser: Any, tmp_path: Path
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    version = register(gov, "alice", hostile)
    gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={
            "model": hostile,
            "version": version,
            "target": "@champion",
            "comment": "<b onmouseover=alert(2)>bold</b>",
        },
    )
    dialogs: list[str] = []
    page = page_as(browser, "dave")
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for url in (f"{gov.url}/governance/?state=all", f"{gov.url}/governance/model"):
        page.goto(url if "model" not in url else url + "?name=" + hostile.replace(" ", "%20"))
        page.wait_for_load_state("load")
        assert page.locator("img").count() == 0
        assert page.locator("b[onmouseover]").count() == 0
        assert hostile in page.locator("main").inner_text()
    page.screenshot(path=str(tmp_path / "hostile-name.png"), full_page=True)
    assert dialogs == []


def test_one_comment_box_serves_reject_and_the_outcome_is_said_once(
    gov: GovServer, browser: Any, tmp_path: Path
) -> None:
    name = "browser-reject"
    version = register(gov, "alice", name)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "@champion"},
    )
    dave = page_as(browser, "dave")
    dave.goto(f"{gov.url}/governance/requests/{created['id']}")
    assert dave.locator("form.vote").count() == 1
    dave.locator("form.vote input[name=comment]").fill("latency too high")
    dave.locator("form.vote button.reject").click()
    dave.locator(".flash.ok").wait_for()
    assert dave.locator(".flash.ok").inner_text() == f"Rejected request #{created['id']}."
    outcome = dave.locator("p.outcome").inner_text()
    assert outcome.startswith("Rejected by dave at ") and outcome.endswith(": latency too high.")
    assert dave.locator("main").inner_text().count("Rejected by dave") == 1
    dave.screenshot(path=str(tmp_path / "rejected.png"), full_page=True)
    after = gov.call("dave", "GET", "/requests/{request_id}", request_id=created["id"])
    assert after["state"] == "rejected"
    assert [(r["approver"], r["comment"]) for r in after["rejections"]] == [
        ("dave", "latency too high")
    ]
    assert after["approvals"] == []

    # From the list, a request that leaves it: the message is the only place saying so.
    reopened = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "@champion"},
    )
    dave.goto(f"{gov.url}/governance/")
    row = dave.locator(f"#request-{reopened['id']}")
    row.locator("form.vote button.reject").click()
    dave.locator(".flash.ok").wait_for()
    assert dave.locator(".flash.ok").inner_text() == (
        f"Rejected request #{reopened['id']}: it is rejected."
    )
    assert dave.locator(f"#request-{reopened['id']}").count() == 0


def test_the_state_filters_cover_every_state(gov: GovServer, browser: Any) -> None:
    name = "browser-filters"
    version = register(gov, "alice", name)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "@champion"},
    )
    gov.call("carol", "POST", "/requests/{request_id}/cancel", request_id=created["id"], json={})
    page = page_as(browser, "oscar")
    page.goto(f"{gov.url}/governance/")
    filters = page.locator("p.filters").locator("a, strong").all_inner_texts()
    assert filters == [
        "pending",
        "approved",
        "applied",
        "rejected",
        "cancelled",
        "expired",
        "superseded",
        "all",
    ]
    assert page.locator(f"#request-{created['id']}").count() == 0
    page.locator("p.filters a", has_text="cancelled").click()
    page.wait_for_url(re.compile(r"state=cancelled"))
    assert page.locator("p.filters strong").inner_text() == "cancelled"
    assert "cancelled" in page.locator(f"#request-{created['id']}").inner_text()
    for state in ("expired", "superseded"):
        page.locator("p.filters a", has_text=state).click()
        page.wait_for_url(re.compile(f"state={state}"))
        assert page.locator("p.filters strong").inner_text() == state
        assert page.locator(f"#request-{created['id']}").count() == 0
