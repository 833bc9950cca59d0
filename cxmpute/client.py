"""The one platform client: every CLI command and the provider worker reach the platform through it.

It knows the API's base URL, signs in with a wallet (EIP-4361) or sends an API key, keeps the session and
signs in again when it expires, and turns an error answer into a :class:`PlatformError` naming the field.
An unreachable platform is a :class:`PlatformUnreachable`, never an httpx traceback.

Who it acts as, in order: the ``api_key``/``wallet_key`` given to it, ``CXMPUTE_API_KEY``,
``CXMPUTE_WALLET_KEY``, else this machine's local wallet (``<data dir>/wallet.key``, made by ``cxmpute up``
and funded on its embedded chain).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx

from cxmpute.errors import CxmputeError
from cxmpute.http import async_client, client
from cxmpute.settings import Settings, get_settings

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

DEFAULT_TIMEOUT = 60.0


class PlatformError(CxmputeError):
    """The platform refused a request: its status, its message, the field it names and, for a request that
    fails validation, every problem (``errors``: dicts with ``field`` and ``message``)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ):
        super().__init__(message, field=field, status_code=status_code)
        self.errors = errors or []
        self.payload = body or {}


class PlatformUnreachable(CxmputeError):
    """Nothing answers at the platform's URL (or it stopped answering mid-request)."""

    status_code = 503


def local_wallet(settings: Settings | None = None) -> LocalAccount:
    """The wallet this machine acts as: ``CXMPUTE_WALLET_KEY``, else the local wallet in the data dir."""
    return _account((settings or get_settings()).resolved_wallet_key())


def local_address(settings: Settings | None = None) -> str:
    return local_wallet(settings).address


@lru_cache(maxsize=8)
def _account(key: str) -> LocalAccount:
    from eth_account import Account

    return Account.from_key(key)


def error_from(resp: httpx.Response) -> PlatformError:
    """The platform's error body (``detail``, ``field``, ``errors``) as an exception; any other body as text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = resp.text.strip()[:300] or resp.reason_phrase
        return PlatformError(
            f"{resp.request.method} {resp.request.url.path}: {text}", status_code=resp.status_code, body={}
        )
    detail = body.get("detail")
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    if not isinstance(detail, str):  # a validation list or an object: still one readable line
        detail = json.dumps(detail) if detail is not None else resp.reason_phrase
    field = body.get("field")
    if field is None and errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        field = first.get("field") or (f"node {first['node']}" if first.get("node") else None)
    return PlatformError(detail, status_code=resp.status_code, field=field, errors=errors, body=body)


class _Base:
    """What both clients share: where, as whom, and how an answer is read."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        wallet_key: str | None = None,
        anonymous: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        settings: Settings | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.settings = settings or get_settings()
        # Sent on every request: a job's own credential (a replica token), for a client acting for no account.
        self.headers = dict(headers or {})
        self.base_url = (base_url or self.settings.resolved_api_url).rstrip("/")
        self.timeout = timeout
        self.anonymous = anonymous
        self.api_key = None if anonymous else (api_key or self.settings.api_key)
        self._wallet_key = wallet_key
        self._token: str | None = self.api_key

    @property
    def wallet(self) -> LocalAccount:
        return _account(self._wallet_secret())

    def _wallet_secret(self) -> str:
        return self._wallet_key or self.settings.resolved_wallet_key()

    def _fingerprint(self) -> str:
        """Which wallet a kept session belongs to, known without deriving its address (the signing library
        alone costs a CLI call most of a second)."""
        return hashlib.sha256(self._wallet_secret().encode()).hexdigest()

    @property
    def address(self) -> str:
        return self.wallet.address

    # -- sessions: kept per API and address in the data dir, so each CLI call does not sign in again
    def _session_file(self) -> Path:
        return self.settings.data_dir / "session.json"

    def _saved_token(self) -> str | None:
        try:
            saved = json.loads(self._session_file().read_text())
        except (OSError, ValueError):
            return None
        if isinstance(saved, dict) and saved.get("api") == self.base_url and saved.get("wallet") == self._fingerprint():
            return saved.get("token")
        return None

    def _save_token(self, token: str) -> None:
        path = self._session_file()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"api": self.base_url, "wallet": self._fingerprint(), "address": self.address, "token": token}, f)

    def _forget_token(self) -> None:
        if self._saved_token() == self._token:
            self._session_file().unlink(missing_ok=True)
        self._token = None

    def _signed(self, nonce: dict[str, Any], chain: dict[str, Any]) -> dict[str, str]:
        from eth_account.messages import encode_defunct

        from cxmpute.siwe import Nonce, message_for

        message = message_for(self.address, Nonce(**nonce), chain["chain_id"]).text()
        signature = self.wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        return {"message": message, "signature": signature}

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _unreachable(self, exc: httpx.TransportError) -> PlatformUnreachable:
        if isinstance(exc, httpx.TimeoutException):
            return PlatformUnreachable(
                f"the platform at {self.base_url} did not answer in time ({exc.__class__.__name__})",
                field="CXMPUTE_API_URL",
            )
        return PlatformUnreachable(
            f"the platform at {self.base_url} is not answering: start it with `cxmpute up`, "
            "or set CXMPUTE_API_URL to where it runs",
            field="CXMPUTE_API_URL",
        )

    @staticmethod
    def _body(resp: httpx.Response) -> Any:
        if not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    def _needs_session(self) -> bool:
        return not self.anonymous and self._token is None

    def _can_resend(self, kwargs: dict[str, Any]) -> bool:
        """Whether a request refused for its session may go again, signed in anew: not with an API key (which
        is what it is), nor with a body that was a one-shot iterator (already spent: it would send nothing)."""
        spent = isinstance(kwargs.get("content"), (Iterator, AsyncIterator))
        return not self.anonymous and not self.api_key and not spent


class PlatformClient(_Base):
    """Synchronous: the CLI's client. ``request`` returns the decoded JSON body (bytes for anything else)."""

    def __init__(self, base_url: str | None = None, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self.http = client(self.base_url, timeout=httpx.Timeout(self.timeout, connect=5.0), headers=self.headers)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def sign_in(self) -> str:
        """Sign in with the wallet; the session is kept for the next call."""
        nonce = self._send("GET", "/v1/auth/nonce", auth=False)
        chain = self._send("GET", "/v1/account/chain", auth=False)
        session = self._send("POST", "/v1/auth/verify", json=self._signed(nonce, chain), auth=False)
        self._token = session["token"]
        self._save_token(self._token)
        return self._token

    def _ensure_session(self) -> None:
        if self._needs_session():
            self._token = self._saved_token() or self.sign_in()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.stream(method, path, **kwargs) as resp:
            resp.read()
            return self._body(resp)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    @contextmanager
    def stream(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """The open response, for downloads and event streams; an error answer raises before it is yielded.
        A session the platform no longer knows is dropped and the request sent once more, signed in again."""
        self._ensure_session()
        for attempt in (1, 2):
            try:
                with self.http.stream(method, path, headers=self._headers(headers), **kwargs) as resp:
                    if resp.status_code == 401 and attempt == 1 and self._can_resend(kwargs):
                        self._forget_token()
                        self._ensure_session()
                        continue
                    if not resp.is_success:
                        resp.read()
                        raise error_from(resp)
                    yield resp
                    return
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            raise error_from(resp)
        return self._body(resp)


class AsyncPlatformClient(_Base):
    """Asynchronous: the provider worker's client (and any async caller)."""

    def __init__(self, base_url: str | None = None, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self.http = async_client(self.base_url, timeout=httpx.Timeout(self.timeout, connect=5.0), headers=self.headers)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def sign_in(self) -> str:
        nonce = await self._send("GET", "/v1/auth/nonce")
        chain = await self._send("GET", "/v1/account/chain")
        session = await self._send("POST", "/v1/auth/verify", json=self._signed(nonce, chain))
        self._token = session["token"]
        return self._token

    async def _ensure_session(self) -> None:
        if self._needs_session():
            await self.sign_in()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.stream(method, path, **kwargs) as resp:
            await resp.aread()
            return self._body(resp)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        await self._ensure_session()
        for attempt in (1, 2):
            try:
                async with self.http.stream(method, path, headers=self._headers(headers), **kwargs) as resp:
                    if resp.status_code == 401 and attempt == 1 and self._can_resend(kwargs):
                        self._token = None
                        await self._ensure_session()
                        continue
                    if not resp.is_success:
                        await resp.aread()
                        raise error_from(resp)
                    yield resp
                    return
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            raise error_from(resp)
        return self._body(resp)
