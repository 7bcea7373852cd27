"""End to end against a live server: ckanapi in, a real worker, a verified POST out.

The exact usage of the original README: ``RemoteCKAN(...).action.webhook_create``
then ``webhook_show(id=hook)``, against ``ckan run``, with a stock
``ckan jobs worker`` subprocess delivering to a receiver on 127.0.0.1.
"""

import ckanapi
import pytest
from ckan.tests import factories
from standardwebhooks import Webhook as StandardWebhook


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_ckanapi_create_show_deliver_delete(live_site, receiver):
    admin = factories.Sysadmin()
    token = factories.APIToken(user=admin["name"])["token"]
    ckan = ckanapi.RemoteCKAN(live_site.url, apikey=token)
    anonymous = ckanapi.RemoteCKAN(live_site.url)

    # Anonymous creation, as the original extension allowed (minimum_auth none).
    hook = anonymous.action.webhook_create(
        topic="dataset/create", address=receiver.url + "/callback"
    )
    assert isinstance(hook, str) and len(hook) >= 32
    shown = anonymous.action.webhook_show(id=hook)
    assert shown["topic"] == "dataset/create"
    assert shown["secret"].startswith("whsec_")

    with pytest.raises(ckanapi.ValidationError) as exc_info:
        anonymous.action.webhook_create(topic="dataset/explode", address="x")
    assert set(exc_info.value.error_dict) >= {"topic", "address"}
    with pytest.raises(ckanapi.NotAuthorized):
        anonymous.action.webhook_list()

    dataset = ckan.action.package_create(name="air-quality", title="Air quality")
    live_site.run_worker()
    assert receiver.wait_for(1, timeout=30)
    got = receiver.received[0]
    payload = StandardWebhook(shown["secret"]).verify(got.body, got.headers)
    assert payload["topic"] == "dataset/create"
    assert payload["webhook_id"] == hook
    assert payload["ckan"] == live_site.url
    assert payload["entity"]["id"] == dataset["id"]
    assert payload["entity"]["title"] == "Air quality"

    log = anonymous.action.webhook_delivery_list(id=hook)
    assert log[0]["status_code"] == 200
    anonymous.action.webhook_delete(id=hook)
    with pytest.raises(ckanapi.NotFound):
        anonymous.action.webhook_show(id=hook)


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_parallel_creates_cannot_pass_the_address_limit(live_site):
    """30 anonymous creates at once for one address: the limit (20) holds."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.helpers import count

    url = f"{live_site.url}/api/3/action/webhook_create"
    body = {"topic": "dataset/update", "address": "https://example.com/same"}

    def create(_):
        return requests.post(url, json=body, timeout=60).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(create, range(30)))
    assert statuses.count(200) == 20
    assert statuses.count(409) == 10  # CKAN's status for a ValidationError
    assert count("webhook") == 20
