"""The generation agents through the agent API served by uvicorn: each returns a file reference that the
storage API serves to its owner, and the file parses back."""

from __future__ import annotations

import secrets

import httpx
import nbformat
import pytest
from fixtures.generated_files import mp4_info, pdf_pages, png_size, pptx_slides, wav_info

from compute.identity.tokens import SCOPES, ApiKeyCreate, Principal, create_api_key
from compute.network import get_network

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(platform, api_url):
    with httpx.Client(base_url=api_url, timeout=180) as client:
        yield client


def _auth() -> dict[str, str]:
    principal = Principal(address="0x" + secrets.token_hex(20), scopes=frozenset(SCOPES), via="session")
    key = create_api_key(get_network().store, principal, ApiKeyCreate(name="generation tests"))
    return {"Authorization": f"Bearer {key.key}"}


@pytest.fixture
def alice() -> dict[str, str]:
    return _auth()


def invoke(client: httpx.Client, agent: str, input: dict, headers: dict) -> httpx.Response:
    return client.post(f"/v1/agents/{agent}/invoke", json={"input": input}, headers=headers)


def fetch(client: httpx.Client, ref: dict, headers: dict) -> bytes:
    resp = client.get(f"/v1/storage/files/{ref['cid']}", headers=headers)
    assert resp.status_code == 200, resp.text
    assert len(resp.content) == ref["size"]
    return resp.content


def output(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()["output"]


def test_image_and_video(client, alice):
    image = output(invoke(client, "gen.image", {"prompt": "a cat", "width": 32, "height": 64, "steps": 1}, alice))
    assert png_size(fetch(client, image["images"][0], alice)) == (32, 64)
    video = output(
        invoke(
            client,
            "gen.video",
            {"prompt": "a cat", "frames": 5, "fps": 5, "width": 32, "height": 32, "steps": 1},
            alice,
        )
    )
    info = mp4_info(fetch(client, video["video"], alice))
    assert info["frames"] == 5 and info["duration"] == pytest.approx(1.0, abs=0.2)


def test_files_are_the_owners(client, alice):
    speech = output(invoke(client, "gen.tts", {"text": "private words"}, alice))
    assert wav_info(fetch(client, speech["audio"], alice))["frames"] > 0
    stranger = client.get(f"/v1/storage/files/{speech['audio']['cid']}", headers=_auth())
    assert stranger.status_code in (403, 404)


def test_pdf_presentation_notebook_and_step(client, alice):
    pdf = output(invoke(client, "gen.pdf", {"markdown": "# Title\n\nBody text."}, alice))
    assert pdf_pages(fetch(client, pdf["pdf"], alice))[0].startswith("Title")

    deck = output(invoke(client, "gen.presentation", {"outline": "# A\n- x\n# B\n- y"}, alice))
    assert [s["title"] for s in pptx_slides(fetch(client, deck["presentation"], alice))] == ["A", "B"]

    nb = output(invoke(client, "gen.notebook", {"cells": [{"source": "6 * 7"}]}, alice))
    executed = nbformat.reads(fetch(client, nb["notebook"], alice).decode(), as_version=4)
    assert nb["status"] == "ok" and executed.cells[0].outputs[0]["data"]["text/plain"] == "42"

    step = output(invoke(client, "gen.step", {"topic": "Ledgers", "outline": ["Entries", "Balances"]}, alice))
    assert [s["title"] for s in step["sections"]] == ["Entries", "Balances"]
    assert fetch(client, step["file"], alice).decode() == step["document"]


@pytest.mark.parametrize(
    "agent, input, status, field",
    [
        ("gen.image", {"prompt": "x", "width": 100, "height": 64}, 422, "size"),
        ("gen.image", {"prompt": ""}, 422, "input.prompt"),
        ("gen.image", {"prompt": "x", "width": 4}, 422, "input.width"),
        ("gen.video", {"prompt": "x", "frames": 0}, 422, "input.frames"),
        ("gen.tts", {"text": "hi", "voice": "xx-nosuch"}, 422, "voice"),
        ("gen.tts", {"text": "hi", "format": "ogg"}, 422, "input.format"),
        ("gen.pdf", {"markdown": "x", "html": "<p>x</p>"}, 422, "html"),
        ("gen.presentation", {"outline": "- bullet first"}, 422, "outline"),
        ("gen.presentation", {}, 422, "outline"),
        ("gen.notebook", {"cells": [], "notebook_cid": "x"}, 422, "notebook_cid"),
        ("gen.notebook", {"cells": [{"kind": "sql", "source": "select 1"}]}, 422, "input.cells.0.kind"),
        ("gen.step", {"topic": "x", "sections": 0}, 422, "input.sections"),
    ],
)
def test_bad_input_is_a_named_4xx(client, alice, agent, input, status, field):
    resp = invoke(client, agent, input, alice)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field
