"""Validators that turn bad webhook input into messages a person can act on."""

from __future__ import annotations

import json
import re
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.lib.navl.dictization_functions import StopOnError

from ckanext.webhooks import config as cfg
from ckanext.webhooks import topics
from ckanext.webhooks.http import AddressRejected, check_url
from ckanext.webhooks.vocabulary import (
    CUSTOM_PREFIX,
    AttemptOutcome,
    PayloadFormat,
    PayloadKind,
)

__all__ = [
    "webhook_address",
    "webhook_attempt_outcome",
    "webhook_boolean",
    "webhook_dataset",
    "webhook_empty_to_none",
    "webhook_event_data",
    "webhook_format",
    "webhook_format_filter",
    "webhook_group_filter",
    "webhook_headers",
    "webhook_license_filter",
    "webhook_natural_number",
    "webhook_organization",
    "webhook_payload_kind",
    "webhook_positive_number",
    "webhook_publishable_topic",
    "webhook_rate_limit",
    "webhook_string",
    "webhook_tag_filter",
    "webhook_topic",
    "webhook_topics",
    "webhook_unknown_fields",
]

MAX_ADDRESS_LENGTH = 2000
MAX_STRING_LENGTH = 200
MAX_TOPICS = 20  # topics of one webhook


def _encodable(value: str) -> bool:
    """JSON may carry lone surrogates (\\ud800) that PostgreSQL cannot store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def webhook_string(key: Any, data: Any, errors: Any, context: Any) -> None:
    """Accept text only: no numbers, lists or objects where a name is expected.

    Stops the chain on a bad value, so later validators only ever see text.
    """
    value = data.get(key)
    if value is tk.missing or value is None:
        return
    problem = None
    if not isinstance(value, str):
        problem = tk._("Must be a string")
    elif "\x00" in value:
        problem = tk._("Must not contain NUL characters")
    elif not _encodable(value):
        problem = tk._("Must be valid Unicode text (no lone surrogates)")
    elif len(value.strip()) > MAX_ADDRESS_LENGTH:
        problem = tk._("Must be at most {max} characters long").format(
            max=MAX_ADDRESS_LENGTH
        )
    if problem:
        errors[key].append(problem)
        raise StopOnError
    data[key] = value.strip()


def webhook_topic(value: str) -> str:
    if not topics.is_subscribable(value):
        allowed = [*topics.subscribable_topics(), f"{CUSTOM_PREFIX}<name>"]
        raise tk.Invalid(
            tk._("Unknown topic '{topic}'. Allowed topics: {allowed}").format(
                topic=value[:MAX_STRING_LENGTH], allowed=", ".join(allowed)
            )
        )
    return value


def webhook_topics(value: Any) -> list[str]:
    """One topic or a list of them, in order, without repeats."""
    return [webhook_topic(topic) for topic in _filter_values(value, MAX_TOPICS)]


def webhook_attempt_outcome(value: str) -> str:
    allowed = [outcome.value for outcome in AttemptOutcome]
    if value not in allowed:
        raise tk.Invalid(
            tk._("Unknown outcome. Allowed outcomes: {allowed}").format(
                allowed=", ".join(allowed)
            )
        )
    return value


def webhook_address(value: str) -> str:
    """An http(s) URL of a receiver this site may send to.

    What kind of non-public address a name resolved to is never said: that
    would map the internal network for anyone who asks.
    """
    try:
        check_url(value, cfg.address_policy(), unresolvable_ok=True)
    except AddressRejected as reason:
        raise tk.Invalid(
            tk._(
                "The address {reason}. Give an http:// or https:// URL of a "
                "public receiver, e.g. https://example.com/callback"
            ).format(reason=reason)
        ) from None
    return value


def _too_long(value: str) -> None:
    if len(value) > MAX_STRING_LENGTH:
        raise tk.Invalid(
            tk._("Must be at most {max} characters long").format(max=MAX_STRING_LENGTH)
        )


def webhook_dataset(value: str, context: dict[str, Any]) -> str:
    """A dataset id or name the caller can read: stored as the id."""
    _too_long(value)
    pkg = model.Package.get(value)
    if pkg is not None and pkg.state != "deleted":
        try:
            tk.check_access(
                "package_show",
                {"user": context.get("user"), "model": model},
                {"id": pkg.id},
            )
            return pkg.id
        except tk.NotAuthorized:
            pass
    raise tk.Invalid(
        tk._(
            "Dataset '{name}' not found: give the id or name of a dataset you can see"
        ).format(name=value)
    )


def webhook_organization(value: str, context: dict[str, Any]) -> str:
    """An organization id or name: stored as the id."""
    _too_long(value)
    group = model.Group.get(value)
    if group is None or not group.is_organization or group.state != "active":
        raise tk.Invalid(
            tk._(
                "Organization '{name}' not found: give the id or name of an "
                "organization"
            ).format(name=value)
        )
    return group.id


# Each filter field takes one value or a list of at most this many.
MAX_FILTER_VALUES = 50


def _filter_values(value: Any, most: int = MAX_FILTER_VALUES) -> list[str]:
    """One string or a list of strings, stripped, without repeats."""
    items = value if isinstance(value, list) else [value]
    if len(items) > most:
        raise tk.Invalid(tk._("Give at most {max} values").format(max=most))
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise tk.Invalid(tk._("Must be a string or a list of strings"))
        if "\x00" in item or not _encodable(item):
            raise tk.Invalid(tk._("Must be valid Unicode text"))
        item = item.strip()
        _too_long(item)
        if not item:
            raise tk.Invalid(tk._("Must not contain empty values"))
        if item not in found:
            found.append(item)
    return found


def webhook_group_filter(value: Any) -> list[str]:
    """Group ids or names: stored as the ids."""
    ids = []
    for name in _filter_values(value):
        group = model.Group.get(name)
        if group is None or group.is_organization or group.state != "active":
            raise tk.Invalid(
                tk._("Group '{name}' not found: give the id or name of a group").format(
                    name=name
                )
            )
        ids.append(group.id)
    return ids


def webhook_tag_filter(value: Any) -> list[str]:
    return _filter_values(value)


def webhook_format_filter(value: Any) -> list[str]:
    """Resource formats, compared without regard to case (stored upper)."""
    return list(dict.fromkeys(v.upper() for v in _filter_values(value)))


def webhook_license_filter(value: Any) -> list[str]:
    """Licence ids of this site's licence register."""
    known = model.Package.get_license_register()
    values = _filter_values(value)
    for license_id in values:
        if license_id not in known:
            raise tk.Invalid(
                tk._(
                    "Licence '{name}' not found: give the id of a licence of "
                    "this site (license_list)"
                ).format(name=license_id)
            )
    return values


def webhook_empty_to_none(key: Any, data: Any, errors: Any, context: Any) -> None:
    """An empty value clears an optional filter (and skips its validators)."""
    if data.get(key) in ("", None, []):
        data[key] = None
        raise StopOnError


def webhook_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise tk.Invalid(tk._("Must be true or false"))


MAX_PAGING_NUMBER = 2**31 - 1


def webhook_natural_number(key: Any, data: Any, errors: Any, context: Any) -> None:
    """A paging number: an int or digits, 0 or more, small enough for SQL.

    Stops the chain on anything else: navl runs later validators even after
    an error, and CKAN's own number validators then fail on a list, an empty
    string or a number past PostgreSQL's bigint (a 500).
    """
    value = data.get(key)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errors[key].append(tk._("Must be a whole number, 0 or more"))
        raise StopOnError
    if value > MAX_PAGING_NUMBER:
        errors[key].append(tk._("Must be at most {max}").format(max=MAX_PAGING_NUMBER))
        raise StopOnError
    data[key] = value


MAX_RATE_PER_MINUTE = 1_000_000


def webhook_rate_limit(key: Any, data: Any, errors: Any, context: Any) -> None:
    """An owner's ceiling in deliveries per minute: a whole number, 1 or more
    (after ``webhook_natural_number``)."""
    value = data.get(key)
    if value == 0:
        errors[key].append(
            tk._("Must be 1 or more deliveries per minute (leave it empty for none)")
        )
        raise StopOnError
    if value > MAX_RATE_PER_MINUTE:
        errors[key].append(
            tk._("Must be at most {max} deliveries per minute").format(
                max=MAX_RATE_PER_MINUTE
            )
        )
        raise StopOnError


def webhook_positive_number(value: Any) -> float:
    """For config options such as ckanext.webhooks.timeout."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise tk.Invalid(tk._("Must be a number")) from None
    if not number > 0:
        raise tk.Invalid(tk._("Must be greater than 0"))
    return number


MAX_EVENT_DATA_BYTES = 64 * 1024


def webhook_publishable_topic(value: str) -> str:
    if not topics.is_publishable(value):
        raise tk.Invalid(
            tk._(
                "Cannot publish '{topic}': use custom/<name> (lower-case letters, "
                "digits, '.', '_', '-', more levels with '/') or a topic a plugin "
                "declares ({declared})"
            ).format(
                topic=value[:MAX_STRING_LENGTH],
                declared=", ".join(topics.plugin_topics()) or "none here",
            )
        )
    return value


def webhook_event_data(value: Any) -> dict[str, Any]:
    """A JSON object (a dict, or its JSON text from a form) of at most 64 KiB."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise tk.Invalid(tk._("Must be a JSON object")) from None
    if not isinstance(value, dict):
        raise tk.Invalid(tk._("Must be a JSON object"))
    if nesting_depth(value) > MAX_DEPTH:
        raise tk.Invalid(
            tk._("Must be nested at most {max} levels deep").format(max=MAX_DEPTH)
        )
    try:
        # allow_nan=False: NaN and Infinity are not JSON, receivers choke on them.
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
        size = len(encoded.encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        raise tk.Invalid(
            tk._("Must be a JSON object (finite numbers, text keys)")
        ) from None
    if size > MAX_EVENT_DATA_BYTES:
        raise tk.Invalid(
            tk._("Must be at most {max} bytes as JSON").format(max=MAX_EVENT_DATA_BYTES)
        )
    return value


MAX_DEPTH = 32


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and dicts nest in ``value``, counted without recursion
    and only up to ``limit + 1`` (a hostile value may be a million deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _unknown_field_message(schema_keys: Any) -> str:
    allowed = ", ".join(sorted(k for k in schema_keys if not k.startswith("__")))
    return tk._("Unknown field. Allowed fields: {fields}").format(fields=allowed)


def webhook_unknown_fields(key: Any, data: Any, errors: Any, context: Any) -> None:
    """Refuse fields the action does not take, each under its own name."""
    unknown = data.get(key)
    if not isinstance(unknown, dict) or not unknown:
        return
    for name in unknown:
        field = str(name[0] if isinstance(name, tuple) else name)[:100]
        errors[(field,)] = [_unknown_field_message(context.get("schema_keys", []))]


def shape_problems(data_dict: dict[Any, Any], schema: dict[str, Any]) -> dict:
    """What navl cannot even read, per field: navl flattens lists of objects
    into sub-records, recurses without limit, and takes a caller's own
    ``__extras`` or ``__junk`` for its bookkeeping (a 500 or an error under
    another name). Checked before it runs."""
    problems: dict[str, list[str]] = {}
    for key, value in data_dict.items():
        field = str(key)[:100]
        if not isinstance(key, str) or key.startswith("__"):
            problems[field] = [_unknown_field_message(schema)]
        elif nesting_depth(value) > MAX_DEPTH:
            problems[field] = [
                tk._("Must be nested at most {max} levels deep").format(max=MAX_DEPTH)
            ]
        elif isinstance(value, list | tuple) and any(
            isinstance(item, dict | list | tuple) for item in value
        ):
            problems[field] = (
                [tk._("Must not be a list of objects or lists")]
                if key in schema
                else [_unknown_field_message(schema)]
            )
    return problems


def _one_of(value: str, allowed: type[PayloadKind] | type[PayloadFormat]) -> str:
    choices = [item.value for item in allowed]
    if value not in choices:
        raise tk.Invalid(
            tk._("Must be one of: {choices}").format(choices=", ".join(choices))
        )
    return value


def webhook_payload_kind(value: str) -> str:
    """``full`` (the entity as the owner may see it) or ``thin``."""
    return _one_of(value, PayloadKind)


def webhook_format(value: str) -> str:
    """``standard`` or ``cloudevents``."""
    return _one_of(value, PayloadFormat)


MAX_HEADERS = 10
MAX_HEADER_NAME_LENGTH = 64
MAX_HEADER_VALUE_LENGTH = 2048
# RFC 9110 field names are tokens.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# The request's own headers: its framing, the signature, what the consent
# handshake and the transport set. A receiver's gateway gets the rest.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "origin",
        "user-agent",
        "accept-encoding",
    }
)
_RESERVED_PREFIXES = ("content-", "webhook-", "proxy-")


def _parse_header_lines(text: str) -> dict[str, Any] | str:
    """``Name: value`` lines (the web form's way) as a dict, or a problem."""
    found: dict[str, Any] = {}
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            return tk._("Write one header per line, as Name: value")
        found[name.strip()] = value
    return found


def _header_problem(name: Any, value: Any, seen: set[str]) -> str | None:
    """What is wrong with one header, naming it but never its value."""
    if not isinstance(name, str) or not _HEADER_TOKEN.fullmatch(name):
        return tk._(
            "Header names are HTTP tokens (letters, digits and !#$%&'*+-.^_`|~): "
            "{name} is not one"
        ).format(name=json.dumps(str(name)[:MAX_HEADER_NAME_LENGTH]))
    lowered = name.lower()
    if len(name) > MAX_HEADER_NAME_LENGTH:
        return tk._("Header names are at most {max} characters long").format(
            max=MAX_HEADER_NAME_LENGTH
        )
    if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
        return tk._(
            "{name} is set by the sender itself: Host, Content-*, webhook-*, "
            "Origin, User-Agent and the connection's own headers cannot be "
            "given"
        ).format(name=name)
    if lowered in seen:
        return tk._("{name} is given twice").format(name=name)
    seen.add(lowered)
    if not isinstance(value, str):
        return tk._("The value of {name} must be a string").format(name=name)
    if not _PRINTABLE_ASCII.fullmatch(value):
        return tk._(
            "The value of {name} holds a control character (a line break, say) "
            "or a character outside printable ASCII"
        ).format(name=name)
    if not value.strip():
        return tk._("The value of {name} is empty").format(name=name)
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return tk._("The value of {name} is longer than {max} characters").format(
            name=name, max=MAX_HEADER_VALUE_LENGTH
        )
    return None


def webhook_headers(key: Any, data: Any, errors: Any, context: Any) -> None:
    """Extra request headers for the receiver's gateway: a JSON object of
    names to values, or ``Name: value`` lines; empty for none.

    Stored as JSON text. The values are credentials: no message here ever
    holds one.
    """
    value = data.get(key)
    if value in ("", None) or value == {}:
        data[key] = None
        return
    if isinstance(value, str):
        value = _parse_header_lines(value)
        if isinstance(value, str):
            errors[key].append(value)
            raise StopOnError
    if not isinstance(value, dict):
        errors[key].append(tk._("Must be an object of header names to values"))
        raise StopOnError
    if len(value) > MAX_HEADERS:
        errors[key].append(tk._("At most {max} headers").format(max=MAX_HEADERS))
        raise StopOnError
    seen: set[str] = set()
    cleaned: dict[str, str] = {}
    for name, header_value in value.items():
        if isinstance(header_value, str):
            header_value = header_value.strip(" ")
        problem = _header_problem(name, header_value, seen)
        if problem:
            errors[key].append(problem)
            raise StopOnError
        cleaned[name] = header_value
    data[key] = json.dumps(cleaned, separators=(",", ":"))
