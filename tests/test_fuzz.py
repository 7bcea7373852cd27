"""Hostile input: random, unicode, huge and wrongly typed data at every action.

Whatever comes in, an action answers with ValidationError, NotAuthorized or
ObjectNotFound (a 400/403/404 through the API) or succeeds; it never raises
anything else (a 500), and a create that fails leaves no webhook behind.
"""

from __future__ import annotations

import ckan.model as model
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckanext.webhooks import topics
from ckanext.webhooks.model import Webhook

EXPECTED = (tk.ValidationError, tk.NotAuthorized, tk.ObjectNotFound)
FIELDS = (
    "id",
    "topic",
    "address",
    "dataset",
    "organization",
    "active",
    "limit",
    "offset",
)
ACTIONS = (
    "webhook_create",
    "webhook_show",
    "webhook_update",
    "webhook_delete",
    "webhook_list",
    "webhook_delivery_list",
    "webhook_redeliver",
    "webhook_test",
    "webhook_rotate_secret",
    "webhook_topic_list",
)

# Text the way JSON can deliver it: any code point, lone surrogates and NUL too.
any_text = st.text(st.characters(exclude_categories=()), max_size=50)
nasty_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff tail",
        "\u202e\u200b",
        "😀" * 3,
        "' OR 1=1 --",
        "%00",
        "../../etc/passwd",
        "x" * 100_000,
        "é" * 3000,
        "1" * 400,
        "-1",
        "1e400",
        "NaN",
        "evt_",
        "evt_\x00",
        "99999999999999999999999999",
    ]
)
texts = st.one_of(any_text, nasty_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.fixture
def world(receiver):
    """A user, a webhook they own pointing at a real receiver, and a dataset."""
    user = factories.User()
    org = factories.Organization(users=[{"name": user["name"], "capacity": "admin"}])
    dataset = factories.Dataset(owner_org=org["id"])
    hook_id = helpers.call_action(
        "webhook_create",
        context={"user": user["name"], "ignore_auth": False},
        topic="*",
        address=receiver.url + "/fuzz",
    )
    helpers.call_action("webhook_test", id=hook_id)
    attempt_id = helpers.call_action("webhook_delivery_list", id=hook_id)[0]["id"]
    # Someone else's webhook: no input may reach it.
    stranger = factories.User()
    theirs = helpers.call_action(
        "webhook_create",
        context={"user": stranger["name"], "ignore_auth": False},
        topic="*",
        address=receiver.url + "/theirs",
    )
    helpers.call_action("webhook_test", id=theirs)
    their_attempt = helpers.call_action("webhook_delivery_list", id=theirs)[0]["id"]
    return {
        "user": user["name"],
        "receiver": receiver.url,
        "theirs": helpers.call_action("webhook_show", id=theirs),
        "known": {
            "id": [
                hook_id,
                attempt_id,
                hook_id.upper(),
                hook_id + " ",
                theirs,
                f" {theirs}\n",
                their_attempt,
                f"{their_attempt} ",
            ],
            "topic": [*topics.subscribable_topics(), "webhook/ping", "dataset"],
            "address": [
                receiver.url + "/fuzz",
                receiver.url + "/fuzz?q=\u00e9",
                "http://169.254.169.254/",
                "gopher://127.0.0.1:6379/_",
                "http://user:pw@127.0.0.1/",
            ],
            "dataset": [dataset["id"], dataset["name"]],
            "organization": [org["id"], org["name"]],
            "limit": [0, 10, -1, 2**63, 2**70, "5", "1e3", 1.5],
            "offset": [0, 10, -1, 2**31, 2**63, 2**70, "5", "1e3", 1.5],
        },
    }


def _count() -> int:
    return model.Session.query(Webhook).count()


def _row(webhook_id: str) -> tuple | None:
    hook = model.Session.get(Webhook, webhook_id, populate_existing=True)
    return (hook.topic, hook.address, hook.secret, hook.active) if hook else None


def _row_of(shown: dict) -> tuple:
    return (shown["topic"], shown["address"], shown["secret"], shown["active"])


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFuzz:
    @pytest.mark.parametrize("action", ACTIONS)
    @pytest.mark.parametrize("caller", ["user", "anonymous"])
    def test_only_expected_errors(self, action, caller, world):
        context_user = world["user"] if caller == "user" else ""

        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
        )
        @given(data=_data(world))
        def check(data):
            before = _count()
            context = {"user": context_user, "ignore_auth": False}
            try:
                result = tk.get_action(action)(context, data)
            except EXPECTED:
                model.Session.rollback()
                assert _count() == before, "a failed call left a webhook behind"
                result = None
            if action == "webhook_create":
                assert _count() in (before, before + 1)
            elif action != "webhook_delete":
                assert _count() == before
            theirs = world["theirs"]
            assert theirs["secret"] not in repr(result)
            assert _row(theirs["id"]) == _row_of(theirs), "another's webhook changed"

        check()


def _data(world):
    known = world["known"]

    def field(name):
        plausible = st.sampled_from(known.get(name, [True, 0, 10, "true", "5"]))
        return st.one_of(plausible, plausible, nasty_text, values)

    fixed = st.fixed_dictionaries(
        {},
        optional={
            **{name: field(name) for name in FIELDS},
            "__extras": values,
            "owner_id": values,
            "secret": values,
        },
    )
    extra = st.dictionaries(texts, values, max_size=2)
    return st.one_of(fixed, st.tuples(fixed, extra).map(lambda p: {**p[1], **p[0]}))


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.parametrize("action", ["webhook_list", "webhook_delivery_list"])
@pytest.mark.parametrize("offset", [2**31, 2**63, 2**70, "99999999999999999999"])
def test_huge_offsets_are_a_validation_error(action, offset, world):
    data = {"offset": offset}
    if action == "webhook_delivery_list":
        data["id"] = world["known"]["id"][0]
    with pytest.raises(tk.ValidationError) as error:
        tk.get_action(action)({"user": world["user"], "ignore_auth": False}, data)
    assert "offset" in error.value.error_dict
