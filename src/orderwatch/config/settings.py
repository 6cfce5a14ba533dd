"""The validated configuration as plain frozen values: what ``load_config`` returns. Durations are seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orderwatch.core.backoff import RetryPolicy
from orderwatch.core.health import Thresholds
from orderwatch.core.rules import Channel, Rule
from orderwatch.core.summary import Summary
from orderwatch.sources import Source


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """``[delivery]``: the retry back-off of failed notifications and how often the delivery loop looks."""

    retry_initial: float = 30.0
    retry_max: float = 3600.0
    give_up_after: float = 86400.0
    interval: float = 2.0

    @property
    def retry(self) -> RetryPolicy:
        """The back-off as the delivery step uses it."""
        return RetryPolicy(self.retry_initial, self.retry_max, self.give_up_after)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """``[health]``: alert ``channel`` after ``failures`` failed polls in a row or ``after`` seconds failing."""

    channel: str | None = None
    failures: int = 3
    after: float | None = None

    @property
    def thresholds(self) -> Thresholds:
        """When a failing source is unhealthy."""
        return Thresholds(self.failures, self.after)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``[metrics]``: where to serve Prometheus metrics (``host:port`` on loopback); None: not served."""

    listen: str | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``[log]``: output format and minimum level."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; ``database`` is resolved, ``path`` is the file it came from."""

    database: Path
    sources: Mapping[str, Source]
    path: Path | None = None
    channels: Mapping[str, Channel] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    delivery: DeliverySettings = DeliverySettings()
    health: HealthSettings = HealthSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    summaries: tuple[Summary, ...] = ()  # [[summaries]]
