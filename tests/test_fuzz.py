"""Hostile input: random, unicode, huge and wrongly typed data at every action.

Whatever comes in, an action answers with ValidationError, NotAuthorized or
ObjectNotFound (a 400/403/404 through the API) or succeeds; it never raises
anything else (a 500), and a create that fails leaves no webhook behind. A
ValidationError names the field at fault.

Besides flat values: nested and deep structures (lists of dicts, dicts of
lists, 50 to 1000 levels), huge integers, NaN and infinities, very long
strings, in every parameter of every action, ``data`` of
``webhook_event_publish`` included (as a publisher, so validation is reached).
Deep values are generated as small descriptions (``Deep``) and built just
before the call, so hypothesis never has to print 1000 levels.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

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
    "data",
    "webhook_id",
    "payload",
    "format",
    "headers",
)
# Keys an error may carry besides the fields given: limits name the caller.
NOT_FIELDS_BUT_NAMED = {"owner", "caller"}
PUBLISHER = "webhooks-fuzz-publisher"
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
    "webhook_signing_keys",
    "webhook_event_publish",
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


@dataclasses.dataclass(frozen=True)
class Digits:
    """An integer of ``count`` digits, past Python's int-to-text limit (4300)
    if big enough: described in a line, built by build()."""

    count: int

    def build(self) -> int:
        return -(10 ** (self.count - 1))


huge_numbers = st.sampled_from(
    [
        2**63,
        -(2**63) - 1,
        10**400,
        -(10**4299),
        float("nan"),
        float("inf"),
        -float("inf"),
        1e308,
        5e-324,
    ]
)
long_texts = st.sampled_from(
    [("x", 70_000), ("é", 40_000), ("😀", 20_000), ("\\", 50_000), ('"', 66_000)]
).map(lambda spec: spec[0] * spec[1])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    huge_numbers,
    st.builds(Digits, st.sampled_from([4301, 5000, 100_000])),
    texts,
)


@dataclasses.dataclass(frozen=True)
class Deep:
    """A value ``depth`` levels deep, described in a line, built by build()."""

    shape: str  # "list", "dict", "list of dicts" or "dict of lists"
    depth: int
    leaf: Any

    def build(self) -> Any:
        value = build(self.leaf)
        for _ in range(self.depth):
            if self.shape == "list":
                value = [value]
            elif self.shape == "dict":
                value = {"k": value}
            elif self.shape == "list of dicts":
                value = [{"k": value}]
            else:
                value = {"k": [value]}
        return value


def build(value: Any) -> Any:
    """``value`` with every Deep in it built (the nesting above them is shallow)."""
    if isinstance(value, Deep | Digits):
        return value.build()
    if isinstance(value, list):
        return [build(item) for item in value]
    if isinstance(value, dict):
        return {key: build(item) for key, item in value.items()}
    return value


deep = st.builds(
    Deep,
    shape=st.sampled_from(["list", "dict", "list of dicts", "dict of lists"]),
    depth=st.one_of(st.integers(50, 1000), st.sampled_from([50, 999, 1000])),
    leaf=st.one_of(scalars, long_texts),
)
values = st.recursive(
    st.one_of(scalars, deep, long_texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=8,
)


def names_a_field(error: tk.ValidationError, data: dict[str, Any]) -> bool:
    """Every key of the error is a field: given, known, or the caller/owner."""
    given = {str(key)[:100] for key in data}
    if isinstance(data.get("__extras"), dict):  # navl merges these into the data
        given |= {str(key)[:100] for key in data["__extras"]}
    known = set(FIELDS) | NOT_FIELDS_BUT_NAMED
    keys = set(error.error_dict)
    return bool(keys) and keys <= given | known


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
    # Set-up past auth, as a sysadmin (never counted against ping limits).
    admin = {"user": factories.Sysadmin()["name"]}
    helpers.call_action("webhook_test", context=dict(admin), id=hook_id)
    attempt_id = helpers.call_action(
        "webhook_delivery_list", context=dict(admin), id=hook_id
    )[0]["id"]
    # Someone else's webhook: no input may reach it.
    stranger = factories.User()
    theirs = helpers.call_action(
        "webhook_create",
        context={"user": stranger["name"], "ignore_auth": False},
        topic="*",
        address=receiver.url + "/theirs",
    )
    helpers.call_action("webhook_test", context=dict(admin), id=theirs)
    their_attempt = helpers.call_action(
        "webhook_delivery_list", context=dict(admin), id=theirs
    )[0]["id"]
    event_id = helpers.call_action(
        "webhook_delivery_list", context=dict(admin), id=theirs
    )[0]["event_id"]
    publisher = factories.User(name=PUBLISHER)
    return {
        "user": user["name"],
        "publisher": publisher["name"],
        "receiver": receiver.url,
        "theirs": helpers.call_action("webhook_show", context=dict(admin), id=theirs),
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
                event_id,
            ],
            "webhook_id": [hook_id, theirs, f" {theirs}"],
            "data": [{"a": 1}, {}, '{"a": [1, 2]}', "[]", {"n": Digits(5000)}],
            "topic": [
                *topics.subscribable_topics(),
                "webhook/ping",
                "dataset",
                "custom/fuzz",
                "custom/a/b",
            ],
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


SETTINGS = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}


def _call_and_check(world, action: str, caller: str, data: dict[str, Any]) -> None:
    """One call: an expected error naming its field, or success; no side effects
    on another user's webhook."""
    data = build(data)
    before = _count()
    context = {"user": world.get(caller, ""), "ignore_auth": False}
    try:
        result = tk.get_action(action)(context, data)
    except tk.ValidationError as error:
        model.Session.rollback()
        assert names_a_field(error, data), f"no field named: {list(error.error_dict)}"
        assert _count() == before, "a failed call left a webhook behind"
        result = None
    except EXPECTED:
        model.Session.rollback()
        assert _count() == before, "a failed call left a webhook behind"
        result = None
    if action == "webhook_create":
        assert _count() in (before, before + 1)
    elif action != "webhook_delete":
        assert _count() == before
    theirs = world["theirs"]
    assert theirs["secret"] not in repr(result)[:1_000_000]
    assert _row(theirs["id"]) == _row_of(theirs), "another's webhook changed"


@pytest.mark.ckan_config("ckanext.webhooks.publishers", PUBLISHER)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFuzz:
    @pytest.mark.parametrize("action", ACTIONS)
    @pytest.mark.parametrize("caller", ["user", "anonymous"])
    def test_only_expected_errors(self, action, caller, world):
        @settings(max_examples=50, **SETTINGS)
        @given(data=_data(world))
        def check(data):
            _call_and_check(world, action, caller, data)

        check()

    @pytest.mark.parametrize("action", ACTIONS)
    def test_deep_values_in_every_parameter(self, action, world):
        """50 to 1000 levels of lists and dicts, alone or beside valid fields."""

        @settings(max_examples=25, **SETTINGS)
        @given(
            field=st.sampled_from(FIELDS),
            value=deep,
            rest=_data(world),
            caller=st.sampled_from(["user", "anonymous", "publisher"]),
        )
        def check(field, value, rest, caller):
            _call_and_check(world, action, caller, {**rest, field: value})

        check()

    @pytest.mark.parametrize("action", ACTIONS)
    def test_a_thousand_levels_in_each_field(self, action, world):
        """The same without chance: every field, the deepest shape navl walks."""
        for field in (*FIELDS, "unknown"):
            for shape in ("list of dicts", "dict of lists"):
                value = Deep(shape, 1000, "x")
                for caller in ("user", "publisher"):
                    _call_and_check(world, action, caller, {field: value})

    @pytest.mark.parametrize(
        "extra",
        [
            {"secret": [{}, None]},
            {"__extras": 1.0},
            {"__extras": [None]},
            {"__extras": [{}, None]},
            {"__extras": {"owner_id": "x"}},
            {"id": [{}, None]},
        ],
        ids=repr,
    )
    @pytest.mark.parametrize("action", ACTIONS)
    def test_odd_values_beside_the_callers_own_webhook(self, action, extra, world):
        """Found by the fuzz: with an id that passes auth, these reach navl."""
        own = world["known"]["id"][0]
        for caller in ("user", "publisher"):
            _call_and_check(world, action, caller, {"id": own, **extra})

    def test_publish_only_expected_errors(self, world):
        """As a publisher, so the fuzz reaches validation of ``data``."""

        @settings(max_examples=100, **SETTINGS)
        @given(data=_publish_data(world))
        def check(data):
            _call_and_check(world, "webhook_event_publish", "publisher", data)

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


def _publish_data(world):
    """Mostly valid topics, so that ``data`` is what is judged."""
    known = world["known"]
    return st.fixed_dictionaries(
        {
            "topic": st.one_of(
                st.sampled_from(["custom/fuzz", "custom/a/b"]), nasty_text, values
            ),
            "data": st.one_of(
                st.dictionaries(any_text, values, max_size=4),
                deep,
                values,
                long_texts,
            ),
        },
        optional={
            "dataset": st.one_of(st.sampled_from(known["dataset"]), values),
            "organization": st.one_of(st.sampled_from(known["organization"]), values),
        },
    )


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


def _publish(data: Any) -> dict[str, Any]:
    return tk.get_action("webhook_event_publish")(
        {"user": PUBLISHER, "ignore_auth": False},
        {"topic": "custom/deep", "data": data},
    )


def _custom_receiver_bodies(receiver) -> list[bytes]:
    return [r.body for r in receiver.received if r.path == "/custom"]


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.ckan_config("ckanext.webhooks.publishers", PUBLISHER)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPublishedData:
    @pytest.fixture
    def custom(self, world, receiver):
        """An anonymous webhook on custom/* at /custom of the receiver."""
        return helpers.call_action(
            "webhook_create",
            context={"user": ""},
            topic="custom/*",
            address=receiver.url + "/custom",
        )

    @pytest.mark.parametrize("depth", [1000, 5000, 100_000])
    @pytest.mark.parametrize(
        "shape", ["list", "dict", "list of dicts", "dict of lists"]
    )
    def test_deeply_nested_data_is_a_validation_error_naming_data(
        self, shape, depth, custom
    ):
        with pytest.raises(tk.ValidationError) as refused:
            _publish({"deep": Deep(shape, depth, "leaf").build()})
        assert "data" in refused.value.error_dict

    @pytest.mark.parametrize("depth", [50, 500])
    def test_nested_data_is_delivered_intact_or_refused_naming_data(
        self, depth, custom, receiver, run_jobs
    ):
        try:
            _publish({"deep": Deep("list of dicts", depth, "leaf").build()})
        except tk.ValidationError as error:
            assert "data" in error.error_dict
            return
        run_jobs()
        [body] = _custom_receiver_bodies(receiver)
        assert body.count(b'{"k":') == depth
        assert b'"leaf"' in body

    @pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
    def test_published_data_stays_strict_json(self, number, custom, receiver, run_jobs):
        """Beyond the contract: NaN and Infinity are not JSON, and a receiver's
        parser refuses the whole payload. Refuse them, or send valid JSON."""
        try:
            _publish({"x": number})
        except tk.ValidationError as error:
            assert "data" in error.error_dict
            return
        run_jobs()
        bodies = _custom_receiver_bodies(receiver)
        assert bodies
        for body in bodies:
            json.loads(body, parse_constant=_not_json)
