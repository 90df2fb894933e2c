from hypothesis import given, settings
from hypothesis import strategies as st

from node.ids import MURMUR_EPOCH_MS, SEQ_MAX, SnowflakeGenerator, compose, decompose

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
