"""The process's recursion limit, kept where a deep document ends in an error rather than a dead process.

Importing the chain's libraries raises Python's recursion limit to 100,000: deep enough for C-recursive code
(the JSON decoder, ``repr``) to overflow a thread's stack and kill the process. Every long-running process
(the API, provider workers) brings it back down once its imports are done.
"""

from __future__ import annotations

import sys

# py-evm's own figure for the 1024 call frames of the EVM; Python 3.11 runs Python-to-Python calls without
# C stack, so this stays far from a thread's stack while C-recursive code is still stopped with an error.
RECURSION_LIMIT = 12 * 1024


def cap_recursion() -> None:
    if sys.getrecursionlimit() > RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
