import pytest
from ckan.tests import factories, helpers
from standardwebhooks import Webhook as StandardWebhook


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_dataset_create_is_delivered_and_signed(receiver, run_jobs):
    hook_id = helpers.call_action(
        "webhook_create", topic="dataset/create", address=receiver.url + "/hook"
    )
    hook = helpers.call_action("webhook_show", id=hook_id)
    dataset = factories.Dataset()
    run_jobs()
    assert receiver.wait_for(1, 5)
    got = receiver.received[0]
    payload = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["topic"] == "dataset/create"
    assert payload["entity"]["id"] == dataset["id"]
    assert payload["webhook_id"] == hook_id
