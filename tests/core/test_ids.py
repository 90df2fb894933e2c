import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.ids import (
    CREATED_AHEAD_MS_MAX,
    MURMUR_EPOCH_MS,
    SEQ_MAX,
    TIME_MAX,
    IdOutOfRange,
    SnowflakeGenerator,
    check_created_at,
    compose,
    decompose,
)

START = MURMUR_EPOCH_MS + 10**12


@given(st.lists(st.integers(-5_000, 5_000), min_size=1, max_size=3000), st.integers(0, 8191))
@settings(max_examples=60, deadline=None)
def test_next_id_strictly_increases_even_when_the_clock_steps_back(steps, machine):
    g = SnowflakeGenerator(machine)
    now, last = START, 0
    for s in steps:
        now += s  # the clock may jump forwards or backwards by up to 5 s
        i = g.next_id(now)
        assert i > last
        assert decompose(i)[2] == machine
        last = i


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=3000))
@settings(max_examples=60, deadline=None)
def test_ids_are_unique_across_machines(ops):
    gens = [SnowflakeGenerator(m) for m in (1, 2, 3)]
    now = [START] * 3
    seen: set[int] = set()
    for m, advance in ops:
        now[m] += advance
        i = gens[m].next_id(now[m])
        assert i not in seen
        seen.add(i)


def test_sequence_exhaustion_borrows_the_next_millisecond():
    g = SnowflakeGenerator(7)
    ids = [g.next_id(START) for _ in range(SEQ_MAX + 3)]
    assert ids == sorted(set(ids))
    assert decompose(ids[-1])[0] == START + 1


@given(st.lists(st.integers(MURMUR_EPOCH_MS, MURMUR_EPOCH_MS + 5), min_size=1, max_size=4000))
@settings(max_examples=40, deadline=None)
def test_id_for_past_times_is_unique_and_keeps_the_time(times):
    g = SnowflakeGenerator(3)
    g.next_id(START)
    seen = set()
    for t in times:
        i = g.id_for(t)
        assert i not in seen
        seen.add(i)
        assert decompose(i)[0] >= t


def test_observe_after_restart_never_reissues():
    g = SnowflakeGenerator(5)
    issued = [g.next_id(START) for _ in range(10)]
    g2 = SnowflakeGenerator(5, last_id=issued[-1])
    assert g2.next_id(START - 1000) > issued[-1]


def test_layout_matches_the_contract():
    i = compose(123, 4, 5)
    assert i == (123 << 23) | (4 << 13) | 5
    assert decompose(i) == (123 + MURMUR_EPOCH_MS, 4, 5)


def test_id_for_a_future_time_never_moves_the_clock_of_next_id():
    """Issue 12, finding 3: one client time at the end of the range, then 1,024 more, and next_id still issues
    ids at the node's clock."""
    g = SnowflakeGenerator(4)
    g.next_id(START)
    end = MURMUR_EPOCH_MS + TIME_MAX
    ids = [g.id_for(end)] + [g.id_for(START + 60_000) for _ in range(SEQ_MAX + 1)]
    assert len(set(ids)) == len(ids)
    nxt = g.next_id(START + 1)
    assert decompose(nxt)[0] == START + 1


def test_id_for_at_the_end_of_the_range_runs_out_cleanly():
    g = SnowflakeGenerator(4)
    end = MURMUR_EPOCH_MS + TIME_MAX
    for _ in range(SEQ_MAX + 1):
        g.id_for(end)
    with pytest.raises(IdOutOfRange):
        g.id_for(end)


def test_observe_skips_ids_later_than_the_clock():
    g = SnowflakeGenerator(5)
    future = compose(START + 240_000 - MURMUR_EPOCH_MS, 3, 5)  # made from a created_at four minutes ahead
    past = compose(START - 10 - MURMUR_EPOCH_MS, 7, 5)
    g.observe(future, START)
    g.observe(past, START)
    assert decompose(g.next_id(START - 1000)) == (START - 10, 8, 5)  # past the observed id, not the future one


def test_created_at_is_bounded_to_five_minutes_ahead():
    check_created_at(START + CREATED_AHEAD_MS_MAX, START)
    check_created_at(START - 10**10, START)  # the past is data too
    with pytest.raises(IdOutOfRange, match="5 minutes"):
        check_created_at(START + CREATED_AHEAD_MS_MAX + 1, START)
