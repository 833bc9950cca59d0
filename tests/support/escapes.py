"""Escape attempts: Python a job runs to try each way out, and the check that every one was refused."""

from __future__ import annotations


def attempts(snippets: dict[str, str]) -> str:
    """Python that tries each snippet and returns, per name, what it got or the error that stopped it. ``ok``
    turns a raw syscall's -1 into the error it set."""
    lines = [
        "import ctypes, errno, os, socket",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "def ok(rc):",
        "    if rc < 0:",
        "        err = ctypes.get_errno()",
        "        raise OSError(err, errno.errorcode.get(err, str(err)))",
        "    return 'succeeded'",
        "out = {}",
    ]
    for name, snippet in snippets.items():
        denied = "'DENIED ' + (errno.errorcode.get(getattr(e, 'errno', None) or 0) or type(e).__name__)"
        lines += [
            "try:",
            f"    out[{name!r}] = repr({snippet})[:300]",
            "except BaseException as e:",
            f"    out[{name!r}] = {denied}",
        ]
    return "\n".join(lines) + "\nout"


def assert_all_denied(result, secret: str | None = None) -> None:
    assert result.status == "ok", result
    for name, outcome in result.result.items():
        assert outcome.startswith("DENIED"), f"{name}: {outcome}"
    if secret:
        assert secret not in result.stdout + result.stderr + repr(result.result)
