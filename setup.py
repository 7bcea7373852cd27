from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ckanext-webhooks",
    version="1.0.0",
    description="Signed, reliable webhooks for CKAN dataset and resource events",
    long_description=Path("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="AGPL-3.0-or-later",
    packages=find_packages(exclude=["tests", "tests.*", "bench"]),
    namespace_packages=["ckanext"],
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=["requests", "urllib3", "rq", "ckantoolkit"],
    entry_points={
        "ckan.plugins": ["webhooks = ckanext.webhooks.plugin:WebhooksPlugin"],
    },
)
