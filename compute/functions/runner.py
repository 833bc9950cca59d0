"""The program a warm interpreter runs inside a sandbox; standard library only, passed to ``python -c``.

It imports the function's module from ``$CX_PACKAGE`` once (that import is the cold start), writes
the outcome to ``$CX_CONTROL/load.json`` and a notice on stdout, then reads one JSON request per line on
stdin ``{"id", "event", "deadline_ms"}``,
calls ``handler(event, context)`` with the invocation's output captured at the file-descriptor level in
``$CX_CONTROL/<id>.stdout|stderr`` and writes ``{"ok", "result", "error", "kind", "duration_ms",
"max_rss_mb"}`` to ``$CX_CONTROL/<id>.json``, then the id on stdout to wake the host up.
"""

import importlib
import json
import os
import resource
import sys
import time
import traceback

CONTROL = os.environ["CX_CONTROL"]


class Context:
    """What a handler learns about its invocation (names follow AWS Lambda's context object)."""

    def __init__(self, request):
        self.function_name = os.environ.get("CX_FUNCTION", "")
        self.function_version = os.environ.get("CX_VERSION", "")
        self.memory_limit_in_mb = int(os.environ.get("CX_MEMORY_MB", "0"))
        self.invocation_id = request["id"]
        self._deadline = time.monotonic() + request.get("deadline_ms", 0) / 1000

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _write(name, outcome):
    tmp = os.path.join(CONTROL, name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(outcome, fh)
    os.replace(tmp, os.path.join(CONTROL, name))


def _user_traceback(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != "<string>"]
    return "Traceback (most recent call last):\n" + "".join(
        traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    )


def _reset_peak():
    """Start this invocation's peak-memory count afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_mb():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 2)
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2)


def _call(handler, request):
    outcome = {"ok": False, "result": None, "error": None, "kind": "error"}
    _reset_peak()
    started = time.perf_counter()
    try:
        value = handler(request.get("event"), Context(request))
        outcome["duration_ms"] = (time.perf_counter() - started) * 1000
        outcome["result"] = json.loads(json.dumps(value, allow_nan=False))
        outcome["ok"], outcome["kind"] = True, "ok"
    except MemoryError:
        outcome["kind"] = "memory"
        outcome["error"] = "MemoryError: the handler allocated past its memory limit"
    except (TypeError, ValueError) as exc:
        if "duration_ms" in outcome:
            outcome["error"] = f"the handler's return value is not JSON: {exc}"
        else:
            outcome["error"] = _user_traceback(exc)
    except BaseException as exc:  # user code: every failure becomes the invocation's error
        outcome["error"] = _user_traceback(exc)
    outcome.setdefault("duration_ms", (time.perf_counter() - started) * 1000)
    outcome["max_rss_mb"] = _peak_mb()
    return outcome


def main():
    # Line-buffered, so what a handler printed before it was stopped at its timeout is in its log.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    saved_out, saved_err = os.dup(1), os.dup(2)
    sys.path.insert(0, os.environ["CX_PACKAGE"])
    module_name, _, attr = os.environ["CX_HANDLER"].partition(":")
    # What the module prints while importing must not reach the notice channel on stdout.
    with (
        open(os.path.join(CONTROL, "load.stdout"), "wb") as out,
        open(os.path.join(CONTROL, "load.stderr"), "wb") as err,
    ):
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            handler = getattr(importlib.import_module(module_name), attr)
            loaded = {"ok": True}
        except BaseException as exc:  # a package that cannot load is reported, not hung on
            loaded = {"ok": False, "error": _user_traceback(exc)}
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
    _write("load.json", loaded)
    os.write(saved_out, b"loaded\n")
    if not loaded["ok"]:
        return
    for line in sys.stdin:
        try:
            request = json.loads(line)
            call_id = str(request["id"])
        except (ValueError, KeyError, TypeError):
            continue
        with (
            open(os.path.join(CONTROL, call_id + ".stdout"), "wb") as out,
            open(os.path.join(CONTROL, call_id + ".stderr"), "wb") as err,
        ):
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                outcome = _call(handler, request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
        _write(call_id + ".json", outcome)
        try:
            os.write(saved_out, (call_id + "\n").encode())
        except OSError:
            pass


if __name__ == "__main__":
    main()
