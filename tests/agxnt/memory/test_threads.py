"""The Sequential Memory log on the platform database: SQLite by default and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from agxnt.errors import AgentError
from agxnt.memory.threads import EntryIn, ThreadLog


@pytest.fixture
def log(platform_db_url):
    return ThreadLog(platform_db_url)


def test_append_read_window_and_owners(log):
    log.append("0xA", "t", [EntryIn(role="user", content=f"m{i}") for i in range(5)])
    log.append("0xB", "t", [EntryIn(content="other owner")])
    window = log.read("0xA", "t", last=2)
    assert [e.seq for e in window.entries] == [3, 4] and window.total == 5
    assert [e.content for e in log.read("0xA", "t", last=10, before_seq=2).entries] == ["m0", "m1"]
    assert [t.model_dump() for t in log.threads("0xA")] == [{"thread": "t", "count": 5}]
    assert [e.content for e in log.read("0xB", "t").entries] == ["other owner"]


def test_concurrent_appenders_get_distinct_positions(log):
    def append(worker: int) -> None:
        for i in range(5):
            log.append("0xC", "busy", [EntryIn(content=f"{worker}-{i}")])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(append, range(4)))
    entries = log.read("0xC", "busy").entries
    assert [e.seq for e in entries] == list(range(20))
    assert sorted(e.content for e in entries) == sorted(f"{w}-{i}" for w in range(4) for i in range(5))


def test_empty_append_changes_nothing(log):
    with pytest.raises(AgentError):
        log.append("0xD", "t", [EntryIn(content="ok"), EntryIn(content="  ")])
    assert log.read("0xD", "t").total == 0
