"""Keep the values of a webhook's extra headers out of CKAN's own logs.

The values are credentials for the receiver's gateway. The extension never
logs them, but CKAN's Action API logs every request's data at DEBUG
(``ckan.views.api``: "Request data extracted"). This filter replaces the
``headers`` of such a record with their names before any handler sees it.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["HeaderValuesFilter", "install"]

API_LOGGER = "ckan.views.api"


def _names_only(headers: Any) -> str:
    if isinstance(headers, dict):
        names = [str(name) for name in headers]
    elif isinstance(headers, str):
        names = [line.partition(":")[0].strip() for line in headers.splitlines()]
    else:
        names = []
    return f"<values withheld: {', '.join(n for n in names if n)}>"


class HeaderValuesFilter(logging.Filter):
    """Withholds the values of ``headers`` in a record's data dict."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A record whose one argument is a dict keeps the dict itself as
        # ``args`` (LogRecord does so for "%(name)s" formats).
        args = record.args
        if isinstance(args, dict):
            record.args = _withheld(args)
        elif isinstance(args, tuple) and args and isinstance(args[0], dict):
            record.args = (_withheld(args[0]), *args[1:])
        return True


def _withheld(data: dict[str, Any]) -> dict[str, Any]:
    if "headers" not in data:
        return data
    return {**data, "headers": _names_only(data["headers"])}


def install() -> None:
    """Add the filter to CKAN's API logger, once."""
    logger = logging.getLogger(API_LOGGER)
    if not any(isinstance(f, HeaderValuesFilter) for f in logger.filters):
        logger.addFilter(HeaderValuesFilter())
