"""`cxmpute up` as a user starts it, in a subprocess with its own data directory and ports.

Used by the suites that test the platform from outside (security, journeys): everything they do goes over
HTTP to the processes `cxmpute up` started, exactly as a user's or an attacker's requests would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from eth_account import Account
from web3 import Web3

from cxmpute.ports import free_port
from tests.support.signin import sign_in

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class UpPlatform:
    url: str
    prefect_url: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen
    anonymous: bool
    log: Path
    _chain: dict | None = field(default=None, repr=False)

    @property
    def operator_token(self) -> str:
        return (self.home / "operator.token").read_text().strip()

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def w3(self, headers: dict[str, str] | None = None) -> Web3:
        """web3 on the embedded chain's RPC; with the operator's headers for its development methods."""
        # Headers given to HTTPProvider replace its own (the JSON content type among them).
        return Web3(
            Web3.HTTPProvider(
                f"{self.url}/v1/chain/rpc",
                request_kwargs={"headers": {**Web3.HTTPProvider.get_request_headers(), **(headers or {})}},
            )
        )

    @property
    def chain(self) -> dict:
        if self._chain is None:
            self._chain = httpx.get(f"{self.url}/v1/account/chain", timeout=10).json()
        return self._chain

    def fund(self, address: str, eth: int = 10) -> None:
        """Send ``eth`` from the development account (the operator's privilege) to ``address``."""
        w3 = self.w3(self.operator)
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": eth * 10**18})
        w3.eth.wait_for_transaction_receipt(tx)

    def sign_in(self, account) -> dict[str, str]:
        """A session for ``account`` through the real EIP-4361 flow; returns the Authorization header."""
        return sign_in(self.url, account, self.chain["chain_id"])

    def new_user(self) -> tuple[Account, dict[str, str]]:
        account = Account.create()
        return account, self.sign_in(account)

    def api_key(self, auth: dict[str, str], scopes: list[str]) -> dict[str, str]:
        resp = httpx.post(f"{self.url}/v1/auth/keys", json={"name": "test", "scopes": scopes}, headers=auth, timeout=10)
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['key']}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logs(self, tail: int = 12_000) -> str:
        """The end of what `cxmpute up` and its local provider wrote, for a failure's message
        (tests/support/waiting.py asks for it)."""
        worker = self.home / "local-provider" / "worker.log"
        parts = [f"--- cxmpute up ({self.log})\n{self.output()[-tail:]}"]
        if worker.exists():
            parts.append(f"--- local provider ({worker})\n{worker.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def start_up(
    home: Path,
    *,
    anonymous: bool = True,
    provider: bool = False,
    env: dict[str, str] | None = None,
    wait: float = 180.0,
) -> UpPlatform:
    """Run `cxmpute up` with its data in ``home`` on free ports; return once the API answers."""
    home.mkdir(parents=True, exist_ok=True)
    api_port, prefect_port = free_port(), free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CXMPUTE_"))}
    full.update(
        CXMPUTE_HOME=str(home),
        CXMPUTE_API_PORT=str(api_port),
        CXMPUTE_PREFECT_PORT=str(prefect_port),
        CXMPUTE_ALLOW_ANONYMOUS="true" if anonymous else "false",
        CXMPUTE_SIWE_DOMAIN=f"127.0.0.1:{api_port}",
        **(env or {}),
    )
    log = home / "up.log"
    argv = [sys.executable, "-m", "cxmpute.cli", "up"] + ([] if provider else ["--no-provider"])
    proc = subprocess.Popen(argv, env=full, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    platform = UpPlatform(
        url=f"http://127.0.0.1:{api_port}",
        prefect_url=f"http://127.0.0.1:{prefect_port}/api",
        home=home,
        env=full,
        proc=proc,
        anonymous=anonymous,
        log=log,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cxmpute up exited with {proc.returncode}:\n{platform.output()}")
        try:
            if httpx.get(f"{platform.url}/healthz", timeout=1).status_code == 200:
                return platform
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    platform.stop()
    raise RuntimeError(f"cxmpute up did not answer within {wait}s:\n{platform.output()}")


def wait_until_ready(platform: UpPlatform, provider: bool = True, timeout: float = 180.0) -> UpPlatform:
    """Wait for what a user waits for in `cxmpute up`'s terminal: the banner, printed once the local wallet is
    funded, and with ``provider``, the local provider's offer in the market's book (the worker has signed in,
    registered, staked and published)."""
    from tests.support.waiting import until

    until(lambda: "Cxmpute is up" in platform.output(), "the `Cxmpute is up` banner", platform, timeout)
    if provider:

        def offered() -> bool:
            resp = httpx.get(f"{platform.url}/v1/market/provisions", timeout=10)
            return resp.status_code == 200 and any(p.get("kind") == "agent" for p in _items(resp.json()))

        until(offered, "the local provider's agent provision", platform, timeout)
    return platform


def _items(body) -> list[dict]:
    return body if isinstance(body, list) else body.get("items", []) if isinstance(body, dict) else []


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new PostgreSQL database for one platform, dropped afterwards; yields its SQLAlchemy URL."""
    import psycopg

    name = f"cxmpute_up_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
