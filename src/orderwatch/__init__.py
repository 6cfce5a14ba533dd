"""orderwatch: watch orders-list HTTP APIs, detect every order's state transitions, notify through apprise."""

__version__ = "0.1.0"
