"""A governance server killed with SIGKILL while its clients' writes are in flight.

Four writer threads drive a two-worker ``mlflow server --app-name governance`` on
PostgreSQL. Once they have had a set number of answers, the server's whole process group
is killed with SIGKILL, with requests still in flight; PostgreSQL rolls back whatever
transactions the dead workers held. A new server then starts on the same database and
must serve writes, and the database must hold every write a client saw succeed (with its
audit row), and nothing without its row: a write whose client got no answer may be there
or not, but never half.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tests.databases import SERVERS
from tests.faults.invariants import NO_RESPONSE, OK, assert_nothing_lost
from tests.faults.load import Load
from tests.faults.servers import MODELS, faults_server, register_once, writer_credentials
from tests.server.conftest import postgres_or_skip

pytestmark = [pytest.mark.soak, pytest.mark.slow, pytest.mark.postgres]

#: Answers the clients get before the kill: enough that every kind of write has run.
ANSWERS_BEFORE_KILL = 60
#: Upper bound for the clients to get there.
LOAD_TIMEOUT = 300.0


@pytest.fixture
def postgres_db() -> Iterator[str]:
    postgres_or_skip()
    with SERVERS["postgresql"].database("faults_kill") as url:
        yield url


def test_sigkill_mid_load_loses_nothing(postgres_db: str, tmp_path_factory) -> None:
    began = time.monotonic()
    workdir = tmp_path_factory.mktemp("killed")
    auth_db = f"sqlite:///{workdir / 'auth.db'}"
    enough = threading.Event()

    def count(load: Load) -> None:
        if load.count() >= ANSWERS_BEFORE_KILL:
            enough.set()

    with faults_server(workdir, registry_db=postgres_db, auth_db=auth_db, first=True) as gov:
        load = Load(gov.url, writer_credentials(), MODELS, on_answer=count).start()
        try:
            assert enough.wait(LOAD_TIMEOUT), f"{load.count()} answers in {LOAD_TIMEOUT:.0f} s"
            # Clients start nothing new from here; what they sent is still in flight.
            load.stopping.set()
            os.killpg(gov.server.pid, signal.SIGKILL)
            load.phase = "killed"
        finally:
            load.stop()
    seen = load.seen
    in_flight = [s for s in seen if s.outcome.result == NO_RESPONSE]
    assert in_flight, "no request was in flight when the server was killed"
    answered = [s for s in seen if s.status is not None]
    # A deadlock may be answered with a retryable 503; a crash (500) never.
    crashes = [
        s
        for s in answered
        if s.status is not None
        and s.status >= 500
        and (s.status, s.outcome.result) != (503, "TEMPORARILY_UNAVAILABLE")
    ]
    assert not crashes, [(s.outcome, s.status, s.body[:300]) for s in crashes]

    # A new server on the same database serves writes at once.
    with faults_server(
        tmp_path_factory.mktemp("restarted"), registry_db=postgres_db, auth_db=auth_db, first=False
    ) as again:
        response = register_once(again)
        assert response.status_code == 200, response.text

    checked = assert_nothing_lost(postgres_db, load.outcomes)
    assert checked["outcomes"].get(OK, 0) >= ANSWERS_BEFORE_KILL // 2, checked
    print(
        f"\nSIGKILL mid-load: {len(seen)} requests, {len(in_flight)} in flight at the kill, "
        f"{checked}; {time.monotonic() - began:.1f} s"
    )
