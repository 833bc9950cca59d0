"""Sign-In with Ethereum against `cxmpute up`: EIP-4361 to the letter, single-use expiring nonces, and a limit on
the nonces one client may hold. Each test speaks from a loopback address of its own, so the nonces one test
holds never count against another's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from eth_account import Account
from eth_account.messages import encode_defunct

from compute.identity import siwe
from compute.models import utcnow
from tests.support.up import UpPlatform

_addresses = (f"127.0.1.{i}" for i in range(2, 250))


def client_from(platform: UpPlatform, address: str) -> httpx.Client:
    return httpx.Client(base_url=platform.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.fixture
def http(platform) -> httpx.Client:
    """A client of the platform from a loopback address no other test uses."""
    with client_from(platform, next(_addresses)) as client:
        yield client


def get_nonce(http: httpx.Client) -> siwe.Nonce:
    resp = http.get("/v1/auth/nonce")
    assert resp.status_code == 200, resp.text
    return siwe.Nonce(**resp.json())


def message(platform: UpPlatform, account, nonce: siwe.Nonce, **change) -> str:
    return siwe.message_for(account.address, nonce, platform.chain["chain_id"]).model_copy(update=change).text()


def sign(account, text: str) -> str:
    return account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()


def verify(http: httpx.Client, text: str, signature: str) -> httpx.Response:
    return http.post("/v1/auth/verify", json={"message": text, "signature": signature})


def refused(resp: httpx.Response, field: str, status: int = 401) -> bool:
    return resp.status_code == status and resp.json().get("field") == field and "token" not in resp.json()


def signs_in(http: httpx.Client, account, text: str) -> bool:
    resp = verify(http, text, sign(account, text))
    return resp.status_code == 200 and resp.json()["address"] == account.address


def database(platform: UpPlatform) -> sa.Engine:
    """The platform's own database (SQLite in its data dir, or the PostgreSQL database it was given)."""
    return sa.create_engine(
        platform.env.get("CXMPUTE_DATABASE_URL") or f"sqlite:///{platform.home / 'cxmpute.db'}",
        poolclass=sa.pool.NullPool,
    )


def age(platform: UpPlatform, nonce: str) -> None:
    """Let ``nonce``'s time run out, as the clock would."""
    with database(platform).begin() as db:
        assert (
            db.execute(
                sa.text("UPDATE cx_auth_nonces SET expires_at = :past WHERE nonce = :nonce"),
                {"past": datetime(2000, 1, 1, tzinfo=UTC), "nonce": nonce},
            ).rowcount
            == 1
        )


def stored_nonces(platform: UpPlatform, client: str | None = None) -> list[str]:
    query = "SELECT nonce FROM cx_auth_nonces" + (" WHERE client = :client" if client else "")
    with database(platform).connect() as db:
        return list(db.execute(sa.text(query), {"client": client}).scalars())


def test_the_platform_clients_sign_in(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    assert nonce.domain == platform.url.removeprefix("http://") and nonce.uri == platform.url
    assert signs_in(http, account, message(platform, account, nonce))
    assert signs_in(http, account, message(platform, account, get_nonce(http), statement=None))
    with_extras = message(
        platform,
        account,
        get_nonce(http),
        uri=f"{platform.url}/login",
        request_id="r-1",
        resources=[f"{platform.url}/v1/account", "ipfs://bafybeiemxf5abjwjbik"],
    )
    assert signs_in(http, account, with_extras)
    assert signs_in(http, account, message(platform, account, get_nonce(http), scheme="http"))


@pytest.mark.parametrize(
    "uri",
    [
        "http://evil.example",
        "http://127.0.0.1:1",
        "http://127.0.0.1",
        "https://evil.example/{domain}",
        "http://user@{domain}",
        "http://{domain}@evil.example",
        "ftp://{domain}",
        "javascript:alert(1)",
        "http://{domain}.evil.example",
        "http://localhost:{port}",
        "urn:{domain}",
        "http:{domain}",
    ],
)
def test_a_uri_off_this_server_is_refused(platform, http, uri):
    account = Account.create()
    domain = platform.url.removeprefix("http://")
    nonce = get_nonce(http)
    bad = message(platform, account, nonce, uri=uri.format(domain=domain, port=domain.rpartition(":")[2]))
    assert refused(verify(http, bad, sign(account, bad)), "uri")
    assert signs_in(http, account, message(platform, account, nonce))  # the refusal left the nonce usable


def test_a_scheme_before_the_domain_must_be_the_uris(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    bad = message(platform, account, nonce, scheme="https")
    assert refused(verify(http, bad, sign(account, bad)), "uri")
    assert signs_in(http, account, message(platform, account, nonce, scheme="https", uri=f"https://{nonce.domain}"))


def test_another_domain_or_chain_is_refused(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    for change, field in (
        ({"domain": "evil.example"}, "domain"),
        ({"domain": "127.0.0.1:1"}, "domain"),
        ({"domain": nonce.domain.upper() + "."}, "domain"),
        ({"chain_id": 999_999}, "chain_id"),
        ({"chain_id": platform.chain["chain_id"] + 1}, "chain_id"),
        ({"version": "2"}, "version"),
    ):
        bad = message(platform, account, nonce, **change)
        assert refused(verify(http, bad, sign(account, bad)), field), change
    assert signs_in(http, account, message(platform, account, nonce))


@pytest.mark.parametrize("line", ["URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time"])
def test_a_duplicated_field_is_refused(platform, http, line):
    """Last-wins parsing once let a second line override what the wallet showed first."""
    account = Account.create()
    nonce, other = get_nonce(http), get_nonce(http)
    lines = message(platform, account, nonce).split("\n")
    at = next(i for i, text in enumerate(lines) if text.startswith(f"{line}: "))
    for twin in (lines[at], message(platform, account, other).split("\n")[at], f"{line}: x"):
        bad = "\n".join(lines[: at + 1] + [twin] + lines[at + 1 :])
        resp = verify(http, bad, sign(account, bad))
        assert resp.status_code == 401 and "token" not in resp.json(), (twin, resp.text)
    duplicate = "\n".join(lines[: at + 1] + [lines[at]] + lines[at + 1 :])
    resp = verify(http, duplicate, sign(account, duplicate))
    assert refused(resp, "message") and "more than once" in resp.json()["detail"]
    assert signs_in(http, account, message(platform, account, other))


def test_an_address_not_in_its_eip55_form_is_refused(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    good = message(platform, account, nonce)
    hexpart = account.address[2:]
    flipped = next(i for i, c in enumerate(hexpart) if c.isalpha())
    wrong_case = hexpart[:flipped] + hexpart[flipped].swapcase() + hexpart[flipped + 1 :]
    for spelling in ("0x" + hexpart.lower(), "0x" + hexpart.upper(), "0x" + wrong_case, "0X" + hexpart):
        bad = good.replace(account.address, spelling)
        field = "message" if spelling.startswith("0X") else "address"
        assert refused(verify(http, bad, sign(account, bad)), field), spelling
    assert signs_in(http, account, good)


def test_reordered_lines_are_refused(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    lines = message(platform, account, nonce, not_before=utcnow() - timedelta(minutes=1)).split("\n")
    fields = {text.partition(":")[0]: i for i, text in enumerate(lines)}

    def swap(a: str, b: str) -> str:
        moved = list(lines)
        moved[fields[a]], moved[fields[b]] = moved[fields[b]], moved[fields[a]]
        return "\n".join(moved)

    variants = [
        swap("URI", "Version"),
        swap("Chain ID", "Nonce"),
        swap("Issued At", "Expiration Time"),
        swap("Expiration Time", "Not Before"),
        "\n".join([lines[1], lines[0]] + lines[2:]),  # address before the header
        "\n".join(lines[:3] + lines[5:] + ["", lines[3]]),  # the statement after the fields
        "\n".join(lines[:2] + lines[3:]),  # no blank line after the address
        "\n".join(lines[:4] + lines[5:]),
    ]  # no blank line after the statement
    for bad in variants:
        assert refused(verify(http, bad, sign(account, bad)), "message"), bad
    assert signs_in(http, account, "\n".join(lines))


def test_extra_or_missing_lines_and_other_line_endings_are_refused(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    good = message(platform, account, nonce)
    variants = [
        good + "\n",
        good + "\nfoo",
        good + "\nRequest ID: a b",
        good + "\nResources:\n- http://x\nRequest ID: r",
        "\n" + good,
        good.replace("\n", "\r\n"),
        good + "\nResources:\n- not a uri",
        good + "\nResources:\n-http://x",
        " " + good,
        good.replace("\nVersion: 1", ""),
        good.replace(f"\nNonce: {nonce.nonce}", ""),
        good.replace("Sign in to Cxmpute", "Sign in\u2028to Cxmpute"),
        good.replace("Sign in to Cxmpute", 'Sign "in" to <Cxmpute>'),
        good.replace("wants you to", "wants you  to"),
        good.replace("URI: ", "URI:"),
        good.replace("Chain ID: ", "Chain ID: +"),
        good.replace("Chain ID: ", "Chain ID: 0"),
        good.replace("Chain ID: ", "Chain ID: 1_"),
        good.replace(f"Nonce: {nonce.nonce}", "Nonce: short"),
    ]
    for bad in variants:
        resp = verify(http, bad, sign(account, bad))
        assert resp.status_code == 401 and "token" not in resp.json(), (bad, resp.text)
    assert signs_in(http, account, good)


def test_times_are_rfc3339_and_in_force(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    good = message(platform, account, nonce)
    issued = good.split("Issued At: ")[1].split("\n")[0]
    for bad, field in (
        (good.replace(issued, "1767225600"), "issued_at"),
        (good.replace(issued, "2026-13-01T00:00:00Z"), "issued_at"),
        (good.replace(issued, issued.removesuffix("Z")), "issued_at"),
        (message(platform, account, nonce, issued_at=utcnow() + timedelta(hours=1)), "issued_at"),
        (message(platform, account, nonce, expiration_time=utcnow() - timedelta(seconds=1)), "expiration_time"),
        (message(platform, account, nonce, expiration_time=None), "expiration_time"),
        (message(platform, account, nonce, not_before=utcnow() + timedelta(hours=1)), "not_before"),
    ):
        assert refused(verify(http, bad, sign(account, bad)), field), bad
    assert signs_in(http, account, good)


def test_the_signature_must_be_the_addresss(platform, http):
    account, thief = Account.create(), Account.create()
    nonce = get_nonce(http)
    good = message(platform, account, nonce)
    for signature in (
        sign(thief, good),
        sign(account, good + " "),
        "0x" + "00" * 65,
        "0x1234",
        "",
        "zz" * 65,
        sign(account, good)[:-2] + "1f",
    ):
        assert refused(verify(http, good, signature), "signature"), signature
    claimed = message(platform, thief, nonce).replace(thief.address, account.address)
    assert refused(verify(http, claimed, sign(thief, claimed)), "signature")
    assert signs_in(http, account, good)


def test_a_nonce_signs_in_once(platform, http):
    account = Account.create()
    nonce = get_nonce(http)
    good = message(platform, account, nonce)
    assert signs_in(http, account, good)
    assert refused(verify(http, good, sign(account, good)), "nonce")
    again = message(platform, account, nonce)  # a fresh message cannot reuse it either
    assert refused(verify(http, again, sign(account, again)), "nonce")
    other = Account.create()
    theirs = message(platform, other, nonce)
    assert refused(verify(http, theirs, sign(other, theirs)), "nonce")


def test_nonces_the_platform_did_not_issue_are_refused(platform, http, open_platform, closed_platform):
    account = Account.create()
    issued = get_nonce(http)
    for made_up in ("deadbeefdeadbeef", "0" * 24, issued.nonce[:-1], issued.nonce + "a", "A" + issued.nonce[1:]):
        bad = message(platform, account, siwe.Nonce(**{**issued.model_dump(), "nonce": made_up}))
        assert refused(verify(http, bad, sign(account, bad)), "nonce"), made_up
    other = closed_platform if platform is open_platform else open_platform
    with httpx.Client(base_url=other.url, timeout=30) as there:
        foreign = get_nonce(there)
    # The other platform's nonce, in a message otherwise right for this one.
    bad = message(platform, account, siwe.Nonce(**{**issued.model_dump(), "nonce": foreign.nonce}))
    assert refused(verify(http, bad, sign(account, bad)), "nonce")
    assert signs_in(http, account, message(platform, account, issued))


def test_an_expired_nonce_is_refused_and_purged(platform, http):
    account = Account.create()
    nonce, used = get_nonce(http), get_nonce(http)
    age(platform, nonce.nonce)
    good = message(platform, account, nonce)
    assert refused(verify(http, good, sign(account, good)), "nonce")
    assert signs_in(http, account, message(platform, account, used))
    assert nonce.nonce in stored_nonces(platform) and used.nonce in stored_nonces(platform)
    fresh = get_nonce(http)  # issuing purges what can never sign anyone in again
    assert {nonce.nonce, used.nonce}.isdisjoint(stored_nonces(platform)) and fresh.nonce in stored_nonces(platform)
    assert signs_in(http, account, message(platform, account, fresh))


def test_a_nonce_flood_is_limited_per_client(platform):
    address = next(_addresses)
    http = client_from(platform, address)
    held = [get_nonce(http) for _ in range(20)]  # CXMPUTE_SIWE_NONCES_PER_CLIENT's default
    flood = http.get("/v1/auth/nonce")
    assert refused(flood, "nonce", 429)
    assert 0 < int(flood.headers["Retry-After"]) <= 600
    assert refused(http.get("/v1/auth/nonce"), "nonce", 429)
    with client_from(platform, next(_addresses)) as neighbour:
        assert get_nonce(neighbour)  # another client is not locked out
    account = Account.create()
    assert signs_in(http, account, message(platform, account, held[0]))  # using one frees a place
    assert get_nonce(http)
    assert refused(http.get("/v1/auth/nonce"), "nonce", 429)
    age(platform, held[1].nonce)  # and so does one expiring
    assert get_nonce(http)
    assert refused(http.get("/v1/auth/nonce"), "nonce", 429)
    http.close()
    assert len(stored_nonces(platform, address)) == 20
