"""The provider's inference server on uvicorn for tests that drive it with OpenAI's clients, and a stand-in
for tiktoken's cl100k_base encoding, whose file these machines cannot download."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def serving(models: list, api_key: str | None = None) -> Iterator[str]:
    """The inference server over ``models`` on a free port; yields its OpenAI base URL (``.../v1``)."""
    import uvicorn

    from compute.inference.server import create_app
    from cxmpute.ports import free_port

    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(models, api_key=api_key), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        srv.should_exit = True
        thread.join(10)


@contextmanager
def byte_level_cl100k() -> Iterator[None]:
    """tiktoken's ``cl100k_base`` replaced, for this process, by an encoding whose ids are a text's UTF-8 bytes.

    OpenAI's clients tokenize embedding inputs with cl100k_base, whose vocabulary file tiktoken downloads on
    first use; offline, this stand-in lets client and server share an encoding, so a text sent as ids can be
    checked against the same text sent as is."""
    import tiktoken
    from tiktoken import registry

    encoding = tiktoken.Encoding(
        name="cl100k_base",
        pat_str=r"\s?\S+|\s+",
        mergeable_ranks={bytes([b]): b for b in range(256)},
        special_tokens={},
    )
    before = registry.ENCODINGS.get("cl100k_base")
    registry.ENCODINGS["cl100k_base"] = encoding
    try:
        yield
    finally:
        if before is None:
            registry.ENCODINGS.pop("cl100k_base", None)
        else:
            registry.ENCODINGS["cl100k_base"] = before
