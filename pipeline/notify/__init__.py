"""The notifier's pure core: config, matchers, decisions (engine) and request bodies (payloads).

The notifier process reads alert events from Kafka, feeds them with the clock to a ``Notifier``,
writes the returned ``Intent``\\ s to a durable outbox, delivers them (``payloads.render``,
``payloads.retry_after_seconds``) and records delivery (``mark_delivered``). Nothing here does I/O
or reads the clock.
"""

from pipeline.notify.config import ConfigError, NotifierConfig, load_config, load_config_file, parse_config
from pipeline.notify.engine import (
    KINDS,
    Intent,
    Notifier,
    NotifierState,
    expire_silence,
    list_silences,
    mark_delivered,
    silence,
    undelivered,
)
from pipeline.notify.matchers import Matcher, parse_matcher, parse_matchers
from pipeline.notify.payloads import render, retry_after_seconds

__all__ = ["KINDS", "ConfigError", "Intent", "Matcher", "Notifier", "NotifierConfig", "NotifierState",
           "expire_silence", "list_silences", "load_config", "load_config_file", "mark_delivered", "parse_config",
           "parse_matcher", "parse_matchers", "render", "retry_after_seconds", "silence", "undelivered"]
