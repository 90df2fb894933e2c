"""The storage mode core (node/storage/mode.py): read-only while any source has a fault, writable once all have
cleared; the free-space floor's hysteresis. A Hypothesis model check against a dumb set of faulty sources."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import Unavailable
from node.storage.mode import RESUME_FACTOR, ReadOnly, StorageMode, free_space_fault


def test_read_only_until_every_source_clears() -> None:
    m = StorageMode("n1")
    m.check()
    assert m.on_fault("wal_write", "disk full", 1.0) is True
    assert m.on_fault("free_space", "10 bytes free", 2.0) is False  # already read-only
    assert m.read_only and m.read_only_since == 1.0 and m.entered_total == 1
    assert m.reason == "disk full; 10 bytes free"
    with pytest.raises(ReadOnly, match="n1 cannot persist writes") as info:
        m.check()
    assert isinstance(info.value, Unavailable) and info.value.status == 503 and info.value.code == "unavailable"
    assert m.on_clear("wal_write", 3.0) is False  # free space still short
    assert m.on_clear("wal_write", 3.5) is False  # clearing twice does nothing
    assert m.on_clear("free_space", 4.0) is True
    assert not m.read_only and m.reason is None and m.read_only_since is None
    m.check()
    m.on_fault("wal_fsync", "EIO", 5.0)
    assert m.entered_total == 2 and m.read_only_since == 5.0


def test_a_new_fault_of_a_source_replaces_its_reason() -> None:
    m = StorageMode()
    m.on_fault("free_space", "100 bytes free", 0.0)
    m.on_fault("free_space", "50 bytes free", 1.0)
    assert m.reason == "50 bytes free" and m.read_only_since == 0.0


def test_free_space_floor_has_hysteresis() -> None:
    floor = 1000
    assert free_space_fault(10, 0, False) is None  # no floor
    assert free_space_fault(1000, floor, False) is None
    assert free_space_fault(999, floor, False) is not None
    resume = int(floor * RESUME_FACTOR)
    assert "resume" in (free_space_fault(resume - 1, floor, True) or "")  # faulted: stays until resume
    assert free_space_fault(resume - 1, floor, False) is None  # not faulted: only the floor counts
    assert free_space_fault(resume, floor, True) is None


SOURCES = ("wal_write", "wal_fsync", "free_space")


@given(st.lists(st.tuples(st.sampled_from(SOURCES), st.booleans()), max_size=40))
def test_mode_matches_a_set_of_faulty_sources(steps: list[tuple[str, bool]]) -> None:
    m = StorageMode()
    faulty: set[str] = set()
    entered = 0
    for t, (source, fault) in enumerate(steps):
        was = bool(faulty)
        if fault:
            faulty.add(source)
            assert m.on_fault(source, f"{source} at {t}", float(t)) == (not was)
            entered += not was
        else:
            had = source in faulty
            faulty.discard(source)
            assert m.on_clear(source, float(t)) == (had and not faulty)
        assert m.read_only == bool(faulty)
        assert set(m.faults) == faulty
        assert m.entered_total == entered
        assert (m.read_only_since is None) == (not faulty)
