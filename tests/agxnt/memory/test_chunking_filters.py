from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agxnt.errors import AgentError
from agxnt.memory.chunking import chunk_text
from agxnt.memory.filters import normalize_filter


def test_short_text_is_one_chunk():
    assert chunk_text("  hello world  ", 100, 10) == ["hello world"]


def test_long_text_chunks_overlap_and_cover_everything():
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(text, 200, 50)
    assert len(chunks) > 1
    assert all(len(c) <= 200 for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        assert a.split()[-1] in b.split()  # the boundary word is carried into the next chunk
    words = {w for c in chunks for w in c.split()}
    assert words == set(text.split())


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=3000), st.integers(50, 400), st.integers(0, 49))
def test_chunks_are_bounded_and_terminate(text, size, overlap):
    chunks = chunk_text(text, size, overlap)
    assert all(len(c) <= size for c in chunks)
    assert len(chunks) <= len(text) + 1


def test_filter_normalisation():
    assert normalize_filter(None) is None
    assert normalize_filter({"a": 1}) == {"a": {"$eq": 1}}
    assert normalize_filter({"a": 1, "b": {"$gt": 2}}) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}
    assert normalize_filter({"$or": [{"a": "x"}]}) == {"a": {"$eq": "x"}}


@pytest.mark.parametrize(
    "bad",
    [
        {"a": {"$regex": "x"}},
        {"$nor": [{"a": 1}]},
        {"a": {"$gt": "x"}},
        {"a": {"$in": []}},
        {"a": [1, 2]},
        {"$and": "a"},
        {"a": {"$eq": 1, "$ne": 2}},
    ],
)
def test_bad_filters_are_named_400s(bad):
    with pytest.raises(AgentError) as err:
        normalize_filter(bad)
    assert err.value.status_code == 400 and err.value.field == "filter"
    assert "invalid filter" in err.value.message
