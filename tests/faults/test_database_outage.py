"""The database gone for 10 s under load: retryable errors, then recovery by itself.

A governance server reaches PostgreSQL through :class:`~tests.faults.proxy.TcpProxy`.
Under client load the proxy is cut (every connection closed mid-conversation, new ones
refused) for 10 s of real time, then restored. While it is down, every answer a client
gets must be retryable (HTTP 503, ``TEMPORARILY_UNAVAILABLE``), never a 500; once it is
back, the same server, not restarted, must serve writes again, and nothing may be lost or
half-done. The outage runs once; each test reads what it recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from tests.databases import SERVERS
from tests.faults.invariants import OK, assert_nothing_lost
from tests.faults.load import Load, Seen
from tests.faults.proxy import proxied
from tests.faults.servers import MODELS, faults_server, writer_credentials
from tests.server.conftest import ADMIN, API, GovServer, postgres_or_skip

pytestmark = [
    pytest.mark.soak,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.xdist_group("faults-outage"),
]

OUTAGE_SECONDS = 10.0
#: Answers before the cut, and successful writes after the restore, that the test waits
#: for; and the upper bound of each wait.
ANSWERS_BEFORE = 20
WRITES_AFTER = 12
WAIT_TIMEOUT = 300.0
RETRYABLE_STATUS = 503
RETRYABLE_CODE = "TEMPORARILY_UNAVAILABLE"

#: Governance and MLflow routes an administrator calls while the database is down.
PROBES: tuple[tuple[str, str, Any], ...] = (
    ("GET", f"{API}/requests", None),
    ("GET", f"{API}/audit?limit=5", None),
    ("GET", f"{API}/history?model={MODELS[0]}", None),
    ("POST", f"{API}/audit/verify", {}),
    ("GET", f"{API}/audit/reconcile", None),
    ("GET", f"/api/2.0/mlflow/registered-models/get?name={MODELS[0]}", None),
    ("GET", f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27{MODELS[0]}%27", None),
)


@dataclass(frozen=True)
class Outage:
    """What the clients and the probes saw, and when."""

    seen: list[Seen]
    probes: list[tuple[str, str, int, str]]
    sockets_cut: int
    cut_at: float
    restored_at: float
    checked: dict[str, Any]
    began: float


def _through(url: str, port: int) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _retryable(seen: Seen) -> bool:
    return seen.status == RETRYABLE_STATUS and seen.outcome.result == RETRYABLE_CODE


def _probe(gov: GovServer) -> list[tuple[str, str, int, str]]:
    answers = []
    for method, path, body in PROBES:
        response = gov.rest(ADMIN, method, path, json=body)
        answers.append((method, path, response.status_code, response.text[:300]))
    return answers


# Session scope: once per worker, whatever order the tests come in (a module fixture is
# set up again when another module's test runs between this module's two). `make soak`
# runs with --dist loadfile, which keeps this module's tests on one worker.
@pytest.fixture(scope="session")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    postgres_or_skip()
    began = time.monotonic()
    before, after = threading.Event(), threading.Event()

    def progress(load: Load) -> None:
        if load.count() >= ANSWERS_BEFORE:
            before.set()
        if load.count(lambda s: s.started == "after" and s.outcome.result == OK) >= WRITES_AFTER:
            after.set()

    workdir = tmp_path_factory.mktemp("outage")
    with SERVERS["postgresql"].database("faults_outage") as postgres_db:
        target = sa.make_url(postgres_db)
        with (
            proxied(target.host or "127.0.0.1", target.port or 5432) as proxy,
            faults_server(
                workdir,
                registry_db=_through(postgres_db, proxy.port),
                auth_db=f"sqlite:///{workdir / 'auth.db'}",
                first=True,
                workers=1,
            ) as gov,
        ):
            load = Load(gov.url, writer_credentials(), MODELS, on_answer=progress).start()
            try:
                assert before.wait(WAIT_TIMEOUT), f"{load.count()} answers before the cut"
                load.phase = "outage"
                cut_at = time.monotonic()
                sockets_cut = proxy.cut()
                probes = _probe(gov)
                # Real time: nothing sets this event, it only bounds the wait.
                left = OUTAGE_SECONDS - (time.monotonic() - cut_at)
                assert not load.stopping.wait(max(0.0, left))
                load.phase = "after"
                proxy.restore()
                restored_at = time.monotonic()
                assert after.wait(WAIT_TIMEOUT), (
                    f"the server served no writes within {WAIT_TIMEOUT:.0f} s of the restore:\n"
                    f"{gov.server.log_tail()}"
                )
            finally:
                load.stop()
        checked = assert_nothing_lost(postgres_db, load.outcomes)
        yield Outage(load.seen, probes, sockets_cut, cut_at, restored_at, checked, began)


def test_writes_get_503_while_the_database_is_down_and_work_after(outage: Outage) -> None:
    seen = outage.seen
    during = [s for s in seen if s.started == s.ended == "outage" and s.status is not None]
    crashes = [s for s in seen if s.status is not None and s.status >= 500 and not _retryable(s)]
    assert not crashes, "\n".join(
        f"{s.outcome.action} {s.outcome.model} ({s.started}->{s.ended}): HTTP {s.status} "
        f"{s.body[:400]}"
        for s in crashes
    )
    assert during, "no client got an answer while the database was down"
    assert all(_retryable(s) for s in during), [(s.status, s.body[:200]) for s in during]
    # The same server, never restarted, wrote again (the fixture waited for it) and the
    # database holds everything that was answered as written (checked there too).
    writes_after = [s.finished for s in seen if s.started == "after" and s.outcome.result == OK]
    assert len(writes_after) >= WRITES_AFTER
    print(
        f"\noutage: {outage.sockets_cut} sockets cut; {len(during)} answers during "
        f"{outage.restored_at - outage.cut_at:.1f} s, all {RETRYABLE_STATUS}; first write "
        f"{min(writes_after) - outage.restored_at:.2f} s after the restore; {outage.checked}; "
        f"{time.monotonic() - outage.began:.1f} s"
    )


def test_every_route_answers_503_while_the_database_is_down(outage: Outage) -> None:
    wrong = [p for p in outage.probes if p[2] != RETRYABLE_STATUS]
    assert not wrong, "\n".join(
        f"{m} {path}: HTTP {status} {body}" for m, path, status, body in wrong
    )
    # Our routes' messages are written for people: no SQL, no database address. (MLflow's
    # own read routes paste the driver's text; that is MLflow's answer, not ours.)
    for _method, path, _status, body in outage.probes:
        if path.startswith(API):
            assert "[SQL" not in body and "127.0.0.1" not in body, body
