"""The shell's database helpers: migrations run once, even when many threads ask at once."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

from cxmpute.db import get_engine, migrate


def test_concurrent_first_migrations_run_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    errors: list[BaseException] = []

    def go() -> None:
        try:
            migrate(url)
        except BaseException as exc:  # noqa: BLE001  (collected for the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tables = set(inspect(get_engine(url)).get_table_names())
    assert {"workflows", "alembic_version"} <= tables
