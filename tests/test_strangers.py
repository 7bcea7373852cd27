"""Strangers: someone else's webhook is out of reach, and looks like nothing.

Anyone may register a receiver (with the default ``minimum_auth``). Such a
caller must not learn that another user's webhook exists, change it, read its
log, ping it, take its secret or re-send its events: every per-webhook action
and web page answers for another user's webhook exactly as for an id that does
not exist. Anonymous webhooks belong to whoever holds their id (the original
design), so holding one is not an attack; naming an event id, or guessing the
sequential ids of the delivery log, is.

Real users, real receivers on 127.0.0.1, the delivery job run for real, a
live ``ckan run`` for the HTTP view of the same rules.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import ckan.model as model
import ckanapi
import pytest
import requests
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.cli import webhooks as webhooks_cli
from ckanext.webhooks.model import Webhook, WebhookAttempt, make_webhook_id

PASSWORD = "correct horse battery"
PER_WEBHOOK = (
    "webhook_show",
    "webhook_update",
    "webhook_delete",
    "webhook_delivery_list",
    "webhook_test",
    "webhook_rotate_secret",
)
# Pings are not what these tests count: the limit has tests of its own.
NO_PING_LIMIT = pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
LEVELS_A_STRANGER_MEETS = [
    pytest.param(
        level, marks=pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", level)
    )
    for level in ("none", "editor", "admin")
]
CSRF_TOKEN = re.compile(r'(name="_csrf_token"\s+(?:value|content)=")[^"]*(")')


# -- calling as someone ------------------------------------------------------
def context(user: dict | None) -> dict[str, Any]:
    """An action context for ``user`` (None: an anonymous caller), auth on."""
    return {"user": user["name"] if user else "", "ignore_auth": False}


def call(action: str, user: dict | None, **data: Any) -> Any:
    return helpers.call_action(action, context=context(user), **data)


def as_sysadmin(admin: dict, action: str, **data: Any) -> Any:
    """Set-up and inspection: a sysadmin, past auth."""
    return helpers.call_action(action, context={"user": admin["name"]}, **data)


def blank(text: str, hidden: tuple[str | None, ...]) -> str:
    """``text`` with the ids a caller gave replaced: an echoed id tells nothing."""
    for value in sorted((v for v in hidden if v), key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


def outcome(action: str, user: dict | None, data: dict[str, Any]) -> tuple:
    """What a caller gets: ("ok", result) or (error class, what it says).

    Every id the caller gave is blanked out of the error, so errors about
    different ids compare equal when they say the same thing.
    """
    given = tuple(v for v in data.values() if isinstance(v, str))
    try:
        result = call(action, user, **data)
    except tk.ValidationError as error:
        return "ValidationError", blank(repr(error.error_dict), given)
    except tk.ObjectNotFound as error:
        return "ObjectNotFound", blank(str(error), given)
    except tk.NotAuthorized as error:
        return "NotAuthorized", blank(str(error), given)
    return "ok", result


def data_for(action: str, hook_id: str) -> dict[str, Any]:
    if action == "webhook_update":
        return {"id": hook_id, "topic": "dataset/update"}
    return {"id": hook_id}


def unused_webhook_id() -> str:
    """An id shaped like a real one that no webhook has."""
    while True:
        candidate = "x" + make_webhook_id()[1:]
        if model.Session.get(Webhook, candidate) is None:
            return candidate


def state(hook_id: str) -> dict[str, Any] | None:
    """Everything about a webhook that a stranger might try to change."""
    model.Session.expire_all()
    hook = model.Session.get(Webhook, hook_id)
    if hook is None:
        return None
    columns = (
        "topic",
        "address",
        "owner_id",
        "secret",
        "previous_secret",
        "package_id",
        "organization_id",
        "active",
        "failure_count",
    )
    log = model.Session.query(WebhookAttempt).filter_by(webhook_id=hook_id).count()
    return {**{name: getattr(hook, name) for name in columns}, "log": log}


@pytest.fixture
def people():
    """Two users who may both use webhooks at every level but sysadmin."""
    owner = factories.User(password=PASSWORD)
    stranger = factories.User(password=PASSWORD)
    org = factories.Organization(
        users=[
            {"name": owner["name"], "capacity": "admin"},
            {"name": stranger["name"], "capacity": "admin"},
        ]
    )
    return SimpleNamespace(
        owner=owner,
        stranger=stranger,
        admin=factories.Sysadmin(password=PASSWORD),
        org=org,
    )


def webhook_of(user: dict | None, receiver: Any, path: str, topic: str = "*") -> str:
    return helpers.call_action(
        "webhook_create",
        context={"user": user["name"] if user else "", "ignore_auth": True},
        topic=topic,
        address=f"{receiver.url}{path}",
    )


# -- 1. not yours looks exactly like missing ----------------------------------
@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestNotYoursLooksMissing:
    def _check(self, action: str, caller: dict | None, people, receiver) -> None:
        hook = webhook_of(people.owner, receiver, "/owner")
        before = state(hook)
        theirs = outcome(action, caller, data_for(action, hook))
        absent = outcome(action, caller, data_for(action, unused_webhook_id()))
        assert absent[0] == "ObjectNotFound"
        assert theirs == absent
        assert state(hook) == before, "a stranger changed the webhook"
        assert receiver.count == 0, "a stranger pinged the webhook"

    @pytest.mark.parametrize("level", LEVELS_A_STRANGER_MEETS)
    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_logged_in_stranger(self, action, level, people, receiver):
        self._check(action, people.stranger, people, receiver)

    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_anonymous_caller(self, action, people, receiver):
        self._check(action, None, people, receiver)

    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_padded_id_spellings_look_missing_too(self, action, people, receiver):
        hook = webhook_of(people.owner, receiver, "/owner")
        before = state(hook)
        missing = unused_webhook_id()
        for spelling in (" {}", "{}\n", "\t{} "):
            theirs = outcome(action, people.stranger, data_for(action, hook))
            absent = outcome(
                action, people.stranger, data_for(action, spelling.format(missing))
            )
            assert theirs == absent, repr(spelling)
        assert state(hook) == before

    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_owner_and_sysadmin_still_reach_it(self, action, people, receiver):
        for who in (people.owner, people.admin):
            hook = webhook_of(people.owner, receiver, "/owner")
            got = outcome(action, who, data_for(action, hook))
            assert got[0] == "ok", got

    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_anonymous_webhooks_belong_to_whoever_holds_the_id(
        self, action, people, receiver
    ):
        for who in (None, people.stranger):
            hook = webhook_of(None, receiver, "/anonymous")
            got = outcome(action, who, data_for(action, hook))
            assert got[0] == "ok", got

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "sysadmin")
    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_below_the_minimum_role_is_not_authorized_whatever_the_id(
        self, action, people, receiver
    ):
        hook = webhook_of(people.owner, receiver, "/owner")
        anonymous_hook = webhook_of(None, receiver, "/anonymous")
        for caller in (people.stranger, None):
            got = {
                outcome(action, caller, data_for(action, hook_id))
                for hook_id in (hook, anonymous_hook, unused_webhook_id())
            }
            assert len(got) == 1, got
            assert got.pop()[0] == "NotAuthorized"

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "editor")
    @pytest.mark.parametrize("action", PER_WEBHOOK)
    def test_anonymous_below_editor_is_not_authorized_whatever_the_id(
        self, action, people, receiver
    ):
        hook = webhook_of(people.owner, receiver, "/owner")
        anonymous_hook = webhook_of(None, receiver, "/anonymous")
        got = {
            outcome(action, None, data_for(action, hook_id))
            for hook_id in (hook, anonymous_hook, unused_webhook_id())
        }
        assert len(got) == 1, got
        assert got.pop()[0] == "NotAuthorized"


def _remote_outcome(remote: Any, action: str, data: dict[str, Any]) -> tuple:
    try:
        getattr(remote.action, action)(**data)
    except (
        ckanapi.NotFound,
        ckanapi.NotAuthorized,
        ckanapi.ValidationError,
        ckanapi.CKANAPIError,
    ) as error:
        return type(error).__name__, blank(repr(error.args), (data["id"],))
    return ("ok",)


def _raw_answer(site_url: str, token: str | None, action: str, data: dict) -> tuple:
    response = requests.post(
        f"{site_url}/api/3/action/{action}",
        json=data,
        headers={"Authorization": token} if token else {},
        timeout=60,
    )
    return response.status_code, blank(response.text, (data["id"],))


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_over_http_another_users_webhook_answers_like_a_missing_one(
    live_site, people, receiver
):
    """ckanapi against ``ckan run``: same exception, same JSON error body."""
    hook = webhook_of(people.owner, receiver, "/owner")
    before = state(hook)
    token = factories.APIToken(user=people.stranger["name"])["token"]
    differences = []
    for who, key in (("anonymous", None), ("stranger", token)):
        remote = ckanapi.RemoteCKAN(live_site.url, apikey=key)
        for action in PER_WEBHOOK:
            missing = unused_webhook_id()
            theirs = _remote_outcome(remote, action, data_for(action, hook))
            absent = _remote_outcome(remote, action, data_for(action, missing))
            if absent[0] != "NotFound" or theirs != absent:
                differences.append((who, action, theirs, absent))
            theirs = _raw_answer(live_site.url, key, action, data_for(action, hook))
            absent = _raw_answer(live_site.url, key, action, data_for(action, missing))
            if theirs != absent:
                differences.append((who, action, theirs, absent))
    assert differences == []
    assert state(hook) == before
    assert receiver.count == 0


# -- 2. redelivery ------------------------------------------------------------
@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestRedeliveryReachesOnlyYourOwn:
    """Anonymous A and B, C's and D's webhooks all got one public event."""

    @pytest.fixture
    def scene(self, people, receiver, run_jobs):
        hooks = {
            "a": webhook_of(None, receiver, "/a", topic="dataset/create"),
            "b": webhook_of(None, receiver, "/b", topic="dataset/create"),
            "c": webhook_of(people.owner, receiver, "/c", topic="dataset/create"),
            "d": webhook_of(people.stranger, receiver, "/d", topic="dataset/create"),
        }
        factories.Dataset(owner_org=people.org["id"])
        run_jobs()
        assert receiver.wait_for(4)
        [event_id] = {r.json["id"] for r in receiver.received}
        log = {
            name: [
                entry["id"]
                for entry in as_sysadmin(people.admin, "webhook_delivery_list", id=hook)
            ]
            for name, hook in hooks.items()
        }

        def counts() -> dict[str, int]:
            return {
                name: sum(r.path == f"/{name}" for r in receiver.received)
                for name in hooks
            }

        return SimpleNamespace(
            hooks=hooks,
            event_id=event_id,
            log=log,
            counts=counts,
            c=people.owner,
            d=people.stranger,
            admin=people.admin,
        )

    MISSING_EVENT = "evt_" + "Q" * 24
    MISSING_ENTRY = "987654321012"

    def missing_counterpart(
        self, target: str, named: str | None, own_target: bool, own_hook: bool
    ) -> dict[str, str]:
        """The same call with what is not the caller's replaced by what is not there."""
        if not own_target:
            target = (
                self.MISSING_EVENT if target.startswith("evt_") else self.MISSING_ENTRY
            )
        data = {"id": target}
        if named is not None:
            data["webhook_id"] = named if own_hook else unused_webhook_id()
        return data

    def assert_like_missing(self, caller, data, own_target=False, own_hook=False):
        got = outcome("webhook_redeliver", caller, data)
        absent = outcome(
            "webhook_redeliver",
            caller,
            self.missing_counterpart(
                data["id"], data.get("webhook_id"), own_target, own_hook
            ),
        )
        assert absent[0] == "ObjectNotFound", absent
        assert got == absent, data

    def test_anonymous_caller_naming_no_webhook_gets_nothing(self, scene, run_jobs):
        self.assert_like_missing(None, {"id": scene.event_id})
        run_jobs()
        assert scene.counts() == {"a": 1, "b": 1, "c": 1, "d": 1}

    def test_anonymous_caller_naming_their_webhook(self, scene, run_jobs):
        a = scene.hooks["a"]
        result = call("webhook_redeliver", None, id=scene.event_id, webhook_id=a)
        assert result == {"event_id": scene.event_id, "webhooks": [a], "queued": 1}
        run_jobs()
        assert scene.counts() == {"a": 2, "b": 1, "c": 1, "d": 1}

    def test_user_gets_their_own_webhooks_only(self, scene, run_jobs):
        result = call("webhook_redeliver", scene.c, id=scene.event_id)
        assert result == {
            "event_id": scene.event_id,
            "webhooks": [scene.hooks["c"]],
            "queued": 1,
        }
        run_jobs()
        assert scene.counts() == {"a": 1, "b": 1, "c": 2, "d": 1}

    def test_user_without_a_webhook_there_gets_not_found(self, scene, run_jobs):
        nobody = factories.User()
        self.assert_like_missing(nobody, {"id": scene.event_id})
        for name in ("c", "d"):
            named = {"id": scene.event_id, "webhook_id": scene.hooks[name]}
            self.assert_like_missing(nobody, named)
        run_jobs()
        assert scene.counts() == {"a": 1, "b": 1, "c": 1, "d": 1}

    def test_user_naming_another_users_webhook_gets_not_found(self, scene, run_jobs):
        d = scene.hooks["d"]
        self.assert_like_missing(
            scene.c, {"id": scene.event_id, "webhook_id": d}, own_target=True
        )
        self.assert_like_missing(scene.c, {"id": scene.log["d"][0], "webhook_id": d})
        self.assert_like_missing(
            scene.c, {"id": scene.log["c"][0], "webhook_id": d}, own_target=True
        )
        run_jobs()
        assert scene.counts() == {"a": 1, "b": 1, "c": 1, "d": 1}

    def test_log_ids_of_others_and_their_neighbours(self, scene, run_jobs):
        """Log ids are sequential: try every one around the caller's own."""
        owner_of = {e: name for name, ids in scene.log.items() for e in ids}
        numbers = [int(e) for e in owner_of]
        candidates = [str(n) for n in range(min(numbers) - 3, max(numbers) + 4)]
        wrong = []
        for caller, own, named_options in (
            (scene.c, "c", (None, scene.hooks["c"], scene.hooks["d"])),
            (None, "a", (None, scene.hooks["a"])),
        ):
            for named in named_options:
                own_hook = named == scene.hooks[own]
                for entry in candidates:
                    data = {"id": entry}
                    if named:
                        data["webhook_id"] = named
                    got = outcome("webhook_redeliver", caller, data)
                    own_target = owner_of.get(entry) == own
                    # Anonymous callers reach a webhook only by naming it.
                    reached = own_hook or (named is None and caller is not None)
                    if own_target and reached:
                        want = {
                            "event_id": scene.event_id,
                            "webhooks": [scene.hooks[own]],
                            "queued": 1,
                        }
                        if got != ("ok", want):
                            wrong.append((own, named, entry, got))
                        continue
                    absent = outcome(
                        "webhook_redeliver",
                        caller,
                        self.missing_counterpart(entry, named, own_target, own_hook),
                    )
                    if absent[0] != "ObjectNotFound" or got != absent:
                        wrong.append((own, named, entry, got, absent))
        assert wrong == []
        run_jobs()
        assert scene.counts() == {"a": 2, "b": 1, "c": 2, "d": 1}

    def test_sysadmin_redelivers_to_every_webhook(self, scene, run_jobs):
        result = call("webhook_redeliver", scene.admin, id=scene.event_id)
        assert result == {
            "event_id": scene.event_id,
            "webhooks": sorted(scene.hooks.values()),
            "queued": 4,
        }
        run_jobs()
        assert scene.counts() == {"a": 2, "b": 2, "c": 2, "d": 2}


# -- 3. lists and updates carry no secret -------------------------------------
@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestSecretsStayPut:
    def test_listing_needs_a_login(self, people, receiver):
        webhook_of(None, receiver, "/anonymous")
        assert outcome("webhook_list", None, {})[0] == "NotAuthorized"

    def test_list_entries_carry_no_secret(self, people, receiver):
        mine = webhook_of(people.owner, receiver, "/owner")
        theirs = webhook_of(people.stranger, receiver, "/stranger")
        anonymous = webhook_of(None, receiver, "/anonymous")
        secrets = [
            as_sysadmin(people.admin, "webhook_show", id=h)["secret"]
            for h in (mine, theirs, anonymous)
        ]
        for who, expected in (
            (people.owner, {mine}),
            (people.stranger, {theirs}),
            (people.admin, {mine, theirs, anonymous}),
        ):
            listed = call("webhook_list", who)
            assert {entry["id"] for entry in listed} == expected
            for entry in listed:
                assert "secret" not in entry
                assert "previous_secret" not in entry
            assert not any(secret in repr(listed) for secret in secrets)

    def test_update_returns_no_secret(self, people, receiver):
        for who, owner in ((people.owner, people.owner), (None, None)):
            hook = webhook_of(owner, receiver, "/hook")
            secret = as_sysadmin(people.admin, "webhook_show", id=hook)["secret"]
            updated = call("webhook_update", who, id=hook, topic="dataset/update")
            assert updated["topic"] == "dataset/update"
            assert "secret" not in updated
            assert secret not in repr(updated)

    def test_show_and_rotate_do_return_the_secret(self, people, receiver):
        hook = webhook_of(people.owner, receiver, "/owner")
        shown = call("webhook_show", people.owner, id=hook)
        assert shown["secret"].startswith("whsec_")
        rotated = call("webhook_rotate_secret", people.owner, id=hook)
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != shown["secret"]


# -- 4. web pages --------------------------------------------------------------
class Browser:
    """A test client with its own cookies that posts forms with a CSRF token."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def token(self) -> str:
        page = self.client.get("/user/login").body
        found = re.search(r'name="_csrf_token" value="([^"]+)"', page)
        assert found, "no CSRF token on the login page"
        return found.group(1)

    def login(self, user: dict) -> Browser:
        response = self.client.post(
            "/user/login",
            data={
                "_csrf_token": self.token(),
                "login": user["name"],
                "password": PASSWORD,
            },
        )
        assert "Log out" in response.body
        return self

    def request(self, method: str, url: str, form: dict | None = None) -> Any:
        if method == "GET":
            return self.client.get(url)
        return self.client.post(url, data={"_csrf_token": self.token(), **(form or {})})


def page_answer(response: Any, hook_id: str) -> tuple[int, str]:
    body = CSRF_TOKEN.sub(r"\1<token>\2", blank(response.body, (hook_id,)))
    return response.status_code, body


PAGES = (
    ("GET", "/webhooks/{}", {}),
    ("GET", "/webhooks/{}/delete", {}),
    ("POST", "/webhooks/{}/test", {}),
    ("POST", "/webhooks/{}/redeliver", {"attempt": "entry"}),
    ("POST", "/webhooks/{}/active", {"active": "false"}),
    ("POST", "/webhooks/{}/rotate", {}),
    ("POST", "/webhooks/{}/delete", {"delete": ""}),
)


@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPages:
    @pytest.mark.parametrize("who", ["stranger", "anonymous"])
    def test_another_users_webhook_is_the_same_404_as_a_missing_one(
        self, who, app, people, receiver, run_jobs
    ):
        hook = webhook_of(people.owner, receiver, "/owner", topic="dataset/create")
        factories.Dataset()
        run_jobs()
        entry = as_sysadmin(people.admin, "webhook_delivery_list", id=hook)[0]["id"]
        before = state(hook)
        browser = Browser(app)
        if who == "stranger":
            browser.login(people.stranger)
        differences = []
        for method, url, form in PAGES:
            form = {k: entry if v == "entry" else v for k, v in form.items()}
            missing = unused_webhook_id()
            theirs = page_answer(browser.request(method, url.format(hook), form), hook)
            absent = page_answer(
                browser.request(method, url.format(missing), form), missing
            )
            if absent[0] != 404 or theirs != absent:
                differences.append((method, url, theirs[0], absent[0]))
        assert differences == []
        assert state(hook) == before
        assert receiver.count == 1  # the event; no ping, no redelivery

    def test_the_controllers_page_is_not_stored(self, app, people, receiver):
        mine = webhook_of(people.owner, receiver, "/owner")
        anonymous = webhook_of(None, receiver, "/anonymous")
        for user, hook in (
            (people.owner, mine),
            (people.admin, mine),
            (None, anonymous),
        ):
            browser = Browser(app)
            if user:
                browser.login(user)
            response = browser.request("GET", f"/webhooks/{hook}")
            secret = as_sysadmin(people.admin, "webhook_show", id=hook)["secret"]
            assert response.status_code == 200
            # The secret is shown once, when issued; the page holds the id.
            assert secret not in response.body
            assert "no-store" in response.headers.get("Cache-Control", "")

    def test_the_page_after_anonymous_creation_is_not_stored(self, app, receiver):
        response = Browser(app).request(
            "POST",
            "/webhooks/new",
            {"topic": "dataset/create", "address": receiver.url + "/new"},
        )
        assert response.status_code == 200
        assert 'id="webhook-secret">whsec_' in response.body
        assert "no-store" in response.headers.get("Cache-Control", "")


# -- 8. ids ---------------------------------------------------------------------
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestIds:
    def test_generated_ids_never_start_with_a_dash(self):
        dashed = [i for i in (make_webhook_id() for _ in range(2000)) if i[0] == "-"]
        assert dashed == []

    def test_created_webhooks_ids_never_start_with_a_dash(self, people):
        ids = [
            as_sysadmin(
                people.admin,
                "webhook_create",
                topic="*",
                address=f"http://127.0.0.1:9/{n}",
            )
            for n in range(64)
        ]
        assert [i for i in ids if i.startswith("-")] == []

    def test_the_cli_takes_an_id_after_a_double_dash(self, cli, receiver):
        created = webhook_of(None, receiver, "/dash")
        hook_id = "-" + make_webhook_id()[1:]
        model.Session.execute(
            text("UPDATE webhook SET id = :new WHERE id = :old"),
            {"new": hook_id, "old": created},
        )
        model.Session.commit()
        shown = cli.invoke(webhooks_cli, ["show", "--", hook_id])
        assert shown.exit_code == 0, shown.output
        assert f'"id": "{hook_id}"' in shown.output
        pinged = cli.invoke(webhooks_cli, ["test", "--", hook_id])
        assert pinged.exit_code == 0, pinged.output
        log = cli.invoke(webhooks_cli, ["deliveries", "--", hook_id])
        assert log.exit_code == 0 and "webhook/ping" in log.output, log.output
        deleted = cli.invoke(webhooks_cli, ["delete", "--", hook_id])
        assert deleted.exit_code == 0, deleted.output
        assert state(hook_id) is None


# -- 10. a delete is announced only as widely as the stricter privacy ----------
@pytest.fixture
def cast(receiver):
    """An organization's editor, an outsider, a sysadmin, an anonymous webhook."""
    member, outsider = factories.User(), factories.User()
    org = factories.Organization(users=[{"name": member["name"], "capacity": "editor"}])
    users = {
        "member": member,
        "outsider": outsider,
        "sysadmin": factories.Sysadmin(),
        "anonymous": None,
    }
    for who, user in users.items():
        webhook_of(user, receiver, f"/{who}")

    def received(who: str) -> list[tuple[str, str]]:
        return [
            (r.json["topic"], r.json["entity"]["id"])
            for r in receiver.received
            if r.path == f"/{who}"
            and r.json["topic"].startswith(("dataset", "resource"))
        ]

    return SimpleNamespace(org=org, received=received, forget=receiver.received.clear)


def _make_private(dataset_id: str) -> None:
    """As a sysadmin would, on a dataset that may already be deleted."""
    pkg = model.Package.get(dataset_id)
    pkg.private = True
    model.Session.commit()


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDeletionPrivacy:
    def test_delete_of_a_public_dataset_made_private_before_delivery(
        self, cast, run_jobs
    ):
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        cast.forget()
        helpers.call_action("package_delete", id=dataset["id"])
        _make_private(dataset["id"])
        run_jobs()
        assert cast.received("anonymous") == []
        assert cast.received("outsider") == []
        for reader in ("member", "sysadmin"):
            assert cast.received(reader) == [("dataset/delete", dataset["id"])]

    def test_update_of_a_public_dataset_then_made_private_and_deleted(
        self, cast, run_jobs
    ):
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        cast.forget()
        helpers.call_action("package_patch", id=dataset["id"], notes="public news")
        helpers.call_action("package_patch", id=dataset["id"], private=True)
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()
        assert cast.received("anonymous") == []
        assert cast.received("outsider") == []
        assert ("dataset/delete", dataset["id"]) in cast.received("member")

    def test_resource_delete_of_a_dataset_made_private_before_delivery(
        self, cast, run_jobs
    ):
        dataset = factories.Dataset(owner_org=cast.org["id"])
        resource = factories.Resource(package_id=dataset["id"])
        run_jobs()
        cast.forget()
        helpers.call_action("resource_delete", id=resource["id"])
        _make_private(dataset["id"])
        run_jobs()
        assert cast.received("anonymous") == []
        assert cast.received("outsider") == []
        assert ("resource/delete", resource["id"]) in cast.received("member")


# -- further ways in -----------------------------------------------------------
@NO_PING_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFurtherWaysIn:
    def test_a_private_dataset_filter_says_what_a_missing_one_says(self, people):
        """Otherwise the error would confirm a private dataset's name."""
        private = factories.Dataset(owner_org=people.org["id"], private=True)
        outsider = factories.User()
        for caller in (None, outsider):
            data = {"topic": "*", "address": "http://127.0.0.1:9/x"}
            hidden = outcome(
                "webhook_create", caller, {**data, "dataset": private["name"]}
            )
            absent = outcome(
                "webhook_create", caller, {**data, "dataset": "no-such-dataset"}
            )
            assert hidden[0] == "ValidationError"
            assert hidden == absent
