"""The statement a dataset change runs, planned once per connection.

Recording a change (``events.py``) is one long statement: it reads the
dataset's groups, completes the event's facets and changes
(``dataset_state.py``), matches webhooks (``matching.py``) and inserts the
event. Planning it took
longer than running it, on every change, so it is ``PREPARE``d once per
database connection and then ``EXECUTE``d: PostgreSQL keeps the plan for
the connection's lifetime. It goes straight to the DB-API cursor of the
session's connection, in the session's transaction: SQLAlchemy's layers
cost a tenth of a millisecond per statement, which a change should not pay.

Behind a pooler that hands each transaction to any server connection
(pgbouncer's transaction mode), a statement prepared on one server
connection may be missing on the next, or already there. The first such
failure switches this process to plain statements for good; the caller,
which runs these in a savepoint, rolls back to it and runs them again
(``worth_retrying``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from psycopg2.extensions import TRANSACTION_STATUS_INERROR

__all__ = ["Statement", "transaction_failed", "worth_retrying"]

log = logging.getLogger(__name__)

# A bound parameter as in text(): ":name", not "::type".
_BIND = re.compile(r"(?<![:\w]):(\w+)(?!:)")

# Connection.info key: the names prepared on that database connection.
_PREPARED = "ckanext_webhooks_prepared"

# EXECUTE of a statement that is not there; PREPARE of one that is.
_NOT_PREPARED = "26000"  # invalid_sql_statement_name
_ALREADY_PREPARED = "42P05"  # duplicate_prepared_statement

_switched_off = False


class Statement:
    """SQL with ``:name`` parameters, run prepared."""

    def __init__(self, label: str, sql: str) -> None:
        self.sql = sql
        self.parameters: list[str] = []
        for name in _BIND.findall(sql):
            if name not in self.parameters:
                self.parameters.append(name)

        def numbered(match: re.Match[str]) -> str:
            return f"${self.parameters.index(match.group(1)) + 1}"

        body = _BIND.sub(numbered, sql)
        # The text is part of the name: a server connection kept by a pooler
        # across an upgrade never runs an older version of the statement.
        digest = hashlib.sha1(body.encode()).hexdigest()[:12]
        self.name = f"ckanext_webhooks_{label}_{digest}"
        # For the DB-API (pyformat): "%(name)s", and "%" written "%%".
        self._forms = {
            "plain": _BIND.sub(r"%(\1)s", sql.replace("%", "%%")),
            "prepare": f"PREPARE {self.name} AS {body.replace('%', '%%')}",
            "execute": "EXECUTE {} ({})".format(
                self.name, ", ".join(f"%({name})s" for name in self.parameters)
            ),
        }
        self._sent: dict[tuple[str, str, str], str] = {}

    def _text(self, form: str, before: str, after: str) -> str:
        key = (form, before, after)
        if key not in self._sent:
            statements = [self._forms[form]]
            if form == "prepare":
                statements.append(self._forms["execute"])
            self._sent[key] = "; ".join(filter(None, [before, *statements, after]))
        return self._sent[key]

    def run(
        self, session: Any, params: dict[str, Any], before: str = "", after: str = ""
    ) -> Any:
        """Execute with ``params`` in the session's transaction; ``before``
        and ``after`` are SQL (without parameters) sent in the same round
        trip around it. Returns the first row of the last."""
        connection = session.connection()
        cursor = connection.connection.cursor()
        if _switched_off:
            form = "plain"
        else:
            prepared = connection.info.setdefault(_PREPARED, set())
            form = "execute" if self.name in prepared else "prepare"
        try:
            cursor.execute(self._text(form, before, after), params)
            row = cursor.fetchone()
        except Exception as error:
            if form != "plain":
                _note_failure(error, form, self.name, prepared)
            raise
        finally:
            cursor.close()
        if form != "plain":
            prepared.add(self.name)
        return row


def _code(error: BaseException) -> str | None:
    return getattr(error, "pgcode", None)


def _note_failure(
    error: BaseException, form: str, name: str, prepared: set[str]
) -> None:
    global _switched_off
    if _code(error) == _ALREADY_PREPARED:
        # PREPARE outlives a rolled-back transaction: there since an earlier
        # attempt on this connection (or another client's, behind a pooler).
        prepared.add(name)
    elif _code(error) == _NOT_PREPARED and form == "execute":
        if not _switched_off:
            log.warning(
                "webhooks: prepared statements do not last between "
                "transactions here (a pooler in transaction mode?); "
                "using plain statements"
            )
        _switched_off = True


def worth_retrying(error: BaseException) -> bool:
    """Whether ``Statement.run`` failed only for the preparing: after rolling
    back, running it again may succeed."""
    return _code(error) in (_NOT_PREPARED, _ALREADY_PREPARED)


def transaction_failed(session: Any) -> bool:
    """Whether the session's transaction is aborted by an error (so only a
    rollback, to a savepoint or of all of it, may follow)."""
    status = session.connection().connection.get_transaction_status()
    return status == TRANSACTION_STATUS_INERROR
