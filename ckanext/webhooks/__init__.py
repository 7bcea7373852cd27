__version__ = "1.0.0"


def publish(topic, data, *, dataset=None, organization=None):
    """Publish a custom event (see ckanext.webhooks.events.publish)."""
    from ckanext.webhooks.events import publish as publish_event

    return publish_event(topic, data, dataset=dataset, organization=organization)
