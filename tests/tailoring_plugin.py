"""A plugin that tailors ``package_show`` to the user who asks, for tests.

It stands for the plugins ``ckanext.webhooks.render_per_owner`` exists for:
it stamps each view with the name of its reader, and shows the maintainer's
email address to the dataset's creator only. Registered in the
``ckan.test_plugins`` entry point group (CKAN's own group for plugins that
only tests load) as ``webhooks_test_tailoring``.
"""

from __future__ import annotations

from typing import Any

import ckan.model as model
import ckan.plugins as p


class TailoringPlugin(p.SingletonPlugin):
    p.implements(p.IPackageController, inherit=True)

    def after_dataset_show(self, context: Any, pkg_dict: dict[str, Any]) -> None:
        name = context.get("user") or ""
        pkg_dict["viewed_by"] = name
        reader = model.User.get(name) if name else None
        if reader is None or reader.id != pkg_dict.get("creator_user_id"):
            pkg_dict.pop("maintainer_email", None)
