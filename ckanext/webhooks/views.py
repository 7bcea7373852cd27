"""The web interface: list, create, inspect and manage webhooks.

Every view calls the ``webhook_*`` actions, so the web pages obey exactly the
same authorization and validation as the API.
"""

from __future__ import annotations

import json
from typing import Any, cast

import ckan.plugins.toolkit as tk
from ckan.config.middleware.flask_app import csrf
from ckan.types import Context
from flask import Blueprint, current_app, make_response, session

from ckanext.webhooks.vocabulary import AttemptOutcome, PayloadFormat, PayloadKind

__all__ = [
    "consent_callbacks",
    "signing_keys",
    "webhooks",
    "webhooks_admin",
    "webhooks_metrics",
]

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Receivers call back here to consent (CloudEvents abuse protection). They
# are not users of the site and have no session: the token in the URL is
# their proof, so no CSRF token is asked for.
consent_callbacks = Blueprint(
    "webhooks_consent", __name__, url_prefix="/webhooks/consent"
)
csrf.exempt(consent_callbacks)
# The site's public keys where receivers look for them, for anyone.
signing_keys = Blueprint("webhooks_keys", __name__, url_prefix="/.well-known/webhooks")

PAGE_SIZE = 50
DELIVERY_LOG_SIZE = 25  # events a page of the delivery log shows
FORM_FIELDS = (
    "topic",
    "address",
    "dataset",
    "organization",
    "rate_limit",
    "payload",
    "format",
    "headers",
)
# Open-data filters: one field each in the form, values separated by commas.
LIST_FIELDS = ("group", "tag", "res_format", "license_id")


def _context() -> Context:
    return cast(
        Context, {"user": tk.current_user.name, "auth_user_obj": tk.current_user}
    )


def _call(action: str, data_dict: dict[str, Any]) -> Any:
    """Run an action for the current user; a missing or forbidden webhook aborts."""
    try:
        return tk.get_action(action)(_context(), data_dict)
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Webhook not found"))
    except tk.NotAuthorized as error:
        return tk.abort(403, str(error) or tk._("Not authorized to see this page"))


@webhooks.before_request
def _require_csrf_token() -> None:
    """Check the CSRF token of every form POST.

    CKAN 2.10 and 2.11 exempt extension views from CSRF checks unless
    ``ckan.csrf_protection.ignore_extensions`` is off; these forms change and
    delete webhooks, so they are checked whatever that option says. Requests
    authenticated by an API token header are exempt, as in CKAN core.
    """
    if tk.request.method != "POST" or not current_app.config.get("WTF_CSRF_ENABLED"):
        return
    if tk.g.get("csrf_valid") or tk.g.get("_csrf_exempt_view"):
        return
    current_app.extensions["csrf"].protect()


@webhooks.route("", strict_slashes=False)
def index() -> Any:
    if not tk.current_user.is_authenticated:
        return tk.redirect_to("user.login", came_from=tk.url_for("webhooks.index"))
    page = tk.h.get_page_number(tk.request.args)
    search = {
        "q": tk.request.args.get("q", "").strip()[:200],
        "state": tk.request.args.get("state", ""),
    }
    query: dict[str, Any] = {"limit": PAGE_SIZE + 1, "offset": (page - 1) * PAGE_SIZE}
    if search["q"]:
        query["q"] = search["q"]
    if search["state"] in ("active", "disabled"):
        query["active"] = search["state"] == "active"
    found = _call("webhook_list", query)
    return tk.render(
        "webhooks/index.html",
        {
            "webhooks": found[:PAGE_SIZE],
            "page": page,
            "has_next": len(found) > PAGE_SIZE,
            "first": (page - 1) * PAGE_SIZE + 1,
            "search": search,
            "can_create": tk.h.check_access("webhook_create"),
        },
    )


def _topic_options() -> list[dict[str, str]]:
    labels = {
        "*": tk._("* (every event)"),
        "dataset/*": tk._("dataset/* (created, updated or deleted)"),
        "resource/*": tk._("resource/* (created, updated or deleted)"),
        "organization/*": tk._("organization/* (created, updated or deleted)"),
        "group/*": tk._("group/* (created, updated or deleted)"),
        "custom/*": tk._("custom/* (every custom event)"),
    }
    return [
        {"value": topic, "text": labels.get(topic, topic)}
        for topic in _call("webhook_topic_list", {})
    ]


def _topic_groups() -> list[dict[str, Any]]:
    """The topic options as the form's checkboxes, grouped by kind."""
    kinds = {
        "*": tk._("Everything"),
        "dataset": tk._("Datasets"),
        "resource": tk._("Resources"),
        "organization": tk._("Organizations"),
        "group": tk._("Groups"),
    }
    groups: dict[str, dict[str, Any]] = {}
    everything_first = sorted(_topic_options(), key=lambda o: o["value"] != "*")
    for n, option in enumerate(everything_first):
        kind = option["value"].split("/", 1)[0]
        label = kinds.get(kind, tk._("Custom and plugin topics"))
        slug = option["value"].replace("/", "-").replace("*", "all")
        # The first box (*) is the one the error summary links to.
        option_id = f"field-topic-{slug}" if n else "field-topic"
        group = groups.setdefault(label, {"label": label, "options": []})
        group["options"].append({**option, "id": option_id})
    return list(groups.values())


def _custom_topics(text: str) -> list[str]:
    """Typed topics, separated by commas."""
    return [topic.strip() for topic in text.split(",") if topic.strip()]


def _posted_form(clearing: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the form shows again, what the action gets) from a posted form.

    Empty optional fields mean "none": left out on create, sent empty on
    edit (``clearing``), where an empty filter is cleared and an empty
    address or topic refused.
    """
    data = {
        field: tk.request.form.get(field, "").strip()
        for field in FORM_FIELDS + LIST_FIELDS
    }
    submitted: dict[str, Any] = {
        key: value for key, value in data.items() if value or clearing
    }
    for field in LIST_FIELDS:
        if data[field]:
            submitted[field] = [v.strip() for v in data[field].split(",")]
    for field in ("payload", "format"):  # never cleared: left out, kept
        if not data[field]:
            submitted.pop(field, None)
    if not data["headers"]:
        # Values are never shown, so an empty field keeps the headers an
        # edit page could not show (webhook_update with {} removes them).
        submitted.pop("headers", None)
    # Checked boxes, after any custom/<name> topics typed rather than picked.
    data["topic"] = [t for t in tk.request.form.getlist("topic") if t.strip()]
    data["custom_topic"] = tk.request.form.get("custom_topic", "").strip()
    chosen = [*_custom_topics(data["custom_topic"]), *data["topic"]]
    submitted.pop("topic", None)
    if chosen or clearing:
        submitted["topic"] = chosen
    return data, submitted


def _form_errors(
    error: tk.ValidationError, data: dict[str, Any]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The errors by field, a typed topic's on the field it was typed in."""
    errors = dict(cast("dict[str, list[str]]", error.error_dict))
    typed = _custom_topics(data.get("custom_topic", ""))
    if any(t in str(errors.get("topic", "")) for t in typed):
        errors["custom_topic"] = errors.pop("topic")
    # Header values are credentials: the form comes back with the names
    # only, to be filled in again.
    data["headers"] = _header_names_only(data.get("headers", ""))
    return errors, error.error_summary


def _render_form(
    template: str, data: dict[str, Any], errors: dict, summary: dict, **extra: Any
) -> Any:
    return tk.render(
        template,
        {
            "data": data,
            "errors": errors,
            "error_summary": summary,
            "topic_groups": _topic_groups(),
            "payload_options": [
                {"value": kind.value, "text": kind.value} for kind in PayloadKind
            ],
            "format_options": [
                {"value": wrapping.value, "text": wrapping.value}
                for wrapping in PayloadFormat
            ],
            **extra,
        },
    )


@webhooks.route("/new", methods=["GET", "POST"])
def new() -> Any:
    if not tk.h.check_access("webhook_create"):
        tk.abort(403, tk._("You are not allowed to create webhooks on this site"))
    errors: dict[str, list[str]] = {}
    error_summary: dict[str, str] = {}
    if tk.request.method == "GET":
        dataset = tk.request.args.get("dataset", "")
        data: dict[str, Any] = {
            # From a dataset's page: every change of that dataset.
            "topic": ["*"] if dataset else ["dataset/update"],
            "dataset": dataset,
            "organization": tk.request.args.get("organization", ""),
        }
    else:
        data, submitted = _posted_form(clearing=False)
        try:
            webhook_id = tk.get_action("webhook_create")(_context(), submitted)
        except tk.ValidationError as error:
            errors, error_summary = _form_errors(error, data)
        except tk.NotAuthorized as error:
            return tk.abort(403, str(error))
        else:
            tk.h.flash_success(tk._("Webhook created."))
            return _to_secret_shown_once(webhook_id, "created")
    return _render_form(
        "webhooks/new.html",
        data,
        errors,
        error_summary,
        form_action=tk.h.url_for("webhooks.new"),
    )


@webhooks.route("/<id>/edit", methods=["GET", "POST"])
def edit(id: str) -> Any:
    webhook = _call("webhook_show", {"id": id})
    errors: dict[str, list[str]] = {}
    error_summary: dict[str, str] = {}
    if tk.request.method == "GET":
        offered = {o["value"] for o in _topic_options()}
        data: dict[str, Any] = {
            "topic": [t for t in webhook["topics"] if t in offered],
            "custom_topic": ", ".join(t for t in webhook["topics"] if t not in offered),
            "address": webhook["address"],
            "dataset": tk.h.webhooks_dataset_label(webhook["dataset"]),
            "organization": tk.h.webhooks_organization_label(webhook["organization"]),
            "rate_limit": webhook["rate_limit"] or "",
            "group": ", ".join(tk.h.webhooks_group_labels(webhook["group"])),
            **{
                field: ", ".join(webhook[field] or ())
                for field in LIST_FIELDS
                if field != "group"
            },
            "payload": webhook["payload"],
            "format": webhook["format"],
            "headers": "",  # values are never shown: empty keeps them
        }
    else:
        data, submitted = _posted_form(clearing=True)
        try:
            _call("webhook_update", {**submitted, "id": id})
        except tk.ValidationError as error:
            errors, error_summary = _form_errors(error, data)
        else:
            tk.h.flash_success(tk._("Webhook saved."))
            if submitted["address"] != webhook["address"]:
                tk.h.flash_notice(
                    tk._(
                        "The address changed: the new receiver's consent, "
                        "where this site asks for it, starts afresh."
                    )
                )
            return tk.redirect_to("webhooks.read", id=id)
    return _render_form(
        "webhooks/edit.html",
        data,
        errors,
        error_summary,
        webhook=webhook,
        form_action=tk.h.url_for("webhooks.edit", id=id),
    )


# The session names the webhook whose secret the next GET of its secret page
# may show, once: a reload, or anyone else, finds nothing there. Only the id
# is kept in the session; the secret is read when the page is shown.
SECRET_ONCE = "webhooks_secret_once"


def _to_secret_shown_once(webhook_id: str, why: str) -> Any:
    """Post, redirect, get: the secret is shown by a page that can be
    reloaded without creating or rotating anything again."""
    session[SECRET_ONCE] = {"id": webhook_id, "why": why}
    return tk.redirect_to("webhooks.secret", id=webhook_id)


@webhooks.route("/<id>/secret")
def secret(id: str) -> Any:
    webhook = _call("webhook_show", {"id": id})
    once = session.get(SECRET_ONCE) or {}
    if once.get("id") != webhook["id"]:
        tk.h.flash_notice(
            tk._(
                "The signing secret is shown only once, right after it is "
                "issued. Rotate the secret to get a new one."
            )
        )
        return tk.redirect_to("webhooks.read", id=id)
    session.pop(SECRET_ONCE, None)
    return _showing_secret(
        tk.render(
            "webhooks/created.html",
            {"webhook": webhook, "rotated": once.get("why") == "rotated"},
        )
    )


def _header_names_only(lines: str) -> str:
    return "\n".join(
        line.partition(":")[0].strip() + ": "
        for line in lines.splitlines()
        if line.strip()
    )


def _showing_secret(page: str) -> Any:
    """A page that shows a signing secret: no cache may keep it."""
    tk.request.environ["__no_cache__"] = True  # CKAN then marks it private
    response = make_response(page)
    response.cache_control.no_store = True
    return response


@webhooks.route("/<id>")
def read(id: str) -> Any:
    webhook = _call("webhook_show", {"id": id})
    page = tk.h.get_page_number(tk.request.args)
    outcome = tk.request.args.get("outcome") or None
    query: dict[str, Any] = {
        "id": id,
        "by_event": True,
        "limit": DELIVERY_LOG_SIZE + 1,
        "offset": (page - 1) * DELIVERY_LOG_SIZE,
    }
    if outcome in {item.value for item in AttemptOutcome}:
        query["outcome"] = outcome
    else:
        outcome = None
    events = _call("webhook_delivery_list", query)
    return _showing_secret(
        tk.render(
            "webhooks/read.html",
            {
                "webhook": webhook,
                "log_events": events[:DELIVERY_LOG_SIZE],
                "log_page": page,
                "log_has_next": len(events) > DELIVERY_LOG_SIZE,
                "log_outcome": outcome,
                "outcomes": list(AttemptOutcome),
            },
        )
    )


def _call_or_flash(action: str, data_dict: dict[str, Any]) -> Any | None:
    """``_call``, with a refusal (a limit, say) flashed as a message on the
    next page rather than an error page; None when refused."""
    try:
        return _call(action, data_dict)
    except tk.ValidationError as error:
        for messages in error.error_dict.values():
            for message in messages if isinstance(messages, list) else [messages]:
                tk.h.flash_error(str(message))
        return None


@webhooks.route("/<id>/test", methods=["POST"])
def test(id: str) -> Any:
    result = _call_or_flash("webhook_test", {"id": id})
    if result is None:
        return tk.redirect_to("webhooks.read", id=id)
    if result["success"]:
        tk.h.flash_success(
            tk._(
                "Test ping delivered: the receiver answered {status} in {ms} ms."
            ).format(status=result["status_code"], ms=result["latency_ms"])
        )
    else:
        tk.h.flash_error(
            tk._("Test ping failed: {reason}").format(
                reason=result["error"]
                or tk._("the receiver answered {status}").format(
                    status=result["status_code"]
                )
            )
        )
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/redeliver", methods=["POST"])
def redeliver(id: str) -> Any:
    attempt_id = tk.request.form.get("attempt", "")
    _call("webhook_show", {"id": id})
    # Named with this webhook: another webhook's entries are not found.
    if _call_or_flash("webhook_redeliver", {"id": attempt_id, "webhook_id": id}):
        tk.h.flash_success(
            tk._(
                "The event is queued for delivery again; the new attempt "
                "appears in the log once a worker has sent it."
            )
        )
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/active", methods=["POST"])
def set_active(id: str) -> Any:
    active = tk.request.form.get("active") == "true"
    if _call_or_flash("webhook_update", {"id": id, "active": active}):
        tk.h.flash_success(
            tk._("Webhook enabled.") if active else tk._("Webhook disabled.")
        )
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/verify", methods=["POST"])
def verify(id: str) -> Any:
    result = _call_or_flash("webhook_verify", {"id": id})
    if result is None:
        return tk.redirect_to("webhooks.read", id=id)
    if result["verified"]:
        tk.h.flash_success(tk._("The receiver consents: deliveries can start."))
    elif result["waiting_for_callback"]:
        tk.h.flash_notice(
            tk._(
                "The receiver answered and will consent by calling back; "
                "deliveries wait until it does."
            )
        )
    else:
        tk.h.flash_error(
            tk._("The receiver did not consent: {reason}").format(
                reason=result["error"]
            )
        )
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/recover", methods=["POST"])
def recover(id: str) -> Any:
    since = tk.request.form.get("since", "").strip()
    result = _call_or_flash("webhook_recover", {"id": id, "since": since})
    if result is not None:
        more = ""
        if not result["complete"]:
            more = " " + tk._(
                "More events remain: once these are delivered, recover again "
                "from the time of the last one (or page on with the API's "
                "webhook_recover and its next)."
            )
        queued = tk.ungettext(
            "{n} missed event is queued for delivery again.",
            "{n} missed events are queued for delivery again.",
            result["queued"],
        )
        tk.h.flash_success(queued.format(n=result["queued"]) + more)
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/renew", methods=["POST"])
def renew(id: str) -> Any:
    _call("webhook_renew", {"id": id})
    tk.h.flash_success(tk._("Webhook renewed."))
    return tk.redirect_to("webhooks.read", id=id)


@webhooks.route("/<id>/rotate", methods=["POST"])
def rotate_secret(id: str) -> Any:
    _call("webhook_rotate_secret", {"id": id})
    tk.h.flash_success(
        tk._(
            "New secret issued. For a while deliveries are signed with both "
            "the old and the new secret, so your receiver can switch over."
        )
    )
    return _to_secret_shown_once(id, "rotated")


@webhooks.route("/<id>/delete", methods=["GET", "POST"])
def delete(id: str) -> Any:
    webhook = _call("webhook_show", {"id": id})
    if tk.request.method == "GET":
        return tk.render("webhooks/delete.html", {"webhook": webhook})
    if "cancel" in tk.request.form:
        return tk.redirect_to("webhooks.read", id=id)
    _call("webhook_delete", {"id": id})
    tk.h.flash_success(tk._("Webhook deleted."))
    if tk.current_user.is_authenticated:
        return tk.redirect_to("webhooks.index")
    return tk.redirect_to("home.index")


@consent_callbacks.route("/<id>/<token>", methods=["GET", "POST"])
def grant(id: str, token: str) -> Any:
    """A receiver's consent by callback; plain text, for programs."""
    data = {"id": id, "token": token}
    rate = tk.request.headers.get("WebHook-Allowed-Rate")
    if rate is not None:
        data["allowed_rate"] = rate
    try:
        tk.get_action("webhook_consent")(cast(Context, {}), data)
    except (tk.ObjectNotFound, tk.ValidationError):
        return _plain(404, "Not found\n")
    return _plain(200, "Consent recorded: deliveries to this receiver can start.\n")


def _plain(status: int, text: str) -> Any:
    response = make_response(text, status)
    response.mimetype = "text/plain"
    return response


@signing_keys.route("/keys.json")
def public_keys() -> Any:
    """``webhook_signing_keys`` as a file: whatever minimum_auth says."""
    keys = tk.get_action("webhook_signing_keys")(cast(Context, {}), {})
    response = make_response(json.dumps(keys, indent=2) + "\n")
    response.mimetype = "application/json"
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


# The operator's pages (the admin tab, metrics) live in their own module;
# their forms are checked for CSRF like these.
from ckanext.webhooks.operator_views import (  # noqa: E402
    webhooks_admin,
    webhooks_metrics,
)

webhooks_admin.before_request(_require_csrf_token)
