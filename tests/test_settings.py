"""The process's settings: read once, read again after a reset, and never put back stale by a reader that began
before the reset (another thread's read racing a test's change of the environment)."""

from __future__ import annotations

import threading

from cxmpute import settings as module


def test_a_read_begun_before_a_reset_does_not_put_back_what_it_read(monkeypatch):
    real = module.Settings
    began, finish = threading.Event(), threading.Event()

    class Slow(real):
        def __init__(self, **values):
            super().__init__(**values)
            began.set()
            finish.wait(10)

    monkeypatch.setenv("CXMPUTE_ALLOW_ANONYMOUS", "false")
    module.reset_settings()
    monkeypatch.setattr(module, "Settings", Slow)
    seen: list[module.Settings] = []
    reader = threading.Thread(target=lambda: seen.append(module.get_settings()))
    reader.start()
    try:
        assert began.wait(10)
        monkeypatch.setattr(module, "Settings", real)
        monkeypatch.delenv("CXMPUTE_ALLOW_ANONYMOUS")
        module.reset_settings()
    finally:
        finish.set()
        reader.join(10)
    assert seen[0].allow_anonymous is False  # that reader sees what it read
    assert module.get_settings().allow_anonymous is True  # everyone after the reset reads the environment again
    module.reset_settings()
