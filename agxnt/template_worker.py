"""The template renderer's process: renders sandboxed Jinja templates, one JSON request per line on stdin,
one JSON answer per line on stdout.

It runs as a script (``python -I agxnt/template_worker.py [UID GID]``) so that it imports Jinja and the
standard library only, then becomes UID:GID when given. Templates are untrusted: the parent kills this
process when a render outlives its time cap, a memory limit turns a giant allocation into an error, and the
output is counted while it is generated, so an oversized result is refused before it is ever built.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import sys

import jinja2
from jinja2.sandbox import SandboxedEnvironment

PR_SET_PDEATHSIG = 1
MESSAGE_CHARS = 500
# What Jinja and its filters import lazily, loaded before the worker drops to a user that may not be able
# to read the interpreter's files; the warm-up render compiles the paths imports do not reach.
LAZY_IMPORTS = (
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.utf_16",
    "encodings.utf_32",
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.idna",
    "pprint",
    "textwrap",
)
WARM_UP = """{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}
{{ 'a\\n\\u00e9' }}{{ ns.n }}{{ [1, 2] | join(',') }}{{ {'a': 1} | pprint }}{{ ('w ' * 50) | wordwrap(20) }}
{{ 'x' | tojson }}{{ 'a b' | urlencode }}{{ '{} {}'.format(1, 2) }}{{ '%s' % 1 }}{{ lipsum(1) | length > 0 }}
{{ [3, 1] | sort | first }}{{ 'Ab' | lower | title | center(4) | trim }}{{ 1.5 | round | int }}{{ cycler(1, 2).next() }}"""  # noqa: E501


def render(env: SandboxedEnvironment, request: dict) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = request["max_memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        parts: list[str] = []
        size = 0
        for chunk in env.from_string(request["template"]).generate(**request["variables"]):
            size += len(chunk)
            if size > request["max_chars"]:
                return {"error": "too_long"}
            parts.append(chunk)
        return {"text": "".join(parts)}
    except MemoryError:
        return {"error": "memory"}
    except jinja2.UndefinedError as exc:
        return {"error": "undefined", "message": str(exc.message)[:MESSAGE_CHARS]}
    except jinja2.TemplateError as exc:
        return {"error": "template", "message": str(exc)[:MESSAGE_CHARS]}
    except Exception as exc:  # the template's own failure (1/0, a recursion too deep, ...), not the renderer's
        return {"error": "template", "message": f"{type(exc).__name__}: {exc}"[:MESSAGE_CHARS]}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``:``gid`` with no supplementary groups; root cannot be regained afterwards."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() != uid or os.getegid() != gid:
        raise SystemExit("could not drop privileges")


def main() -> None:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    env.from_string(WARM_UP).render()
    if len(sys.argv) == 3:
        drop_privileges(int(sys.argv[1]), int(sys.argv[2]))
    # Dies with the process that started it, even in the middle of a runaway render. (Set after the
    # identity change, which clears it.)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            answer = json.dumps(render(env, json.loads(line)))
        except MemoryError:
            answer = json.dumps({"error": "memory"})
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
