"""CKAN's search index stubbed at its boundary: Solr cannot be had here.

Index writes do nothing, queries find no hits, and ``package_show`` reads the
database (the cached copy from the index is never there). The tests stub it
per test (``tests/conftest.py``), the benchmarks once per process. A live
``ckan run`` needs a server instead: ``scripts/solr_standin.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def stub_search_index(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Stub the index with ``patch(owner, name, value)``: ``setattr`` for good,
    or pytest's ``monkeypatch.setattr`` for one test."""
    import ckan.lib.search as search
    from ckan.lib.search import index, query

    for name in ("insert_dict", "update_dict", "remove_dict"):
        patch(index.PackageSearchIndex, name, _nothing)
    patch(query.PackageSearchQuery, "run", _no_hits)
    patch(search, "show", _not_cached)


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _no_hits(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    self.count, self.results, self.facets, self.raw_response = 0, [], {}, {}
    return {"results": [], "count": 0, "facets": {}}


def _not_cached(*args: Any, **kwargs: Any) -> None:
    import ckan.lib.search as search

    raise search.SearchError("search index stubbed")
