"""The program that runs user code inside a sandbox; standard library only, passed to ``python -c``.

Two modes, one way of running a cell:
  ``once``   run ``$CX_CONTROL/main.py`` (or ``main.sh`` through ``/bin/sh``) with the job's stdout and
             stderr, write the cell's outcome to ``$CX_CONTROL/result.json``;
  ``serve``  a session kernel: read one JSON request per line on stdin ``{"id", "code", "timeout"}``
             (and optionally ``"inputs"``, which replaces the session's ``inputs`` variable),
             run it in the namespace the previous cells left, capture its output at the file-descriptor
             level (so child processes are captured too) in ``$CX_CONTROL/<id>.stdout|stderr`` and
             write the outcome to ``$CX_CONTROL/<id>.json``.
The outcome: ``{"ok", "result", "error", "usage"}``. A cell's result is its last expression's value,
or the top-level ``result`` variable it assigns; it must be JSON.
"""

import ast
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

CONTROL = os.environ.get("CX_CONTROL", "/scratch/.cxmpute")


class CellTimeout(BaseException):
    """A BaseException so user code catching Exception cannot swallow its own timeout."""


def _on_alarm(signum, frame):
    raise CellTimeout()


def _usage(started):
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_seconds": round(time.monotonic() - started, 4),
        "cpu_seconds": round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 4),
        "max_rss_mb": round(max(own.ru_maxrss, kids.ru_maxrss) / 1024, 2),
    }


def _user_traceback(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<cell>"]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "Traceback (most recent call last):\n" + "".join(lines)


def run_cell(code, namespace, timeout):
    started = time.monotonic()
    outcome = {"ok": False, "result": None, "error": None}
    try:
        tree = ast.parse(code, "<cell>")
    except SyntaxError as exc:
        outcome["error"] = f"SyntaxError: {exc.msg} (line {exc.lineno}, column {exc.offset})"
        outcome["usage"] = _usage(started)
        return outcome
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    assigns_result = any(
        isinstance(t, ast.Name) and t.id == "result"
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
    )
    signal.signal(signal.SIGALRM, _on_alarm)
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        exec(compile(tree, "<cell>", "exec"), namespace)
        value = eval(compile(last, "<cell>", "eval"), namespace) if last is not None else None
        if last is None and assigns_result:
            value = namespace.get("result")
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            outcome["result"] = json.loads(json.dumps(value, allow_nan=False))
            outcome["ok"] = True
        except (TypeError, ValueError) as exc:
            outcome["error"] = f"the result is not JSON: {type(value).__name__} ({exc})"
    except CellTimeout:
        outcome["error"] = f"TimeoutError: the cell ran longer than {timeout:g} s"
        outcome["timed_out"] = True
    except SystemExit as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome["ok"] = exc.code in (None, 0)
        if not outcome["ok"]:
            outcome["error"] = f"SystemExit: {exc.code}"
    except BaseException as exc:  # user code: every failure becomes the cell's error
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome["error"] = _user_traceback(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.flush()
    sys.stderr.flush()
    outcome["usage"] = _usage(started)
    return outcome


def _write(name, outcome):
    tmp = os.path.join(CONTROL, name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(outcome, fh)
    os.replace(tmp, os.path.join(CONTROL, name))


def _inputs():
    try:
        with open(os.path.join(CONTROL, "inputs.json")) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def once():
    started = time.monotonic()
    shell = os.path.join(CONTROL, "main.sh")
    if os.path.exists(shell):
        code = subprocess.call(["/bin/sh", shell])
        outcome = {"ok": code == 0, "result": None, "error": None if code == 0 else f"exit status {code}"}
        result_file = os.path.join(CONTROL, "result.user.json")
        if os.path.exists(result_file):
            try:
                with open(result_file) as fh:
                    outcome["result"] = json.load(fh)
            except ValueError as exc:
                outcome.update(ok=False, error=f"the result is not JSON: {exc}")
        outcome["usage"] = _usage(started)
        _write("result.json", outcome)
        sys.exit(code)
    with open(os.path.join(CONTROL, "main.py")) as fh:
        code = fh.read()
    outcome = run_cell(code, {"__name__": "__main__", "inputs": _inputs()}, None)
    _write("result.json", outcome)
    sys.exit(0 if outcome["ok"] else 1)


def serve():
    namespace = {"__name__": "__main__", "inputs": _inputs()}
    saved_out, saved_err = os.dup(1), os.dup(2)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            cell_id, code, timeout = str(request["id"]), request["code"], request.get("timeout")
        except (ValueError, KeyError, TypeError):
            continue
        if "inputs" in request:
            namespace["inputs"] = request["inputs"]
        with (
            open(os.path.join(CONTROL, cell_id + ".stdout"), "wb") as out,
            open(os.path.join(CONTROL, cell_id + ".stderr"), "wb") as err,
        ):
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                outcome = run_cell(code, namespace, timeout)
            finally:
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
        _write(cell_id + ".json", outcome)
        try:
            os.write(saved_out, (cell_id + "\n").encode())  # wakes the host up; the answer is the file
        except OSError:
            pass


if __name__ == "__main__":
    # A write past the file-size limit fails with an error instead of killing the kernel.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.makedirs(CONTROL, exist_ok=True)
    {"once": once, "serve": serve}[sys.argv[1]]()
