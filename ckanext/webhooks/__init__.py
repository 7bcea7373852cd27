from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__", "publish"]

try:
    # The version is written once, in pyproject.toml.
    __version__ = version("ckanext-webhooks")
except PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"


def publish(topic, data, *, dataset=None, organization=None):
    """Publish a custom event (see ckanext.webhooks.events.publish); return
    its id."""
    from ckanext.webhooks.events import publish as publish_event

    event_id, _ = publish_event(topic, data, dataset=dataset, organization=organization)
    return event_id
