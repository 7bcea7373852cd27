"""The statement that records a change is prepared once per connection, and
works on when prepared statements do not last (a pooler in transaction
mode) or are there already."""

import logging

import ckan.model as model
import pytest
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks import events, prepared

pytestmark = pytest.mark.usefixtures("with_plugins", "clean_db")


@pytest.fixture(autouse=True)
def prepared_statements_on(monkeypatch):
    monkeypatch.setattr(prepared, "_switched_off", False)


def _prepared_here() -> list[str]:
    return (
        model.Session.execute(
            text(
                "SELECT name FROM pg_prepared_statements "
                "WHERE name LIKE 'ckanext_webhooks_%' ORDER BY name"
            )
        )
        .scalars()
        .all()
    )


def _recorded(event_ids: list[str]) -> int:
    return model.Session.execute(
        text("SELECT count(*) FROM webhook_event WHERE id = ANY(:ids)"),
        {"ids": event_ids},
    ).scalar()


def test_a_change_is_recorded_by_a_statement_prepared_once(receiver):
    helpers.call_action("webhook_create", topic="custom/*", address=receiver.url)
    first, wanted = events.publish("custom/one", {"n": 1})
    assert wanted
    names = _prepared_here()
    assert len(names) == 1 and names[0].startswith("ckanext_webhooks_event_")
    second, _ = events.publish("custom/one", {"n": 2})
    assert _prepared_here() == names  # executed, not prepared again
    model.Session.commit()
    assert _recorded([first, second]) == 2


def test_statements_gone_between_transactions_switch_to_plain_ones(receiver, caplog):
    """As behind pgbouncer in transaction mode: the next server connection
    has not got the statement. The event is still recorded, in the same
    transaction, and this process stops preparing."""
    helpers.call_action("webhook_create", topic="custom/*", address=receiver.url)
    first, _ = events.publish("custom/one", {"n": 1})
    model.Session.execute(text("DEALLOCATE ALL"))
    with caplog.at_level(logging.WARNING, logger=prepared.__name__):
        second, wanted = events.publish("custom/one", {"n": 2})
    assert wanted
    assert prepared._switched_off
    assert "plain statements" in caplog.text
    third, _ = events.publish("custom/one", {"n": 3})
    assert _prepared_here() == []  # nothing prepared any more
    model.Session.commit()
    assert _recorded([first, second, third]) == 3


def test_a_statement_prepared_already_is_used(receiver):
    """PREPARE outlives a rolled-back transaction (or comes from another
    client behind a pooler): preparing it again fails, and it is executed."""
    helpers.call_action("webhook_create", topic="custom/*", address=receiver.url)
    first, _ = events.publish("custom/one", {"n": 1})
    model.Session.connection().info[prepared._PREPARED].clear()
    second, wanted = events.publish("custom/one", {"n": 2})
    assert wanted and not prepared._switched_off
    model.Session.commit()
    assert _recorded([first, second]) == 2


def test_a_dataset_change_after_the_switch_is_recorded(receiver, monkeypatch):
    monkeypatch.setattr(prepared, "_switched_off", True)
    helpers.call_action("webhook_create", topic="dataset/*", address=receiver.url)
    dataset = factories.Dataset(notes="before")
    helpers.call_action("package_patch", id=dataset["id"], notes="after")
    rows = model.Session.execute(
        text(
            "SELECT topic, changes FROM webhook_event "
            "WHERE package_id = :id ORDER BY sequence"
        ),
        {"id": dataset["id"]},
    ).all()
    assert [tuple(row) for row in rows] == [
        ("dataset/create", None),
        ("dataset/update", ["notes"]),
    ]
