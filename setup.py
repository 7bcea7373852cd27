# Everything is declared in pyproject.toml; this shim stays for tools that
# still call setup.py.
from setuptools import setup

setup()
