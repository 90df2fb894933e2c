"""StagingTable against a dict of sets: appends in any order, read back ascending; removes and drops."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.index.staging import StagingTable

TERMS = ["a", "b", "c", "d"]
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 60), st.sets(st.sampled_from(TERMS), max_size=4)),
        st.tuples(st.just("remove"), st.integers(1, 60), st.sampled_from(TERMS)),
        st.tuples(st.just("drop"), st.just(0), st.sampled_from(TERMS)),
        st.tuples(st.just("get"), st.just(0), st.sampled_from(TERMS)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops_st)
def test_staging_table_is_a_dict_of_sets(ops: list[tuple]) -> None:
    table, model = StagingTable(), {t: set() for t in TERMS}
    for op, x, arg in ops:
        if op == "add":
            fresh = {t for t in arg if x not in model[t]}  # the caller never adds a (term, id) twice
            table.add_all(fresh, x)
            for t in fresh:
                model[t].add(x)
        elif op == "remove":
            assert table.remove(arg, x) == (x in model[arg])
            model[arg].discard(x)
        elif op == "drop":
            assert table.drop(arg) == len(model[arg])
            model[arg] = set()
        else:
            got = table.get(arg)
            assert (list(got) if got is not None else []) == sorted(model[arg])
        assert table.postings_count() == sum(map(len, model.values()))
    for t in TERMS:
        got = table.get(t)
        assert (list(got) if got is not None else []) == sorted(model[t])
    assert set(table.terms()) == {t for t, v in model.items() if v}


def test_a_read_sorts_only_what_arrived_out_of_order() -> None:
    table = StagingTable()
    for x in (5, 9, 7, 1, 12):
        table.add_all(["w"], x)
    table.add_all(["z"], 3)
    assert list(table.get("w") or []) == [1, 5, 7, 9, 12]
    table.add_all(["w"], 4)  # below the last again: sorted at the next read
    assert list(table.get("w") or []) == [1, 4, 5, 7, 9, 12]
    assert table.remove("w", 4) and not table.remove("w", 4)
    assert list(table.get("w") or []) == [1, 5, 7, 9, 12]
