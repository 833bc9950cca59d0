"""Jobs pushed to provider workers over their stream from a real uvicorn-served API: delivery and settlement,
reconnection, adoption of work already placed, cancellation on the provider, and who may open a stream."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account

from compute.ledger import Acct, balance, post
from compute.models import Lease
from compute.provisions import Resources
from compute.worker import handlers, jobs
from compute.worker.dispatch import Dispatcher, WorkCancelled
from compute.worker.jobs import JobSpec
from compute.worker.provider import Offer, ProviderWorker
from cxmpute.ports import free_port
from cxmpute.settings import reset_settings
from tests.support.signin import sign_in

STAKE = 10**10
started: dict[str, float] = {}  # job payload tag → when its handler began
stopped: set[str] = set()  # tags whose handler was cancelled


async def _echo(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    started[payload["tag"]] = time.time()
    return {"echo": payload["tag"]}


async def _hang(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    started[payload["tag"]] = time.time()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        stopped.add(payload["tag"])
        raise
    return {}


@pytest.fixture(autouse=True)
def test_handlers(monkeypatch):
    started.clear()
    stopped.clear()
    monkeypatch.setattr(handlers, "handlers", lambda: {"echo": _echo, "hang": _hang})


class Api:
    """The platform API in this process (uvicorn on a thread), stoppable and restartable on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from web.app import create_app

        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(), host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(400):
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the API did not come up")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture
def api(net, monkeypatch) -> Iterator[Api]:
    monkeypatch.setenv("CXMPUTE_ALLOW_ANONYMOUS", "false")
    reset_settings()
    served = Api()
    served.start()
    yield served
    served.stop()
    monkeypatch.delenv("CXMPUTE_ALLOW_ANONYMOUS")
    reset_settings()


class Worker:
    """A provider worker (the real ProviderWorker) on its own thread and event loop."""

    def __init__(self, net, url: str, concurrency: int = 4):
        self.wallet = Account.create()
        with net.store.write() as s:  # staked already: publishing needs the minimum stake
            post(
                s,
                key=f"stake-{self.wallet.address}",
                kind="stake",
                entries=[(Acct("chain", "test"), -STAKE), (Acct("stake", self.wallet.address), STAKE)],
            )
        self.worker = ProviderWorker(
            url,
            self.wallet,
            Offer(name="t", price_gwei=2, concurrency=concurrency, resources=Resources(cpu=8, memory_mb=8192)),
        )
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return self.wallet.address

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.worker.run())
        try:
            self.loop.run_until_complete(self.task)
        except BaseException:  # cancelled by stop(), or the worker failed: wait_serving says so
            pass
        finally:
            self.loop.close()

    def wait_serving(self, net, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.worker.provision_id and _connected(net, self.address):
                return
            assert self.thread.is_alive(), "the worker stopped"
            time.sleep(0.05)
        raise AssertionError("the worker did not connect")

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(20)


def _connected(net, address: str) -> bool:
    from compute.worker.delivery import hub

    return address in hub(net.store).connections


@contextmanager
def workers(net, api: Api, count: int = 1, concurrency: int = 4) -> Iterator[list[Worker]]:
    started_workers = [Worker(net, api.url, concurrency) for _ in range(count)]
    try:
        for w in started_workers:
            w.wait_serving(net)
        net.market.sync(force=True)
        yield started_workers
    finally:
        for w in started_workers:
            w.stop()


def _owner(net, gwei: int = 10**12) -> str:
    address = Account.create().address
    with net.store.write() as s:
        post(
            s,
            key=f"dep-{address}",
            kind="deposit",
            entries=[(Acct("chain", "test"), -gwei), (Acct("user", address), gwei)],
        )
    return address


def _spec(owner: str, tag: str, kind: str = "echo", timeout: float = 60) -> JobSpec:
    return JobSpec(
        kind=kind,
        payload={"tag": tag},
        owner=owner,
        work_key=f"run-{tag}:node:1",
        price_max_gwei=10,
        timeout_s=timeout,
        resources=Resources(cpu=1, memory_mb=512),
    )


def _leases(net) -> int:
    with net.store.read() as s:
        return s.query(Lease).count()


def test_a_pushed_job_runs_on_its_provider_and_is_settled_once(net, api):
    owner = _owner(net)
    with workers(net, api, count=2) as pool:
        dispatcher = Dispatcher(net)

        async def burst():
            return await asyncio.gather(*(dispatcher.run(_spec(owner, f"a{i}")) for i in range(20)))

        done = asyncio.run(burst())
    assert all(j.status == "done" for j in done)
    assert [j.result for j in done] == [{"echo": f"a{i}"} for i in range(20)]
    assert {j.provider for j in done} <= {w.address for w in pool}
    for job in done:
        assert job.attempt == 1 and job.cost_gwei > 0
        assert job.started_ts <= started[job.result["echo"]]  # the worker's own start, reported with the result
    with net.store.read() as s:
        ended = {row.status for row in s.query(Lease)}
        assert ended == {"ended"} and s.query(Lease).count() == 20
        assert balance(s, Acct("user", owner)) == 10**12 - sum(j.cost_gwei for j in done)  # escrow left came back


def test_jobs_dispatched_while_the_provider_is_disconnected_arrive_when_it_reconnects(net, api):
    owner = _owner(net)
    with workers(net, api) as (worker,):
        api.stop()  # the worker's stream drops; it keeps trying to reconnect
        assert not _connected(net, worker.address)
        dispatcher = Dispatcher(net)

        async def meanwhile():
            runs = [asyncio.ensure_future(dispatcher.run(_spec(owner, f"r{i}"))) for i in range(3)]
            await asyncio.sleep(1.0)
            queued = [j for j in jobs.list_for(net.store, owner) if j.status == "queued"]
            assert len(queued) == 3  # recorded, waiting for the worker
            await asyncio.to_thread(api.start)
            return await asyncio.gather(*runs)

        done = asyncio.run(meanwhile())
    assert [j.status for j in done] == ["done"] * 3 and {j.provider for j in done} == {worker.address}
    assert all(j.attempt == 1 for j in done)


def test_a_job_claimed_for_a_stream_that_died_is_queued_again_when_the_worker_reconnects(net, api):
    """The platform claims a job as it pushes it; one written to a connection that died before the worker read
    it is not among the jobs the worker holds when it reconnects, so it goes back to the queue and is pushed
    again: it runs once, on one lease."""
    owner = _owner(net)
    with workers(net, api) as (worker,):
        api.stop()
        net.market.place(owner, _request(), extra=jobs.Recording("lost-in-transit", _spec(owner, "t"), 1))
        assert [c.id for c in jobs.deliver(net.store, ["lost-in-transit"])] == ["lost-in-transit"]
        assert jobs.get(net.store, "lost-in-transit").status == "running"
        api.start()
        deadline = time.time() + 30
        while jobs.get(net.store, "lost-in-transit").status != "done":
            assert time.time() < deadline, jobs.get(net.store, "lost-in-transit")
            time.sleep(0.05)
    assert _leases(net) == 1 and "t" in started


def _request():
    from compute.market.demand import MatchRequest

    return MatchRequest(kind="agent", resources=Resources(cpu=1, memory_mb=512), price_max_gwei=10, duration_s=60)


def test_work_already_done_is_returned_and_open_work_is_adopted_not_placed_again(net, api):
    owner = _owner(net)
    with workers(net, api):
        dispatcher = Dispatcher(net)
        first = asyncio.run(dispatcher.run(_spec(owner, "once")))
        assert first.status == "done" and _leases(net) == 1
        again = asyncio.run(dispatcher.run(_spec(owner, "once")))
        assert again.id == first.id and _leases(net) == 1  # no second lease, no second bill
        term = asyncio.run(dispatcher.run(_spec(owner, "once").model_copy(update={"rerun": True})))
        assert term.id != first.id and term.attempt == 2 and _leases(net) == 2  # a service slot's next term

        # A dispatcher that was killed mid-node left its job running: the next one watches it to its end.
        async def killed_then_rerun():
            gone = asyncio.ensure_future(Dispatcher(net).run(_spec(owner, "slow", kind="hang")))
            while "slow" not in started:
                await asyncio.sleep(0.02)
            gone.cancel()
            adopted = asyncio.ensure_future(Dispatcher(net).run(_spec(owner, "slow", kind="hang")))
            await asyncio.sleep(0.3)
            (running,) = [j for j in jobs.list_for(net.store, owner) if j.work_key == "run-slow:node:1"]
            assert running.status == "running" and not adopted.done()
            # Its provider finishes it (as if the handler returned): the adopting dispatcher returns that attempt.
            await asyncio.to_thread(
                jobs.complete,
                net.store,
                net.domain,
                running.id,
                running.provider,
                jobs.Completion(ok=True, result={"late": 1}, seconds=1),
            )
            return running, await asyncio.wait_for(adopted, 10)

        running, adopted = asyncio.run(killed_then_rerun())
        assert adopted.id == running.id and adopted.result == {"late": 1} and _leases(net) == 3


def test_a_failed_attempt_is_followed_by_the_next_attempt_number(net, api):
    owner = _owner(net)
    with workers(net, api) as (worker,):
        lease = net.market.place(owner, _request(), extra=jobs.Recording("first-attempt", _spec(owner, "next"), 1))
        jobs.abandon(net.store, "first-attempt", "expired")
        net.market.refresh_provider(lease.provider)
        job = asyncio.run(Dispatcher(net).run(_spec(owner, "next")))
    assert job.status == "done" and job.attempt == 2


def test_cancelling_a_running_job_stops_its_handler_refunds_the_escrow_and_slashes_nobody(net, api):
    owner = _owner(net)
    with workers(net, api) as (worker,):

        async def run_and_cancel():
            running = asyncio.ensure_future(Dispatcher(net).run(_spec(owner, "c1", kind="hang")))
            while "c1" not in started:
                await asyncio.sleep(0.02)
            cancelled = await asyncio.to_thread(jobs.cancel_work, net.store, "run-c1:")
            with pytest.raises(WorkCancelled) as exc:
                await asyncio.wait_for(running, 10)
            return cancelled, exc.value

        cancelled, error = asyncio.run(run_and_cancel())
        assert error.status_code == 409 and error.field == "run_id"
        deadline = time.time() + 10
        while "c1" not in stopped:  # the provider was told, and cancelled the handler
            assert time.time() < deadline
            time.sleep(0.02)
        (job_id,) = cancelled
        job = jobs.get(net.store, job_id)
        assert job.status == "abandoned" and job.error == "cancelled" and job.cost_gwei == 0
        with net.store.read() as s:
            lease = s.get(Lease, job.lease_id)
            assert lease.status == "ended" and lease.end_reason == "user-cancelled"
            assert balance(s, Acct("escrow", lease.id)) == 0
            assert balance(s, Acct("user", owner)) == 10**12  # every gwei of escrow came back
            assert balance(s, Acct("stake", worker.address)) == STAKE  # nothing slashed
        # A result for it is refused, and nothing is paid.
        auth = sign_in(api.url, worker.wallet)
        late = httpx.post(
            f"{api.url}/v1/work/{job_id}/result", json={"ok": True, "result": {}, "seconds": 1}, headers=auth
        )
        assert late.status_code == 409
        # Cancelled work is not run again by a later dispatcher.
        with pytest.raises(WorkCancelled):
            asyncio.run(Dispatcher(net).run(_spec(owner, "c1", kind="hang")))
        assert jobs.cancel_work(net.store, "run-c1:") == []


def test_cancel_work_takes_only_the_open_jobs_under_its_prefix(net):
    owner = _owner(net)
    from tests.compute.worker.test_jobs import _provider

    _provider(net.store), _provider(net.store)  # room for four one-CPU leases
    net.market.sync(force=True)
    made = {}
    for key in ("runA:n1:1", "runA:n2:1", "runAB:n1:1", "run_:n1:1"):
        made[key] = f"job-{len(made)}"
        spec = _spec(owner, "p").model_copy(update={"work_key": key})
        net.market.place(owner, _request(), extra=jobs.Recording(made[key], spec, 1))
    jobs.abandon(net.store, made["runA:n2:1"], "expired")
    assert jobs.cancel_work(net.store, "runA:") == [made["runA:n1:1"]]
    assert jobs.cancel_work(net.store, "run_:") == [made["run_:n1:1"]]  # a wildcard in the prefix is literal
    assert jobs.get(net.store, made["runAB:n1:1"]).status == "queued"


def test_only_a_registered_provider_can_open_a_job_stream(net, api):
    owner = _owner(net)
    with workers(net, api) as (worker,):
        net.market.place(owner, _request(), extra=jobs.Recording("not-yours", _spec(owner, "s"), 1))
        stream = f"{api.url}/v1/work/stream"
        assert httpx.post(stream, json={}).status_code == 401  # anonymous
        user = sign_in(api.url, Account.create())  # a signed-in account that is no provider
        refused = httpx.post(stream, json={"concurrency": 4}, headers=user)
        assert refused.status_code == 409 and refused.json()["field"] == "provider"
        # A provider's stream carries its own jobs only; naming another's job as held changes nothing.
        other = Account.create()
        with net.store.write() as s:
            post(
                s,
                key=f"stake-{other.address}",
                kind="stake",
                entries=[(Acct("chain", "test"), -STAKE), (Acct("stake", other.address), STAKE)],
            )
        intruder = ProviderWorker(api.url, other, Offer(name="x", price_gwei=50))

        async def join_and_listen() -> list[str]:
            await intruder.join()
            lines: list[str] = []
            try:
                async with intruder.platform.client.stream(
                    "POST", "/v1/work/stream", json={"concurrency": 4, "held": []}
                ) as resp:
                    async for line in resp.aiter_lines():
                        lines.append(line)
                        if len(lines) == 1:
                            await asyncio.sleep(0.5)  # time for several polls
                            break
            finally:
                await intruder.platform.close()
            return lines

        lines = asyncio.run(join_and_listen())
        assert all('"job"' not in line for line in lines)
        deadline = time.time() + 30
        while jobs.get(net.store, "not-yours").status != "done":  # its own provider ran it
            assert time.time() < deadline
            time.sleep(0.05)


def test_a_cancelled_code_job_kills_its_sandbox_on_the_provider(net, api, monkeypatch):
    """The real agent handler: cancelling its task ends the sandboxed process it started."""
    import psutil

    from agxnt.jobs import run_agent

    monkeypatch.setattr(handlers, "handlers", lambda: {"agent": run_agent})
    owner = _owner(net)
    spec = JobSpec(
        kind="agent",
        owner=owner,
        work_key="run-sandbox:node:1",
        price_max_gwei=10,
        timeout_s=120,
        resources=Resources(cpu=1, memory_mb=512),
        payload={
            "agent": "code.exec",
            "version": "1",
            "inputs": {"code": "import time\ntime.sleep(120)", "timeout_seconds": 300},
        },
    )

    def sandboxes() -> list[psutil.Process]:
        found = []
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended between the listing and the look
                if p.name() == "bwrap":
                    found.append(p)
        return found

    with workers(net, api):

        async def run_and_cancel() -> None:
            running = asyncio.ensure_future(Dispatcher(net).run(spec))
            deadline = time.time() + 60
            while not sandboxes():
                assert time.time() < deadline and not running.done(), "the sandbox never started"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(jobs.cancel_work, net.store, "run-sandbox:")
            with pytest.raises(WorkCancelled):
                await asyncio.wait_for(running, 10)

        asyncio.run(run_and_cancel())
        deadline = time.time() + 15
        while sandboxes():
            assert time.time() < deadline, [p.pid for p in sandboxes()]
            time.sleep(0.1)
