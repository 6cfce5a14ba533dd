"""The configuration: TOML in, plain frozen values out (``Config`` with ``Source``, ``Channel`` and ``Rule`` values).

load.py      find the file, expand ${VAR}, resolve tokens, validate, report every problem at once
schema.py    the pydantic models of each table (the only pydantic importer)
problems.py  problems as one line each, naming the key and the value, never a secret
settings.py  the plain values returned
secrets.py   which configured values are secret
"""

from __future__ import annotations

from orderwatch.config.load import find_config_path, load_config
from orderwatch.config.secrets import inline_secrets, readable_by_others, secrets_of
from orderwatch.config.settings import Config, DeliverySettings, HealthSettings, LogSettings, MetricsSettings

__all__ = [
    "Config",
    "DeliverySettings",
    "HealthSettings",
    "LogSettings",
    "MetricsSettings",
    "find_config_path",
    "inline_secrets",
    "load_config",
    "readable_by_others",
    "secrets_of",
]
