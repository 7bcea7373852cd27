"""navl schemas of the webhook actions."""

from __future__ import annotations

from ckan.logic.schema import validator_args
from ckan.types import Schema, Validator

# Every schema refuses unknown fields by name (``webhook_unknown_fields`` on
# navl's ``__extras`` and ``__junk``), so a misspelt filter is an error
# rather than a webhook that silently matches everything.

__all__ = [
    "webhook_consent_schema",
    "webhook_create_schema",
    "webhook_delivery_list_schema",
    "webhook_event_list_schema",
    "webhook_event_publish_schema",
    "webhook_id_schema",
    "webhook_list_schema",
    "webhook_list_search_schema",
    "webhook_no_parameters_schema",
    "webhook_recover_schema",
    "webhook_redeliver_schema",
    "webhook_update_schema",
]


@validator_args
def webhook_create_schema(
    not_empty: Validator,
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_topics: Validator,
    webhook_address: Validator,
    webhook_dataset: Validator,
    webhook_organization: Validator,
    webhook_natural_number: Validator,
    webhook_rate_limit: Validator,
    webhook_unknown_fields: Validator,
    webhook_empty_to_none: Validator,
    webhook_group_filter: Validator,
    webhook_tag_filter: Validator,
    webhook_format_filter: Validator,
    webhook_license_filter: Validator,
    webhook_payload_kind: Validator,
    webhook_format: Validator,
    webhook_headers: Validator,
) -> Schema:
    # An empty value (or list) is no filter, here and in updates.
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "payload": [ignore_missing, webhook_string, not_empty, webhook_payload_kind],
        "format": [ignore_missing, webhook_string, not_empty, webhook_format],
        "headers": [ignore_missing, webhook_headers],
        "topic": [not_empty, webhook_topics],
        "group": [ignore_missing, webhook_empty_to_none, webhook_group_filter],
        "tag": [ignore_missing, webhook_empty_to_none, webhook_tag_filter],
        "res_format": [ignore_missing, webhook_empty_to_none, webhook_format_filter],
        "license_id": [ignore_missing, webhook_empty_to_none, webhook_license_filter],
        "rate_limit": [ignore_missing, webhook_natural_number, webhook_rate_limit],
        "address": [not_empty, webhook_string, not_empty, webhook_address],
        "dataset": [ignore_missing, webhook_string, ignore_missing, webhook_dataset],
        "organization": [
            ignore_missing,
            webhook_string,
            ignore_missing,
            webhook_organization,
        ],
    }


@validator_args
def webhook_update_schema(
    not_empty: Validator,
    ignore_missing: Validator,
    webhook_boolean: Validator,
    webhook_empty_to_none: Validator,
    webhook_string: Validator,
    webhook_topics: Validator,
    webhook_address: Validator,
    webhook_dataset: Validator,
    webhook_organization: Validator,
    webhook_natural_number: Validator,
    webhook_rate_limit: Validator,
) -> Schema:
    schema = webhook_create_schema()
    schema["id"] = [not_empty, webhook_string]
    schema["topic"] = [ignore_missing, not_empty, webhook_topics]
    schema["address"] = [ignore_missing, webhook_string, not_empty, webhook_address]
    # An empty string clears a filter.
    schema["dataset"] = [
        ignore_missing,
        webhook_string,
        webhook_empty_to_none,
        webhook_dataset,
    ]
    schema["organization"] = [
        ignore_missing,
        webhook_string,
        webhook_empty_to_none,
        webhook_organization,
    ]
    schema["rate_limit"] = [
        ignore_missing,
        webhook_empty_to_none,
        webhook_natural_number,
        webhook_rate_limit,
    ]
    schema["active"] = [ignore_missing, webhook_boolean]
    return schema


@validator_args
def webhook_id_schema(
    not_empty: Validator, webhook_string: Validator, webhook_unknown_fields: Validator
) -> Schema:
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "id": [not_empty, webhook_string],
    }


@validator_args
def webhook_list_schema(
    ignore_missing: Validator,
    limit_to_configured_maximum: Validator,
    webhook_natural_number: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "limit": [
            ignore_missing,
            webhook_natural_number,
            limit_to_configured_maximum("ckan.search.rows_max", 1000),
        ],
        "offset": [ignore_missing, webhook_natural_number],
    }


@validator_args
def webhook_event_publish_schema(
    not_empty: Validator,
    webhook_string: Validator,
    webhook_publishable_topic: Validator,
    webhook_event_data: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    # The dataset and organization fields are those of a webhook's filters.
    filters = webhook_create_schema()
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "topic": [not_empty, webhook_string, not_empty, webhook_publishable_topic],
        "data": [not_empty, webhook_event_data],
        "dataset": filters["dataset"],
        "organization": filters["organization"],
    }


@validator_args
def webhook_redeliver_schema(
    not_empty: Validator,
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "id": [not_empty, webhook_string],
        "webhook_id": [ignore_missing, webhook_string],
    }


@validator_args
def webhook_delivery_list_schema(
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_boolean: Validator,
    webhook_attempt_outcome: Validator,
) -> Schema:
    return {
        **webhook_list_schema(),
        **webhook_id_schema(),
        "outcome": [ignore_missing, webhook_string, webhook_attempt_outcome],
        "by_event": [ignore_missing, webhook_boolean],
    }


@validator_args
def webhook_list_search_schema(
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_boolean: Validator,
) -> Schema:
    """``webhook_list``'s: paging, a text in the address, and the state."""
    return {
        **webhook_list_schema(),
        "q": [ignore_missing, webhook_string],
        "active": [ignore_missing, webhook_boolean],
    }


@validator_args
def webhook_consent_schema(
    not_empty: Validator,
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "id": [not_empty, webhook_string],
        "token": [not_empty, webhook_string],
        "allowed_rate": [ignore_missing, webhook_string],
    }


@validator_args
def webhook_event_list_schema(
    ignore_missing: Validator,
    limit_to_configured_maximum: Validator,
    webhook_natural_number: Validator,
    webhook_string: Validator,
    webhook_topic: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    # The filters as for a webhook's.
    filters = webhook_create_schema()
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "since": [ignore_missing, webhook_string],
        "limit": [
            ignore_missing,
            webhook_natural_number,
            limit_to_configured_maximum("ckanext.webhooks.feed_max_limit", 100),
        ],
        "topic": [ignore_missing, webhook_string, ignore_missing, webhook_topic],
        "dataset": filters["dataset"],
        "organization": filters["organization"],
    }


@validator_args
def webhook_recover_schema(
    not_empty: Validator,
    ignore_missing: Validator,
    webhook_string: Validator,
    webhook_unknown_fields: Validator,
) -> Schema:
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
        "id": [not_empty, webhook_string],
        "since": [not_empty, webhook_string],
        "until": [ignore_missing, webhook_string],
    }


@validator_args
def webhook_no_parameters_schema(webhook_unknown_fields: Validator) -> Schema:
    """For actions that take nothing: any key given is refused by name."""
    return {
        "__extras": [webhook_unknown_fields],
        "__junk": [webhook_unknown_fields],
    }
