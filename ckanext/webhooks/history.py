"""What a transaction changed: the values its entities had when it began.

CKAN flushes several times per action and calls ``notify`` only after the
last flush, which wipes SQLAlchemy's attribute history. So before each flush
the values an entity had before its first change in the transaction are
noted (``remember``), from the state SQLAlchemy keeps for the flush: only the
attributes that were set, never a column per entity. Entities created in the
transaction are noted as new: they had no values before it.

What is noted is kept in ``session.info`` and forgotten when the transaction
ends (``forget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import ckan.model as model
from sqlalchemy import inspect
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE

__all__ = [
    "NEW",
    "UNKNOWN",
    "before",
    "changed",
    "forget",
    "memo",
    "prior",
    "priors",
    "remember",
    "touched",
    "was_deleted",
]

# The priors of an entity created in the transaction (compared by identity).
NEW: Mapping[str, Any] = MappingProxyType({})

# A value set without being loaded first: what it was is not known.
UNKNOWN = object()

# session.info keys: {InstanceState: {attribute: value before} or NEW}; the
# entities themselves by class (the session holds clean ones only weakly);
# what was worked out from them since the last flush (``memo``).
_PRIORS = "webhooks_priors"
_BY_CLASS = "webhooks_touched"
_MEMO = "webhooks_memo"

# CKAN 2.11 keeps dataset extras in a table of their own; 2.12 in the row.
_PACKAGE_EXTRA = getattr(model, "PackageExtra", None)

_TRACKED = tuple(
    cls
    for cls in (
        model.Package,
        model.Resource,
        model.PackageTag,
        model.Member,
        model.Group,
        _PACKAGE_EXTRA,
    )
    if cls is not None
)

# The column attributes of each tracked class (relationships are not noted).
_COLUMNS = {cls: frozenset(inspect(cls).column_attrs.keys()) for cls in _TRACKED}


def remember(session: Any, flush_context: Any, instances: Any) -> None:
    """``before_flush``: note what the entities about to be flushed were."""
    noted = session.info.setdefault(_PRIORS, {})
    by_class = session.info.setdefault(_BY_CLASS, {})
    session.info.pop(_MEMO, None)
    for obj in session.new:
        if type(obj) in _COLUMNS and instance_state(obj) not in noted:
            noted[instance_state(obj)] = NEW
            by_class.setdefault(type(obj), []).append((obj, NEW))
    for objects in (session.dirty, session.deleted):
        for obj in objects:
            columns = _COLUMNS.get(type(obj))
            if columns is None:
                continue
            state = instance_state(obj)
            if state not in noted:
                noted[state] = {}
                by_class.setdefault(type(obj), []).append((obj, noted[state]))
            priors = noted[state]
            if priors is NEW:
                continue
            for name, value in state.committed_state.items():
                if name in columns and name not in priors:
                    priors[name] = UNKNOWN if value is NO_VALUE else value


def forget(session: Any) -> None:
    for key in (_PRIORS, _BY_CLASS, _MEMO):
        session.info.pop(key, None)


def memo(session: Any) -> dict[Any, Any]:
    """A dict for what callers work out from the notes, emptied at each
    flush (which may change what they were worked out from) and at the end
    of the transaction."""
    return session.info.setdefault(_MEMO, {})


def priors(session: Any, obj: Any) -> Mapping[str, Any] | None:
    """The values ``obj`` had before the transaction where they differ
    (``UNKNOWN`` where that is not known), ``NEW`` if it was created in it,
    None if it was not touched."""
    noted = session.info.get(_PRIORS)
    if not noted:
        return None
    return noted.get(instance_state(obj))


def prior(session: Any, obj: Any, name: str) -> Any:
    """The value attribute ``name`` of ``obj`` had before the transaction,
    if it was set in it (None if not, or not known)."""
    values = priors(session, obj)
    value = values.get(name) if values else None
    return None if value is UNKNOWN else value


def before(values: Mapping[str, Any] | None, obj: Any, name: str) -> Any:
    """Attribute ``name`` of ``obj`` as it was before the transaction, given
    its ``priors`` (an entity that existed)."""
    if values and name in values and values[name] is not UNKNOWN:
        return values[name]
    return getattr(obj, name)


def changed(values: Mapping[str, Any] | None, obj: Any, names: Any) -> set[str]:
    """Which of the attributes ``names`` of ``obj`` differ from before the
    transaction (an attribute set without its earlier value known counts)."""
    if not values:
        return set()
    return {
        name
        for name, value in values.items()
        if name in names and (value is UNKNOWN or value != getattr(obj, name))
    }


def touched(session: Any, cls: type) -> list[tuple[Any, Mapping[str, Any]]]:
    """The entities of class ``cls`` touched in the transaction, with their
    priors."""
    return session.info.get(_BY_CLASS, {}).get(cls, [])


def was_deleted(obj: Any) -> bool:
    """Whether ``obj`` was deleted from the database in the transaction."""
    state = instance_state(obj)
    return state.deleted or state.was_deleted
