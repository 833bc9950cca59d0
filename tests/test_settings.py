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

    # Other threads of this process read the settings too (the session's run executor, every few ms). With the
    # slow class in place before the reset, none of their reads can complete and be kept between the reset and
    # this test's reader: each one after the reset is slow, and each one before it is refused.
    monkeypatch.setenv("CXMPUTE_ALLOW_ANONYMOUS", "false")
    monkeypatch.setattr(module, "Settings", Slow)
    module.reset_settings()
    reader = threading.Thread(target=module.get_settings)
    reader.start()
    try:
        assert began.wait(10)
        monkeypatch.setattr(module, "Settings", real)
        monkeypatch.delenv("CXMPUTE_ALLOW_ANONYMOUS")
        module.reset_settings()
        finish.set()
        reader.join(10)
        # Everyone after the reset reads the environment again: the reads begun before it were not kept.
        assert module.get_settings().allow_anonymous is True
    finally:
        finish.set()
        reader.join(10)
        monkeypatch.undo()  # the environment first, then the cache: a failure here must not leak into other tests
        module.reset_settings()
