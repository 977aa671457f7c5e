"""broadcaster: crisis-communication broadcast service for city administrations."""

__version__ = "0.1.0"
