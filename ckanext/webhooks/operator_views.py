"""The operator's pages: the Webhooks tab of CKAN's admin area, and metrics.

Both are for sysadmins (the metrics also for the bearer of
``ckanext.webhooks.metrics_token``); anyone else gets what a missing page
gets, 404, so that neither reveals it exists. The admin page reads the same
figures as ``webhook_status_show`` and acts through the same actions as the
API.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

import ckan.plugins.toolkit as tk
from ckan.types import Context
from flask import Blueprint, make_response
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ckanext.webhooks import config as cfg
from ckanext.webhooks import metrics

__all__ = ["chart_bars", "webhooks_admin", "webhooks_metrics"]

webhooks_admin = Blueprint(
    "webhooks_admin", __name__, url_prefix="/ckan-admin/webhooks"
)
# (views.py checks the CSRF token of its forms, as for its own pages.)
webhooks_metrics = Blueprint("webhooks_metrics", __name__, url_prefix="/webhooks")

_STATIC_METHODS = ["GET", "HEAD", "OPTIONS"]
CHART_HEIGHT = 120  # pixels of the per-minute chart's tallest bar
BAR_WIDTH = 10


def _context() -> Context:
    return cast(
        Context, {"user": tk.current_user.name, "auth_user_obj": tk.current_user}
    )


def _sysadmin_or_404() -> None:
    """Anyone else gets exactly what a URL that does not exist gets: 404 for
    GET, and for POST the 405 of CKAN's static files route, which takes every
    unknown path, for GET only."""
    if getattr(tk.current_user, "sysadmin", False):
        return
    if tk.request.method == "POST":
        raise MethodNotAllowed(valid_methods=_STATIC_METHODS)
    raise NotFound()


def chart_bars(per_minute: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bars of the inline SVG chart: one per minute, successes over failures."""
    tallest = max([m["attempts"] for m in per_minute] + [1])
    bars = []
    for n, minute in enumerate(per_minute):
        height = round(CHART_HEIGHT * minute["attempts"] / tallest)
        ok_height = round(CHART_HEIGHT * minute["successes"] / tallest)
        bars.append(
            {
                **minute,
                "x": n * BAR_WIDTH,
                "failed_y": CHART_HEIGHT - height,
                "failed_height": height - ok_height,
                "ok_y": CHART_HEIGHT - ok_height,
                "ok_height": ok_height,
            }
        )
    return bars


@webhooks_admin.route("", strict_slashes=False)
def index() -> Any:
    _sysadmin_or_404()
    figures = tk.get_action("webhook_status_show")(_context(), {})
    return tk.render(
        "admin/webhooks.html",
        {
            "figures": figures,
            "bars": chart_bars(figures["per_minute"]),
            "chart_width": BAR_WIDTH * len(figures["per_minute"]),
            "chart_height": CHART_HEIGHT,
            "bar_width": BAR_WIDTH,
        },
    )


@webhooks_admin.route("/pause", methods=["POST"])
def pause() -> Any:
    _sysadmin_or_404()
    tk.get_action("webhook_delivery_pause")(_context(), {})
    tk.h.flash_success(
        tk._("Delivery paused. Events are still captured and wait to be sent.")
    )
    return tk.redirect_to("webhooks_admin.index")


@webhooks_admin.route("/resume", methods=["POST"])
def resume() -> Any:
    _sysadmin_or_404()
    tk.get_action("webhook_delivery_resume")(_context(), {})
    tk.h.flash_success(tk._("Delivery resumed."))
    return tk.redirect_to("webhooks_admin.index")


@webhooks_admin.route("/disable", methods=["POST"])
@webhooks_admin.route("/disable/<id>", methods=["POST"])
def disable(id: str | None = None) -> Any:
    """Disable any webhook: from the failing list, or by the id typed in."""
    _sysadmin_or_404()
    webhook_id = (id or tk.request.form.get("id") or "").strip()
    try:
        tk.get_action("webhook_update")(_context(), {"id": webhook_id, "active": False})
    except (tk.ObjectNotFound, tk.ValidationError):
        tk.h.flash_error(tk._("No webhook has the id {id}.").format(id=webhook_id))
        return tk.redirect_to("webhooks_admin.index")
    tk.h.flash_success(tk._("Webhook disabled."))
    return tk.redirect_to("webhooks_admin.index")


def _bearer_allowed() -> bool:
    token = cfg.metrics_token()
    header = tk.request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].strip()
    return hmac.compare_digest(given.encode(), token.encode())


@webhooks_metrics.route("/metrics")
def scrape() -> Any:
    """Prometheus text exposition; 404 for anyone but sysadmins and the
    bearer of the metrics token."""
    if not (_bearer_allowed() or getattr(tk.current_user, "sysadmin", False)):
        raise NotFound()
    response = make_response(metrics.exposition(), 200)
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    response.cache_control.no_store = True
    return response
