"""fleet's unit record on disk (fleetpy.agent.record) and the back-off of failed tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpy.agent.plan import Record
from fleetpy.agent.record import RECORD_FILE, RecordFile
from fleetpy.agent.retry import BACKOFF_MAX_S, BACKOFF_MIN_S, Failures
from fleetpy.model.types import TargetState

H1, H2 = "1" * 40, "2" * 40
LOADED, LAUNCHED = TargetState.LOADED, TargetState.LAUNCHED


def test_record_round_trip_survives_a_new_reader(tmp_path: Path) -> None:
    record = {"a.service": Record(H1, LAUNCHED), "db.service": Record(H2, LOADED)}
    RecordFile(tmp_path).save(record)
    assert RecordFile(tmp_path).load() == record
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_FILE]  # no temporary left


def test_record_save_replaces_the_whole_record(tmp_path: Path) -> None:
    RecordFile(tmp_path).save({"a.service": Record(H1, LAUNCHED)})
    RecordFile(tmp_path).save({"b.service": Record(H1, LOADED)})
    assert RecordFile(tmp_path).load() == {"b.service": Record(H1, LOADED)}


def test_missing_record_is_empty(tmp_path: Path) -> None:
    assert RecordFile(tmp_path / "nowhere").load() == {}


def test_save_creates_the_state_dir(tmp_path: Path) -> None:
    RecordFile(tmp_path / "run" / "fleet").save({"a.service": Record(H1, LOADED)})
    assert RecordFile(tmp_path / "run" / "fleet").load() == {"a.service": Record(H1, LOADED)}


def test_unreadable_record_is_empty_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for text in ["not json", '{"units": []}', '{"units": {"a.service": {"state": "inactive",'
                 ' "hash": "x"}}}', '{"units": {"a.service": {"hash": 3, "state": "loaded"}}}']:
        (tmp_path / RECORD_FILE).write_text(text)
        caplog.clear()
        assert RecordFile(tmp_path).load() == {}, text
        assert "cannot read fleet's unit record" in caplog.text


def test_backoff_doubles_up_to_the_maximum() -> None:
    failures = Failures()
    key = (H1, "loaded")
    delays = [failures.failed("r.service", key, "stop: refused", 0.0, retry=True).delay
              for _ in range(10)]
    assert delays[:3] == [BACKOFF_MIN_S, 2 * BACKOFF_MIN_S, 4 * BACKOFF_MIN_S]
    assert delays[-1] == BACKOFF_MAX_S and max(delays) == BACKOFF_MAX_S


def test_held_until_the_retry_time() -> None:
    failures = Failures()
    failures.failed("r.service", None, "unload: refused", 10.0, retry=True)
    assert failures.holding(10.5) == {"r.service"}
    assert failures.holding(11.0) == set()
    assert failures.next_retry() == 11.0
    assert failures.error("r.service") == "unload: refused"
    failures.succeeded("r.service")
    assert failures.error("r.service") == "" and failures.next_retry() is None


def test_failed_start_is_kept_but_not_retried() -> None:
    failures = Failures()
    failures.failed("a.service", (H1, "launched"), "start: bad setting", 0.0, retry=False)
    assert failures.holding(0.0) == set() and failures.next_retry() is None
    assert failures.error("a.service") == "start: bad setting"


def test_a_new_desired_state_drops_the_failure_and_its_backoff() -> None:
    failures = Failures()
    for _ in range(3):
        failures.failed("r.service", (H1, "loaded"), "stop: refused", 0.0, retry=True)
    failures.failed("gone.service", None, "unload: refused", 0.0, retry=True)
    stale = failures.forget_stale({"r.service": (H1, "launched")})
    assert stale == ["r.service"]
    assert failures.error("r.service") == "" and failures.error("gone.service") != ""
    again = failures.failed("r.service", (H1, "launched"), "stop: refused", 0.0, retry=True)
    assert again.delay == BACKOFF_MIN_S
