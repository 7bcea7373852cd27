"""``ckan webhooks ...``: the operator's command line."""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import click

__all__ = ["webhooks"]

DISPATCH_MAX_BACKOFF = 30.0  # seconds between tries while the database is down


def _context(user: str | None = None) -> dict[str, Any]:
    site_user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    return {"user": user or site_user["name"], "ignore_auth": True, "model": model}


def _call(action: str, data: dict[str, Any], user: str | None = None) -> Any:
    try:
        return tk.get_action(action)(_context(user), data)
    except tk.ValidationError as error:
        tk.error_shout(f"Invalid: {json.dumps(error.error_dict, ensure_ascii=False)}")
    except tk.ObjectNotFound as error:
        tk.error_shout(f"Not found: {error.message or data.get('id')}")
    except tk.NotAuthorized as error:
        tk.error_shout(f"Not authorized: {error.message}")
    raise click.exceptions.Exit(1)


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group()
def webhooks() -> None:
    """Manage webhooks and hand their events to the job queue."""


@webhooks.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--offset", default=0)
def list_(limit: int, offset: int) -> None:
    """List every webhook (id, topics, active, address host)."""
    for hook in _call("webhook_list", {"limit": limit, "offset": offset}):
        state = "active" if hook["active"] else "disabled"
        subscribed = ",".join(hook["topics"])
        click.echo(f"{hook['id']}  {subscribed:<16} {state:<8} {hook['address']}")


@webhooks.command()
@click.argument("webhook_id")
def show(webhook_id: str) -> None:
    """Show one webhook as JSON."""
    _echo(_call("webhook_show", {"id": webhook_id}))


@webhooks.command()
@click.argument("topic")
@click.argument("address")
@click.option(
    "--topic", "more_topics", multiple=True, help="another topic (repeat: several)"
)
@click.option("--dataset", help="only events of this dataset (id or name)")
@click.option("--organization", help="only events of this organization")
@click.option(
    "--group", multiple=True, help="only datasets in this group (repeat: any)"
)
@click.option("--tag", multiple=True, help="only datasets with this tag (repeat: any)")
@click.option(
    "--res-format", multiple=True, help="only datasets with this resource format"
)
@click.option("--license-id", multiple=True, help="only datasets under this licence")
@click.option("--user", help="owner of the new webhook (default: anonymous)")
@click.option("--payload", type=click.Choice(["full", "thin"]), help="default: full")
@click.option(
    "--format",
    "wrapping",
    type=click.Choice(["standard", "cloudevents"]),
    help="default: standard",
)
@click.option(
    "--header", "headers", multiple=True, help="an extra header, as 'Name: value'"
)
def create(
    topic: str,
    address: str,
    dataset: str | None,
    organization: str | None,
    user: str | None,
    payload: str | None,
    wrapping: str | None,
    headers: tuple[str, ...],
    more_topics: tuple[str, ...],
    **filters: tuple[str, ...],
) -> None:
    """Create a webhook and print its id."""
    data: dict[str, Any] = {
        "topic": [topic, *more_topics] if more_topics else topic,
        "address": address,
    }
    if dataset:
        data["dataset"] = dataset
    if organization:
        data["organization"] = organization
    if payload:
        data["payload"] = payload
    if wrapping:
        data["format"] = wrapping
    if headers:
        data["headers"] = "\n".join(headers)
    data.update({field: list(values) for field, values in filters.items() if values})
    context = {"user": user or "", "ignore_auth": True, "model": model}
    try:
        click.echo(tk.get_action("webhook_create")(context, data))
    except tk.ValidationError as error:
        tk.error_shout(f"Invalid: {json.dumps(error.error_dict, ensure_ascii=False)}")
        raise click.exceptions.Exit(1) from None


@webhooks.command()
@click.argument("webhook_id")
def delete(webhook_id: str) -> None:
    """Delete a webhook."""
    _call("webhook_delete", {"id": webhook_id})
    click.echo(f"Deleted {webhook_id}")


@webhooks.command()
@click.argument("webhook_id")
def test(webhook_id: str) -> None:
    """Send a webhook/ping now and print the outcome (exit 1 if it failed)."""
    result = _call("webhook_test", {"id": webhook_id})
    _echo(result)
    if not result["success"]:
        raise click.exceptions.Exit(1)


@webhooks.command()
@click.argument("webhook_id")
def verify(webhook_id: str) -> None:
    """Ask the receiver for its consent now and print the outcome (exit 1 if
    it has not consented)."""
    result = _call("webhook_verify", {"id": webhook_id})
    _echo(result)
    if not result["verified"]:
        raise click.exceptions.Exit(1)


@webhooks.command()
@click.argument("webhook_id")
@click.option("--since", required=True, help="an ISO 8601 time or an event id")
@click.option("--until", help="an ISO 8601 time or an event id (default: now)")
def recover(webhook_id: str, since: str, until: str | None) -> None:
    """Queue again the events a webhook missed since a time, in order."""
    data = {"id": webhook_id, "since": since}
    if until:
        data["until"] = until
    total = 0
    while True:
        result = _call("webhook_recover", data)
        total += result["queued"]
        if result["complete"]:
            break
        data["since"] = result["next"]
    click.echo(f"{total} events queued for {webhook_id}")


@webhooks.command()
@click.argument("webhook_id")
def renew(webhook_id: str) -> None:
    """Renew an anonymous webhook's lease; print when it now expires."""
    result = _call("webhook_renew", {"id": webhook_id})
    click.echo(f"{result['id']} expires {result['expires'] or 'never'}")


@webhooks.command()
@click.argument("webhook_id")
@click.option("--limit", default=20, show_default=True)
def deliveries(webhook_id: str, limit: int) -> None:
    """The delivery log of a webhook, newest first."""
    for item in _call("webhook_delivery_list", {"id": webhook_id, "limit": limit}):
        status = item["status_code"] or item["error"]
        click.echo(
            f"{item['id']:>8}  {item['created']}  {item['topic']:<16} "
            f"try {item['attempt']}  {status}  {item['latency_ms']} ms  "
            f"{item['outcome']}"
        )


@webhooks.command()
@click.argument("delivery_or_event_id")
def redeliver(delivery_or_event_id: str) -> None:
    """Send an event again (a delivery log id or an evt_ id)."""
    _echo(_call("webhook_redeliver", {"id": delivery_or_event_id}))


@webhooks.command()
def keygen() -> None:
    """Print a new ed25519 signing key, as a line of the CKAN ini file, and
    its public key (what webhook_signing_keys will publish).

    To rotate, add the new key beside the old one (space-separated), wait
    until receivers trust its public key, then remove the old one.
    """
    from ckanext.webhooks import signing_keys

    key = signing_keys.generate()
    click.echo(f"{signing_keys.OPTION} = {key.secret_key}")
    click.echo(f"# public key (id {key.key_id}): {key.public_key}")


@webhooks.command()
def prune() -> None:
    """Delete old events and log entries, and long-disabled webhooks."""
    from ckanext.webhooks.retention import prune as prune_all

    counts = prune_all()
    click.echo(
        f"Pruned {counts['events']} events, {counts['attempts']} log entries, "
        f"{counts['webhooks']} disabled webhooks"
    )


@webhooks.command()
@click.option("--loop", is_flag=True, help="keep going (run it as a service)")
@click.option("--interval", default=5.0, show_default=True, help="seconds per poll")
@click.option("--for", "duration", type=float, help="with --loop: stop after this")
def dispatch(loop: bool, interval: float, duration: float | None) -> None:
    """Wake a worker for due retries and for events a Redis outage held back.

    The stock `ckan jobs worker` runs no scheduler: run this every minute
    from cron, or once with --loop as a service, beside the workers.
    """
    from ckanext.webhooks.delivery import dispatch as dispatch_once
    from ckanext.webhooks.delivery.queue import dispatch_or_none

    stop = []
    signal.signal(signal.SIGTERM, lambda *args: stop.append(True))
    deadline = time.monotonic() + duration if duration else None
    failures = 0
    while True:
        # Looping, it outlives database and Redis outages: it logs, waits
        # longer after each failure (up to DISPATCH_MAX_BACKOFF) and goes on.
        result = dispatch_or_none() if loop else dispatch_once()
        failures = 0 if result is not None else failures + 1
        if result is not None and (not loop or result["woken"]):
            click.echo(
                f"{result['events']} events, {result['deliveries']} deliveries "
                f"and {result['handshakes']} handshakes waiting; "
                f"worker {'woken' if result['woken'] else 'not woken'}"
            )
        if not loop or stop or (deadline and time.monotonic() >= deadline):
            break
        pause = min(interval * 2 ** min(failures, 10), DISPATCH_MAX_BACKOFF)
        resume = time.monotonic() + max(pause, interval)
        while not stop and time.monotonic() < resume:
            time.sleep(min(0.2, max(0.0, resume - time.monotonic())))
    sys.stdout.flush()


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


@webhooks.command()
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option(
    "--max-age",
    type=float,
    help="exit 1 when the oldest waiting item is older (seconds)",
)
def status(as_json: bool, max_age: float | None) -> None:
    """Delivery figures; exits 1 while paused or when --max-age is exceeded."""
    from ckanext.webhooks.status import oldest_due_age

    figures = _call("webhook_status_show", {})
    problems = []
    if figures["paused"]:
        problems.append(f"delivery is paused (by {figures['paused_by']})")
    if max_age is not None and oldest_due_age(figures) > max_age:
        problems.append(
            f"the oldest waiting item is {oldest_due_age(figures):.0f} s old"
            f" (more than {max_age:g} s)"
        )
    if as_json:
        _echo({**figures, "healthy": not problems, "problems": problems})
    else:
        rate = figures["success_rate"]
        for label, value in (
            ("paused", "yes" if figures["paused"] else "no"),
            ("events waiting", figures["events_waiting"]),
            ("deliveries due", figures["deliveries_due"]),
            ("deliveries retrying", figures["deliveries_retrying"]),
            ("deliveries in flight", figures["deliveries_in_flight"]),
            ("oldest waiting", _age(figures["oldest_waiting_age_seconds"])),
            ("attempts last hour", figures["attempts_last_hour"]),
            ("success rate", "-" if rate is None else f"{rate:.1%}"),
            ("webhooks failing", figures["webhooks_failing"]),
            ("webhooks disabled", figures["webhooks_disabled"]),
            ("worker last took a job", _age(figures["worker_seen_age_seconds"])),
        ):
            click.echo(f"{label + ':':<24} {value}")
        for host in figures["busiest_hosts"][:5]:
            click.echo(f"{'busy host:':<24} {host['host']} ({host['attempts']})")
        for problem in problems:
            tk.error_shout(problem)
    if problems:
        raise click.exceptions.Exit(1)


@webhooks.command()
def pause() -> None:
    """Pause all delivery; events are still captured and queued."""
    _echo(_call("webhook_delivery_pause", {}))


@webhooks.command()
def resume() -> None:
    """Resume delivery."""
    _echo(_call("webhook_delivery_resume", {}))


@webhooks.command("notify-owners")
def notify_owners() -> None:
    """Mail owners the digests of their disabled webhooks that are due
    (`dispatch` does it too)."""
    from ckanext.webhooks.notices import notify_owners as send_digests

    click.echo(f"{send_digests()} notices sent")
