"""``ckan db upgrade -p webhooks`` from the first migration or from 1.0.0's
schema, with rows written the old way and workers running, loses nothing.

Workers running today's code against the old schema fail until the upgrade
lands; their failed jobs change nothing, and the dispatcher hands the work
to them again. Every delivery then completes, to a real receiver.
"""

import contextlib
import datetime
import json
import uuid

import pytest
import sqlalchemy as sa
from ckan.plugins import toolkit as tk

from ckanext.webhooks.delivery import wake_workers
from tests.helpers import Site
from tests.support.processes import stop_process, wait_until

FIRST = "2f1c4d0e9a7b"  # the first migration
RELEASE_1_0 = "a4d2c8e61f03"  # the last migration of version 1.0.0
WAITING_EVENTS = 15  # not yet expanded into deliveries
EXPANDED_EVENTS = 15  # with pending deliveries, one per webhook
WEBHOOKS = 3


@pytest.fixture(params=[FIRST, RELEASE_1_0], ids=["first", "1.0.0"])
def old_database(request):
    """A database of this test's own, at an old migration of the extension."""
    url = tk.config["sqlalchemy.url"]
    name = url.rsplit("/", 1)[1].split("?")[0] + "_upgrade"
    server = sa.create_engine(
        url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )

    def drop():
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    drop()
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    site = Site(**{"ckanext.webhooks.retry_schedule": "1 1 1 1 1 1 1 1 1 1"})
    site.env["CKAN_SQLALCHEMY_URL"] = url.rsplit("/", 1)[0] + "/" + name
    site.ckan("db", "init", "--skip-plugins", timeout=300)
    site.ckan("db", "upgrade", "-p", "webhooks", "--version", request.param)
    engine = sa.create_engine(site.env["CKAN_SQLALCHEMY_URL"])
    try:
        yield site, engine
    finally:
        engine.dispose()
        drop()
        server.dispose()


def write_the_old_way(engine, receiver_url):
    """A sysadmin, a dataset, webhooks, waiting events and pending
    deliveries, in plain SQL against the first migration's tables (the
    columns added up to 1.0.0 may be left out)."""
    now = datetime.datetime.utcnow()
    user, dataset = str(uuid.uuid4()), str(uuid.uuid4())
    hooks = [f"wh_{uuid.uuid4().hex}" for _ in range(WEBHOOKS)]
    events = [
        f"evt_{uuid.uuid4().hex}" for _ in range(WAITING_EVENTS + EXPANDED_EVENTS)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO "user" (id, name, email, created, sysadmin, state) '
                "VALUES (:id, 'old-admin', 'old@example.org', :now, true, 'active')"
            ),
            {"id": user, "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO package (id, name, title, type, state, private, "
                "metadata_created, metadata_modified) VALUES (:id, 'old-dataset', "
                "'Old', 'dataset', 'active', false, :now, :now)"
            ),
            {"id": dataset, "now": now},
        )
        for n, hook in enumerate(hooks):
            conn.execute(
                sa.text(
                    "INSERT INTO webhook (id, topic, address, owner_id, created, "
                    "secret) VALUES (:id, 'dataset/update', :address, :owner, :now, "
                    ":secret)"
                ),
                {
                    "id": hook,
                    "address": f"{receiver_url}/h{n}",
                    "owner": user,
                    "now": now,
                    "secret": "whsec_" + uuid.uuid4().hex,
                },
            )
        for n, event in enumerate(events):
            expanded = n >= WAITING_EVENTS
            conn.execute(
                sa.text(
                    "INSERT INTO webhook_event (id, topic, entity_type, entity_id, "
                    "package_id, snapshot, created, expanded) VALUES (:id, "
                    "'dataset/update', 'dataset', :dataset, :dataset, :snapshot, "
                    ":now, :expanded)"
                ),
                {
                    "id": event,
                    "dataset": dataset,
                    "snapshot": json.dumps({"id": dataset, "name": "old-dataset"}),
                    "now": now,
                    "expanded": expanded,
                },
            )
            for hook in hooks if expanded else []:
                conn.execute(
                    sa.text(
                        "INSERT INTO webhook_delivery (event_id, webhook_id, status, "
                        "next_attempt_at, created, updated) VALUES (:event, :hook, "
                        "'pending', :now, :now, :now)"
                    ),
                    {"event": event, "hook": hook, "now": now},
                )
    return {(event, f"/h{n}") for event in events for n in range(WEBHOOKS)}


def statuses(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, count(*) FROM webhook_delivery GROUP BY status")
        ).all()
    return dict(rows)


@pytest.mark.usefixtures("with_plugins")
def test_upgrade_from_an_old_schema_with_workers_running(
    old_database, receiver, private_redis
):
    site, engine = old_database
    site.env["CKAN_REDIS_URL"] = private_redis.url
    expected = write_the_old_way(engine, receiver.url)
    processes = [site.popen("jobs", "worker") for _ in range(2)]
    processes.append(site.popen("webhooks", "dispatch", "--loop", "--interval", "0.5"))
    try:
        # Today's code on yesterday's tables: the dispatcher cannot count the
        # work and logs, a job woken by hand fails, nothing is sent.
        wake_workers()
        assert wait_until(lambda: private_redis_failed_jobs(private_redis), 60)
        assert receiver.count == 0
        upgrade = site.ckan("db", "upgrade", "-p", "webhooks", timeout=180)
        assert "SUCCESS" in upgrade.stdout + upgrade.stderr
        assert wait_until(
            lambda: statuses(engine).get("succeeded", 0) == len(expected), 120
        ), statuses(engine)
    finally:
        for process in processes:
            stop_process(process, grace=0)
    assert receiver.unique_messages() == expected
    assert statuses(engine) == {"succeeded": len(expected)}


def private_redis_failed_jobs(redis_server):
    """Whether a delivery job failed on the worker (RQ's failed job registry)."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    with contextlib.suppress(redis.RedisError):
        return any(client.zcard(key) for key in client.keys("rq:*failed*"))
    return False
