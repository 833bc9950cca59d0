"""Limits at the API's edge: how deep a JSON body nests, how large a body is, how large an integer is — each
refused with a 4xx naming the field, before authentication and before anything parses the body, and none able
to take the API process down."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import flows
from compute.training.registry import MAX_CHECKPOINT_BYTES
from cxmpute.recursion import RECURSION_LIMIT
from cxmpute.settings import Settings, reset_settings
from flows.spec import load_document
from tests.support.up import UpPlatform
from web import limits

MB = 2**20
# `cxmpute up` here runs on the defaults (start_up passes it no CXMPUTE_ setting of ours).
MAX_BODY = Settings.model_fields["max_body_mb"].default * MB
MAX_DEPTH = Settings.model_fields["max_json_depth"].default
DEEP = b"[" * 100_000 + b"]" * 100_000
JSON = {"Content-Type": "application/json"}

# JSON routes of every kind of access; none of them sees a credential here.
JSON_ROUTES = [
    ("POST", "/v1/chain/rpc"),
    ("POST", "/v1/auth/verify"),
    ("POST", "/v1/workflows/validate"),
    ("POST", "/v1/market/quote"),
    ("POST", "/v1/workflows"),
    ("PUT", "/v1/secrets/TOKEN"),
    ("POST", "/v1/agents/io.template/invoke"),
    ("POST", "/v1/training/ranks/not-a-token/losses"),
]


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


def refused(r: httpx.Response, status: int, field: str) -> bool:
    return r.status_code == status and r.json()["field"] == field


# ---- against the real `cxmpute up`, anonymous use on and off ------------------------------------------------


@pytest.mark.parametrize("method,path", JSON_ROUTES)
def test_a_100000_deep_body_is_refused_and_the_api_lives_on(platform: UpPlatform, method, path):
    r = httpx.request(method, platform.url + path, content=DEEP, headers=JSON, timeout=60)
    assert refused(r, 422, "body"), r.text
    assert "100000 deep" in r.json()["detail"]
    assert platform.alive()
    assert httpx.get(f"{platform.url}/healthz", timeout=10).status_code == 200


def test_the_depth_cap_is_exact_and_counts_only_structure(platform: UpPlatform):
    url, cap = f"{platform.url}/v1/workflows/validate", MAX_DEPTH
    at_cap = httpx.post(url, content=nested(cap), headers=JSON, timeout=60)
    assert at_cap.status_code == 200 and at_cap.json()["valid"] is False, at_cap.text
    assert refused(httpx.post(url, content=nested(cap + 1), headers=JSON, timeout=60), 422, "body")
    # Brackets inside strings are text, not nesting.
    text = json.dumps({"name": "[" * 10_000 + "{" * 10_000}).encode()
    assert httpx.post(url, content=text, headers=JSON, timeout=60).status_code == 200


@pytest.mark.parametrize(
    "disguise",
    [
        pytest.param(lambda deep: b'["\\\\", ' + deep + b"]", id="after-an-escaped-backslash"),
        pytest.param(lambda deep: b'["\\"]", ' + deep + b"]", id="after-a-string-with-an-escaped-quote"),
        pytest.param(lambda deep: deep.decode().encode("utf-16"), id="utf-16"),
        pytest.param(lambda deep: deep.decode().encode("utf-32-le"), id="utf-32"),
        pytest.param(lambda deep: b"\xef\xbb\xbf" + deep, id="byte-order-mark"),
        pytest.param(lambda deep: deep.replace(b"[", b"{", 50_000), id="mixed-brackets"),
        pytest.param(lambda deep: b"[" * 100_000, id="never-closed"),
    ],
)
def test_deep_nesting_is_found_however_it_is_dressed(platform: UpPlatform, disguise):
    r = httpx.post(f"{platform.url}/v1/chain/rpc", content=disguise(DEEP), headers=JSON, timeout=60)
    assert refused(r, 422, "body"), r.text
    assert platform.alive()


def test_a_deep_body_with_no_json_content_type_is_refused_too(platform: UpPlatform):
    r = httpx.post(
        f"{platform.url}/v1/workflows/validate", content=DEEP, headers={"Content-Type": "text/plain"}, timeout=60
    )
    assert refused(r, 422, "body"), r.text


def _raw(platform: UpPlatform, head: str, chunks: list[bytes] = ()) -> tuple[int, dict]:
    """Send a request line and headers, then ``chunks`` as they are, and read the answer — without ever
    finishing the body the headers announce: a server that waited for it would never answer."""
    address = urlsplit(platform.url)
    with socket.create_connection((address.hostname, address.port), timeout=120) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            sock.sendall(chunk)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        length = 0
        while line := reader.readline().strip():
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(reader.read(length))


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(platform: UpPlatform):
    status, body = _raw(
        platform,
        textwrap.dedent(f"""\
        POST /v1/workflows/validate HTTP/1.1
        Host: api
        Content-Type: application/json
        Content-Length: {10**12}
        """),
    )
    assert status == 413 and body["field"] == "body"


def test_a_chunked_body_is_refused_once_it_passes_the_cap(platform: UpPlatform):
    chunk = b"%x\r\n" % MB + b" " * MB + b"\r\n"
    status, body = _raw(
        platform,
        textwrap.dedent("""\
        POST /v1/chain/rpc HTTP/1.1
        Host: api
        Content-Type: application/json
        Transfer-Encoding: chunked
        """),
        [chunk] * (MAX_BODY // MB + 1),
    )
    assert status == 413 and body["field"] == "body"


def test_a_checkpoint_upload_without_a_live_rank_token_is_refused_before_its_body(platform: UpPlatform):
    # Announces a checkpoint within its limit and sends a little of it: only a live rank's token makes the
    # platform read (and buffer) the rest.
    status, body = _raw(
        platform,
        textwrap.dedent(f"""\
        POST /v1/training/ranks/not-a-token/checkpoints?step=1 HTTP/1.1
        Host: api
        Content-Length: {MAX_CHECKPOINT_BYTES}
        """),
        [b"\0" * MB],
    )
    assert status == 404 and body["field"] == "token"


def test_a_storage_upload_streams_past_the_json_cap(platform: UpPlatform):
    auth = {} if platform.anonymous else platform.new_user()[1]
    size = MAX_BODY + 1
    r = httpx.post(
        f"{platform.url}/v1/storage/files", params={"name": "big.bin"}, content=b"\0" * size, headers=auth, timeout=300
    )
    assert r.status_code == 201 and r.json()["file"]["size"] == size, r.text


@pytest.mark.parametrize("value", [str(2**63), str(2**64), str(-(2**63) - 1), str(10**400), "9" * 5000])
def test_an_integer_past_64_bits_in_a_query_is_refused_naming_it(platform: UpPlatform, value):
    for path, name in [
        ("/v1/market/provisions", "offset"),
        ("/v1/workflows/some-id", "version"),
        ("/v1/runs", "offset"),
    ]:
        r = httpx.get(platform.url + path, params={name: value}, timeout=60)
        assert refused(r, 422, name), f"{path}: {r.text}"


def test_the_largest_64_bit_integer_is_still_accepted(platform: UpPlatform):
    r = httpx.get(f"{platform.url}/v1/market/provisions", params={"offset": str(2**63 - 1)}, timeout=60)
    assert r.status_code == 200 and r.json() == [], r.text


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "vm", "price_max_gwei": 100, "duration_s": 2**64}, "duration_s"),
        ({"kind": "vm", "price_max_gwei": 100, "resources": {"cpu": 1, "memory_mb": 2**70}}, "resources.memory_mb"),
        ([{"a": [0, -(2**63) - 1]}], "0.a.1"),
    ],
)
def test_an_integer_past_64_bits_in_a_body_is_refused_naming_it(platform: UpPlatform, body, field):
    r = httpx.post(f"{platform.url}/v1/market/quote", content=json.dumps(body), headers=JSON, timeout=60)
    assert refused(r, 422, field), r.text


def test_an_integer_sent_as_text_is_refused_where_it_is_used(platform: UpPlatform):
    """Validation reads "18446744073709551616" as an integer; the database cannot hold it."""
    auth = {} if platform.anonymous else platform.new_user()[1]
    document = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")
    saved = httpx.post(f"{platform.url}/v1/workflows", json=document, headers=auth, timeout=60)
    assert saved.status_code == 201, saved.text
    r = httpx.post(
        f"{platform.url}/v1/workflows/{saved.json()['id']}/runs", json={"version": str(2**64)}, headers=auth, timeout=60
    )
    assert refused(r, 422, "version"), r.text


# ---- the app itself ------------------------------------------------------------------------------------------


def test_the_app_brings_the_recursion_limit_back_down():
    from web.app import create_app

    before = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)  # what importing the chain's libraries leaves behind
        create_app()
        assert sys.getrecursionlimit() == RECURSION_LIMIT
        import eth  # noqa: F401  (py-evm, imported lazily with the embedded chain, raises it only to its own figure)

        assert sys.getrecursionlimit() == RECURSION_LIMIT
    finally:
        sys.setrecursionlimit(before)


@pytest.fixture
def one_mb_cap(monkeypatch):
    monkeypatch.setenv("CXMPUTE_MAX_BODY_MB", "1")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_each_route_gets_the_limit_its_body_needs(one_mb_cap):
    """A function package is as large as CXMPUTE_FUNCTION_MAX_PACKAGE_MB allows, base64 in JSON, whatever
    the cap for other bodies."""
    from web.app import create_app

    client = TestClient(create_app())
    body = json.dumps({"package_base64": "UEsFBg" + "A" * (2 * MB)})
    deploy = client.put("/v1/functions/f", content=body, headers=JSON)
    assert deploy.status_code == 422 and deploy.json()["field"] == "package_base64", deploy.text
    assert refused(client.post("/v1/workflows/validate", content=body, headers=JSON), 413, "body")


def test_a_deep_document_past_the_edge_cannot_crash_the_process(tmp_path):
    """Whatever reaches a recursive parser unchecked (a cap raised too high, a document read some other way)
    ends in an error, on the event loop's thread and on a worker thread alike, never in a dead process."""
    script = textwrap.dedent("""
        import json, threading
        from web.app import create_app
        create_app()
        outcomes = []
        def parse():
            try:
                json.loads("[" * 100_000 + "]" * 100_000)
            except RecursionError:
                outcomes.append("refused")
        parse()
        worker = threading.Thread(target=parse)
        worker.start()
        worker.join()
        print(" ".join(outcomes))
    """)
    env = {"CXMPUTE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(limits.__file__).parents[1],
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split() == ["refused", "refused"]


def _reference_depth(body: bytes) -> tuple[int, bool]:
    """Depth a JSON decoder reaches, character by character; False when it meets a backslash outside a string
    (a syntax error there: the decoder reads nothing after it)."""
    depth = peak = 0
    in_string = escaped = False
    for c in body:
        if in_string:
            if escaped:
                escaped = False
            elif c == ord("\\"):
                escaped = True
            elif c == ord('"'):
                in_string = False
        elif c == ord("\\"):
            return peak, False
        elif c == ord('"'):
            in_string = True
        elif c in b"[{":
            depth += 1
            peak = max(peak, depth)
        elif c in b"]}":
            depth -= 1
    return peak, True


ALPHABET = b'[]{}"\\ x'


@settings(max_examples=500, deadline=None)
@given(body=st.binary().map(lambda b: bytes(ALPHABET[c % len(ALPHABET)] for c in b)), chunk=st.integers(1, 16))
def test_the_depth_scan_never_reads_less_than_a_decoder_would(body, chunk):
    saved = limits._CHUNK
    limits._CHUNK = chunk  # chunk boundaries fall inside strings, escapes and runs of backslashes
    try:
        expected, whole = _reference_depth(body)
        got = limits.json_depth(body)
    finally:
        limits._CHUNK = saved
    assert got >= expected and (got == expected or not whole), (body, got, expected)
