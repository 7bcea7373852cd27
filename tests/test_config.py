"""Options are read through their declaration, once per raw value.

Normalizing runs CKAN's validators, so ``config.py`` keeps the result for
each option and raw value: a value changed at run time must still be seen
at once, and a caller must never change what the next caller reads.
"""

from __future__ import annotations

import ckan.plugins.toolkit as tk
import pytest

from ckanext.webhooks import config as cfg


@pytest.mark.usefixtures("with_plugins")
class TestOptions:
    def test_a_value_changed_at_run_time_is_read_at_once(self, monkeypatch):
        monkeypatch.setitem(tk.config, "ckanext.webhooks.max_failures", "3")
        assert cfg.max_failures() == 3
        monkeypatch.setitem(tk.config, "ckanext.webhooks.max_failures", "7")
        assert cfg.max_failures() == 7
        monkeypatch.setitem(tk.config, "ckanext.webhooks.wake_in_background", "no")
        assert cfg.wake_in_background() is False

    def test_a_caller_gets_its_own_list(self, monkeypatch):
        monkeypatch.setitem(tk.config, "ckanext.webhooks.publishers", "bot team")
        first = cfg.publishers()
        first.append("intruder")
        assert cfg.publishers() == ["bot", "team"]

    def test_a_list_set_at_run_time_is_normalized_too(self, monkeypatch):
        monkeypatch.setitem(tk.config, "ckanext.webhooks.publishers", ["bot"])
        assert cfg.publishers() == ["bot"]
