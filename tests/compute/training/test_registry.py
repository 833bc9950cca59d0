"""Training job records on SQLite and PostgreSQL: generations, the rank secret, losses and checkpoints."""

from __future__ import annotations

import pytest

from compute.training import registry
from compute.training.spec import TrainingIn
from cxmpute.errors import Conflict, NotFound
from cxmpute.settings import Settings
from stxrage import open_storage

ME = "this-process"


@pytest.fixture
def settings(platform_db_url, tmp_path):
    return Settings(home=tmp_path, database_url=platform_db_url)


def test_each_generation_has_its_own_secret_and_resumes_from_the_latest_checkpoint(settings, dataset_csv):
    cid = open_storage(settings).put_bytes(dataset_csv, owner="alice").file.cid
    job = registry.create(
        settings, "alice", TrainingIn(dataset_cid=cid, world_size=2, steps=20, price_max_gwei=5), ME, 1000.0
    )
    assert (job.state, job.generation, job.last_checkpoint) == ("queued", 0, None)

    generation, first, resume = registry.begin_generation(settings, job.id, ME)
    assert (generation, resume) == (1, 0)
    assert registry.dataset_bytes(settings, first) == dataset_csv
    assert registry.rendezvous(settings, first) == (None, None)
    registry.set_rendezvous(settings, first, "10.0.0.5", 29500)
    assert registry.rendezvous(settings, first) == ("10.0.0.5", 29500)
    with pytest.raises(Conflict):
        registry.set_rendezvous(settings, first, "10.0.0.6", 29501)
    for rank in (0, 1):
        registry.add_losses(settings, first, rank, [(1, 4.0 + rank), (2, 2.0 + rank)])
    with pytest.raises(Conflict):
        registry.add_losses(settings, first, 2, [(3, 1.0)])
    with pytest.raises(NotFound):
        registry.resume_bytes(settings, first)
    saved = registry.add_checkpoint(settings, first, 2, b"weights at step 2")
    registry.end_generation(settings, job.id, 1)
    for call in (lambda: registry.rank_view(settings, first), lambda: registry.add_losses(settings, first, 0, [])):
        with pytest.raises(NotFound):
            call()

    generation, second, resume = registry.begin_generation(settings, job.id, ME)
    assert (generation, resume) == (2, 2) and second != first
    assert registry.resume_bytes(settings, second) == b"weights at step 2"
    assert registry.rendezvous(settings, second) == (None, None)
    registry.add_losses(settings, second, 0, [(2, 1.0), (3, 0.5)])
    registry.add_losses(settings, second, 1, [(2, 3.0), (3, 1.5)])

    checkpoints, losses = registry.history(settings, "alice", job.id)
    assert [(c.step, c.generation, c.cid) for c in checkpoints] == [(2, 1, saved.cid)]
    assert [(p.step, p.generation, p.loss) for p in losses] == [(1, 1, 4.5), (2, 2, 2.0), (3, 2, 1.0)]
    _, window = registry.history(settings, "alice", job.id, from_step=2, steps=1)
    assert [(p.step, p.loss) for p in window] == [(2, 2.0)]
    assert open_storage(settings).get_bytes(saved.cid, owner="alice") == b"weights at step 2"

    with pytest.raises(NotFound):
        registry.get(settings, "mallory", job.id)
    registry.finish(settings, job.id, "succeeded", final_loss=0.25)
    done = registry.get(settings, "alice", job.id)
    assert (done.state, done.step, done.final_loss, done.last_checkpoint.step) == ("succeeded", 20, 0.25, 2)
    with pytest.raises(NotFound):
        registry.rank_view(settings, second)
    with pytest.raises(Conflict):
        registry.cancel(settings, "alice", job.id)


def test_a_cancelled_job_starts_no_generation(settings):
    job = registry.create(
        settings, "bob", TrainingIn(dataset_cid="x", world_size=1, steps=5, price_max_gwei=5), ME, 1000.0
    )
    _, token, _ = registry.begin_generation(settings, job.id, ME)
    assert registry.cancel(settings, "bob", job.id).state == "cancelled"
    with pytest.raises(NotFound):
        registry.rank_view(settings, token)
    assert registry.begin_generation(settings, job.id, ME) is None
    registry.finish(settings, job.id, "failed", error="late")
    assert registry.get(settings, "bob", job.id).state == "cancelled"
    assert [j.id for j in registry.list_for(settings, "bob")] == [job.id]


def test_a_job_whose_coordinator_went_silent_is_taken_over_by_one_process(settings):
    job = registry.create(
        settings, "carol", TrainingIn(dataset_cid="x", world_size=1, steps=5, price_max_gwei=5), ME, 1000.0
    )
    _, old_token, _ = registry.begin_generation(settings, job.id, ME)
    assert registry.confirm(settings, job.id, ME, 1005.0)
    assert registry.orphans(settings, stale_before=1005.0) == []
    assert registry.orphans(settings, stale_before=1040.0) == [(job.id, 1005.0)]

    assert registry.claim(settings, job.id, "other", 1040.0, seen_ts=1005.0)
    assert not registry.claim(settings, job.id, "third", 1040.0, seen_ts=1005.0)  # it was confirmed since
    assert not registry.confirm(settings, job.id, ME, 1041.0)  # the old coordinator learns it lost the job...
    assert registry.begin_generation(settings, job.id, ME) is None  # ...and can start nothing more
    generation, token, _ = registry.begin_generation(settings, job.id, "other")
    assert generation == 2 and registry.rank_view(settings, token).generation == 2
    with pytest.raises(NotFound):  # the orphaned generation's ranks are told to stop
        registry.rank_view(settings, old_token)

    registry.finish(settings, job.id, "succeeded", final_loss=0.1)
    assert registry.orphans(settings, stale_before=10**10) == []
    assert not registry.claim(settings, job.id, "late", 2000.0, seen_ts=1040.0)
