from __future__ import annotations

import logging
from typing import Any

import ckan.plugins as p
import ckan.plugins.toolkit as tk
from ckan.exceptions import CkanConfigurationException

from ckanext.webhooks import events, redaction, signing_keys
from ckanext.webhooks.delivery import waker

log = logging.getLogger(__name__)

# The transaction hooks (prior states, wake-up after commit) must exist before
# the first change; they only act on what ``notify`` recorded. So must the
# note of which requests a web server dispatched (whose wake-ups a thread
# makes).
events.register_session_listeners()
waker.watch_requests()


@tk.blanket.actions
@tk.blanket.auth_functions
@tk.blanket.validators
@tk.blanket.config_declarations
@tk.blanket.cli
@tk.blanket.blueprints
@tk.blanket.helpers
class WebhooksPlugin(p.SingletonPlugin):
    p.implements(p.IDomainObjectModification, inherit=True)
    p.implements(p.IConfigurer)
    p.implements(p.IConfigurable)

    # IConfigurable
    def configure(self, config: Any) -> None:
        # A malformed ckanext.webhooks.allowed_hosts entry stops CKAN at
        # start-up, with the entry named, rather than at the first delivery.
        from ckanext.webhooks import config as cfg

        cfg.address_policy()
        # So does a malformed ckanext.webhooks.signing_keys entry, named by
        # its position: the key itself is never printed.
        try:
            cfg.signing_keys()
        except signing_keys.BadSigningKey as error:
            raise CkanConfigurationException(str(error)) from None
        # Extra header values are credentials: out of CKAN's API debug log.
        redaction.install()

    # IConfigurer
    def update_config(self, config: Any) -> None:
        tk.add_template_directory(config, "templates")
        tk.add_resource("assets", "ckanext-webhooks")

    # IDomainObjectModification
    def notify(self, entity: Any, operation: str) -> None:
        # Never let an event cost the user their change (CKAN 2.12 no longer
        # swallows errors raised here): log it loudly instead.
        try:
            events.record_change(entity, operation)
        except Exception:
            log.exception("webhooks: could not record the event of a change")
