"""The damage log: each object reported once, heard by the listener as it happens."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from repofs.damage import Damage, DamageLog
from repofs.errors import IntegrityError


def test_report_names_the_object_and_what_was_left_out() -> None:
    heard: list[Damage] = []
    log = DamageLog(heard.append)
    d = log.report(IntegrityError("snapshot", "ab" * 32, "truncated header"), "left out")
    assert heard == [d]
    assert d.line() == (f"snapshot {'ab' * 32} is corrupt or tampered: truncated header "
                        "(left out)")
    assert bool(log) and len(log) == 1 and list(log) == [d]


def test_an_empty_log_is_false() -> None:
    assert not DamageLog()
    assert list(DamageLog()) == []


@given(st.lists(st.tuples(st.sampled_from(["pack", "tree", "snapshot"]),
                          st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]))))
def test_each_object_and_fault_is_reported_once_in_order(faults: list[tuple[str, str, str]]
                                                         ) -> None:
    heard: list[Damage] = []
    log = DamageLog(heard.append)
    for kind, oid, detail in faults:
        log.report(IntegrityError(kind, oid, detail), "left out")
    want = list(dict.fromkeys(faults))
    assert [(d.kind, d.object_id, d.detail) for d in heard] == want
    assert [(d.kind, d.object_id, d.detail) for d in log] == want


def test_threads_report_one_object_once() -> None:
    heard: list[Damage] = []
    log = DamageLog(heard.append)
    err = IntegrityError("chunk", "cd" * 32, "content does not match its id")
    threads = [threading.Thread(target=lambda: [log.report(err, "file skipped")
                                                for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(heard) == 1 and len(log) == 1


def test_an_unreadable_object_is_not_called_tampered() -> None:
    from repofs.errors import Unreadable

    heard: list[Damage] = []
    err = Unreadable("pack", "ef" * 32, "Input/output error")
    assert isinstance(err, IntegrityError)
    DamageLog(heard.append).report(err, "2 files not restored")
    assert heard[0].line() == (f"pack {'ef' * 32} could not be read: Input/output error "
                               "(2 files not restored)")
