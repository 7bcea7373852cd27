"""SSRF-safe HTTP for deliveries: every security rule about the network lives here.

CKAN-free on purpose. ``addresses`` decides where a webhook may be sent
(URL rules, address classes, the policy, name lookups with a time limit);
``wire`` reads and writes HTTP/1.1 within caps; ``transport`` sends, on one
event loop per ``Transport``, under one deadline per request.
"""

from ckanext.webhooks.http.addresses import (
    NOT_PUBLIC,
    AddressRejected,
    Policy,
    Target,
    address_problem,
    check_url,
    receiver_host,
    split_url,
)
from ckanext.webhooks.http.transport import Outcome, Transport

__all__ = [
    "NOT_PUBLIC",
    "AddressRejected",
    "Outcome",
    "Policy",
    "Target",
    "Transport",
    "address_problem",
    "check_url",
    "receiver_host",
    "split_url",
]
