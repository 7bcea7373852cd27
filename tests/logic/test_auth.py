"""Who may do what: every action x every minimum_auth x every kind of caller.

The expected outcome is written down here from the rules in the issue, not
derived from the code under test:

* ``minimum_auth`` ``none`` lets anyone in (anonymous too), ``editor`` needs
  editor or admin of some organization, ``admin`` needs admin of one,
  ``sysadmin`` needs a sysadmin. Sysadmins always pass.
* On top of that, a webhook owned by a user is controlled by that user and by
  sysadmins; an anonymous webhook by whoever holds its id. To everyone else
  another user's webhook is "not found", exactly as a missing one: a denial
  would confirm that it exists.
* ``webhook_list`` needs a logged-in caller.
* ``webhook_event_publish`` is for sysadmins (and the configured publishers),
  whatever ``minimum_auth`` says; the operator's actions
  (``webhook_status_show``, ``webhook_delivery_pause``,
  ``webhook_delivery_resume``) for sysadmins only.

Each check is a real action call with ``ignore_auth`` off, so the auth
function and the action agree (e.g. redeliver checks each delivery).
"""

from __future__ import annotations

import ckan.model as model
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers

from ckanext.webhooks import delivery
from ckanext.webhooks.model import WebhookEvent

LEVELS = ("none", "editor", "admin", "sysadmin")
LEVEL_PARAMS = [
    pytest.param(
        level, marks=pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", level)
    )
    for level in LEVELS
]
ACTORS = ("anonymous", "user", "member", "editor", "admin", "sysadmin")
PASSES = {
    "none": set(ACTORS),
    "editor": {"editor", "admin", "sysadmin"},
    "admin": {"admin", "sysadmin"},
    "sysadmin": {"sysadmin"},
}
# Whose webhook the actor acts on.
OWN, OTHERS, ANONYMOUS_HOOK = "own", "another user's", "anonymous"
PER_WEBHOOK = (
    "webhook_show",
    "webhook_update",
    "webhook_delete",
    "webhook_delivery_list",
    "webhook_test",
    "webhook_rotate_secret",
    "webhook_redeliver",
)

SYSADMIN_ONLY = (
    "webhook_status_show",
    "webhook_delivery_pause",
    "webhook_delivery_resume",
)


def expected(action: str, level: str, actor: str, ownership: str | None) -> str:
    if action in ("webhook_topic_list", "webhook_signing_keys"):
        return "ok"
    if actor not in PASSES[level]:
        return "denied"
    if action == "webhook_list" and actor == "anonymous":
        return "denied"
    if action in PER_WEBHOOK:
        controls = ownership in (OWN, ANONYMOUS_HOOK) or actor == "sysadmin"
        return "ok" if controls else "not found"
    return "ok"


def expected_publish(actor: str) -> str:
    return "ok" if actor == "sysadmin" else "denied"


class World:
    """Real users and an organization with real memberships."""

    def __init__(self, receiver_url: str):
        self.address = receiver_url + "/hook"
        self.names = {"anonymous": ""}
        for actor in ("user", "member", "editor", "admin", "stranger"):
            self.names[actor] = factories.User()["name"]
        self.names["sysadmin"] = factories.Sysadmin()["name"]
        self.org = factories.Organization(
            users=[
                {"name": self.names[role], "capacity": role}
                for role in ("member", "editor", "admin")
            ]
        )

    def context(self, actor: str) -> dict:
        return {"user": self.names[actor], "ignore_auth": False}

    def webhook(self, actor: str, ownership: str) -> str:
        """A fresh webhook owned as ``ownership`` says, made past auth."""
        owner = {OWN: actor, OTHERS: "stranger", ANONYMOUS_HOOK: "anonymous"}[ownership]
        return helpers.call_action(
            "webhook_create",
            context={"user": self.names[owner], "ignore_auth": True},
            topic="dataset/create",
            address=self.address,
        )

    def delivery(self, webhook_id: str) -> dict:
        """Send a ping past auth, so the webhook has a delivery log entry."""
        admin = {"user": self.names["sysadmin"]}
        helpers.call_action("webhook_test", context=dict(admin), id=webhook_id)
        return helpers.call_action(
            "webhook_delivery_list", context=dict(admin), id=webhook_id
        )[0]


def data_for(action: str, world: World, webhook_id: str | None) -> dict:
    if action == "webhook_create":
        return {"topic": "dataset/update", "address": world.address}
    if action in (
        "webhook_list",
        "webhook_topic_list",
        "webhook_signing_keys",
        *SYSADMIN_ONLY,
    ):
        return {}
    if action == "webhook_update":
        return {"id": webhook_id, "topic": "dataset/update"}
    if action == "webhook_redeliver":
        return {"id": world.delivery(webhook_id)["id"], "webhook_id": webhook_id}
    if action == "webhook_event_publish":
        return {"topic": "custom/matrix", "data": {"n": 1}}
    return {"id": webhook_id}


def outcome(action: str, context: dict, data: dict) -> str:
    try:
        helpers.call_action(action, context=context, **data)
    except tk.NotAuthorized:
        return "denied"
    except tk.ObjectNotFound:
        return "not found"
    except tk.ValidationError:
        return "invalid"
    return "ok"


ACTIONS = (
    "webhook_create",
    "webhook_list",
    "webhook_topic_list",
    "webhook_signing_keys",
    "webhook_event_publish",
    *PER_WEBHOOK,
    *SYSADMIN_ONLY,
)
# Pings are counted per minute; that limit has tests of its own.
NO_PING_LIMIT = pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)


def _cases(action: str):
    for actor in ACTORS:
        if action not in PER_WEBHOOK:
            yield actor, None
            continue
        for ownership in (OWN, OTHERS, ANONYMOUS_HOOK):
            if actor == "anonymous" and ownership == OWN:
                continue  # an anonymous caller's own webhook is an anonymous one
            yield actor, ownership


@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestMatrix:
    @pytest.mark.parametrize("level", LEVEL_PARAMS)
    @pytest.mark.parametrize("action", ACTIONS)
    def test_every_caller(self, action, level, receiver):
        world = World(receiver.url)
        wrong = []
        for actor, ownership in _cases(action):
            hook = world.webhook(actor, ownership) if ownership else None
            data = data_for(action, world, hook)
            got = outcome(action, world.context(actor), data)
            if action == "webhook_event_publish" or action in SYSADMIN_ONLY:
                want = expected_publish(actor)
            else:
                want = expected(action, level, actor, ownership)
            if got != want:
                wrong.append(f"{actor} on {ownership} webhook: {got}, want {want}")
        assert wrong == []


@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestAuthFunctions:
    """The same rules straight through check_access (helpers.call_auth)."""

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "editor")
    @pytest.mark.parametrize(
        "action", [a for a in PER_WEBHOOK if a != "webhook_redeliver"]
    )
    def test_owner_yes_stranger_no(self, action, receiver):
        world = World(receiver.url)
        hook = world.webhook("editor", OWN)
        assert helpers.call_auth(action, world.context("editor"), id=hook)
        assert helpers.call_auth(action, world.context("sysadmin"), id=hook)
        # An admin meets the minimum role: the webhook is simply not there.
        assert outcome(action, world.context("admin"), {"id": hook}) == "not found"
        # Below the minimum role: refused whatever the id.
        for actor in ("user", "anonymous"):
            with pytest.raises(tk.NotAuthorized):
                helpers.call_auth(action, world.context(actor), id=hook)

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "sysadmin")
    def test_denial_messages_say_what_is_needed(self, receiver):
        world = World(receiver.url)
        with pytest.raises(tk.NotAuthorized, match="sysadmins"):
            helpers.call_auth("webhook_create", world.context("admin"))

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "editor")
    def test_membership_of_a_deleted_organization_does_not_count(self, receiver):
        world = World(receiver.url)
        helpers.call_action("organization_delete", id=world.org["id"])
        with pytest.raises(tk.NotAuthorized, match="editor or admin"):
            helpers.call_auth("webhook_create", world.context("editor"))

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "admin")
    def test_demoted_admin_loses_access_at_once(self, receiver):
        world = World(receiver.url)
        hook = world.webhook("admin", OWN)
        helpers.call_action(
            "organization_member_create",
            id=world.org["id"],
            username=world.names["admin"],
            role="editor",
        )
        with pytest.raises(tk.NotAuthorized, match="an admin"):
            helpers.call_auth("webhook_show", world.context("admin"), id=hook)

    def test_unknown_id_is_not_found_not_a_crash(self, receiver):
        world = World(receiver.url)
        for action in PER_WEBHOOK:
            for webhook_id in ("no-such-webhook", "a" * 300):
                got = outcome(action, world.context("user"), {"id": webhook_id})
                assert got == "not found", action


@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWhatEachCallerSees:
    def test_list_shows_own_webhooks_only_and_sysadmin_everything(self, receiver):
        world = World(receiver.url)
        mine = world.webhook("editor", OWN)
        theirs = world.webhook("editor", OTHERS)
        anonymous = world.webhook("editor", ANONYMOUS_HOOK)

        def listed(actor):
            result = helpers.call_action("webhook_list", context=world.context(actor))
            return {hook["id"] for hook in result}

        assert listed("editor") == {mine}
        assert listed("stranger") == {theirs}
        assert listed("user") == set()
        assert listed("sysadmin") == {mine, theirs, anonymous}

    def test_redeliver_by_event_skips_webhooks_of_others(self, receiver):
        world = World(receiver.url)
        mine = world.webhook("editor", OWN)
        theirs = world.webhook("editor", OTHERS)
        dataset = factories.Dataset()
        delivery.expand_events()
        event_id = (
            model.Session.query(WebhookEvent.id)
            .filter_by(package_id=dataset["id"], topic="dataset/create")
            .scalar()
        )
        result = helpers.call_action(
            "webhook_redeliver", context=world.context("editor"), id=event_id
        )
        assert result["webhooks"] == [mine]
        assert theirs not in result["webhooks"]
        assert outcome(
            "webhook_redeliver", world.context("user"), {"id": event_id}
        ) == ("not found")

    def test_secret_is_shown_only_to_those_who_control_the_webhook(self, receiver):
        world = World(receiver.url)
        hook = world.webhook("editor", OWN)
        shown = helpers.call_action(
            "webhook_show", context=world.context("editor"), id=hook
        )
        assert shown["secret"].startswith("whsec_")
        with pytest.raises(tk.ObjectNotFound) as denied:
            helpers.call_action("webhook_show", context=world.context("admin"), id=hook)
        assert shown["secret"] not in str(denied.value)


@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestIdSpellings:
    """Auth must judge the webhook the action will act on, however it is spelt."""

    @pytest.mark.parametrize("action", PER_WEBHOOK[:-1])
    def test_padded_id_of_another_users_webhook_is_not_found(self, action, receiver):
        world = World(receiver.url)
        hook = world.webhook("editor", OTHERS)
        missing = "x" * len(hook)
        for spelling in (" {}", "{} ", "\t{}\n", "\u3000{}", "{}\x1f"):
            data = data_for(action, world, spelling.format(hook))
            got = outcome(action, world.context("editor"), data)
            absent = data_for(action, world, spelling.format(missing))
            assert got == outcome(action, world.context("editor"), absent)
            assert got in ("not found", "invalid"), repr(spelling)
        shown = helpers.call_action(
            "webhook_show", context={"user": world.names["sysadmin"]}, id=hook
        )
        assert shown["topic"] == "dataset/create"

    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_ids_that_cannot_be_stored_are_refused_cleanly(self, action, receiver):
        world = World(receiver.url)
        for bad in ("a\x00b", "\ud800", "x" * 100_000, "evt_\x00", "evt_\udfff"):
            got = outcome(action, world.context("user"), {"id": bad})
            assert got in ("invalid", "not found"), repr(bad[:10])
