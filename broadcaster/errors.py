"""Every exception broadcaster raises on purpose, in one tree.

    BroadcasterError                 base: anything meant for a person to read
    ├── ConfigError                  channels.toml is wrong (names file, channel, key)
    ├── TemplateError                a template file is wrong (names file and place)
    ├── UnknownTemplate              a template id that is not loaded (never a file read)
    ├── ValidationError              input values are wrong; .problems maps field → message
    ├── NotFound                     an alert, delivery or user id that does not exist
    ├── Conflict                     the request contradicts the current state
    ├── StoreError                   the ledger cannot do what was asked
    │   ├── StoreUnavailable         cannot persist (read-only, disk full): nothing accepted
    │   │   └── DatabaseUnreachable  the database server cannot be reached or refuses us
    │   └── AlreadyRunning           another daemon holds the database
    └── DeliveryError                raised by channels, acted on by the dispatcher only
        ├── Retryable                certainly not delivered; may succeed later
        ├── Permanent                will not succeed without a person (token, content)
        │   └── CredentialsRejected  the platform refused the channel's credentials
        └── OutcomeUnknown           the request may have reached the platform

Channels classify, the dispatcher acts: a channel raises one of the three
DeliveryError leaves and never retries, sleeps or logs a failure itself.
Messages are written for the person who has to act on them and never contain a
secret; callers catch the base classes.
"""

from __future__ import annotations

from collections.abc import Mapping


class BroadcasterError(Exception):
    """Base of every error meant to be shown to a person."""


class ConfigError(BroadcasterError):
    """The configuration file is invalid; the message names file, channel and key."""

    def __init__(
        self, message: str, *, file: str, channel: str | None = None, key: str | None = None
    ) -> None:
        self.file = file
        self.channel = channel
        self.key = key
        self.detail = message
        where = file
        if channel is not None:
            where += f": channel {channel!r}"
        if key is not None:
            where += f", key {key!r}" if channel is not None else f": key {key!r}"
        super().__init__(f"{where}: {message}")


class TemplateError(BroadcasterError):
    """A template file is invalid; the message names the file and the place in it."""

    def __init__(self, message: str, *, file: str, where: str | None = None) -> None:
        self.file = file
        self.where = where
        self.detail = message
        prefix = f"{file}: {where}" if where else file
        super().__init__(f"{prefix}: {message}")


class UnknownTemplate(BroadcasterError):
    """The requested template id is not among the loaded templates."""

    def __init__(self, template_id: str) -> None:
        self.template_id = template_id
        super().__init__(
            f"unknown template {template_id!r}: see `broadcaster templates list` for the ids"
        )


class ValidationError(BroadcasterError):
    """Input values are invalid; ``problems`` maps each bad field to what is wrong."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        text = "; ".join(f"{field}: {message}" for field, message in self.problems.items())
        super().__init__(text)


class NotFound(BroadcasterError):
    """An id that does not exist (alert, delivery, user)."""


class Conflict(BroadcasterError):
    """The request contradicts the current state (e.g. retrying a delivered message)."""


class StoreError(BroadcasterError):
    """The ledger cannot do what was asked."""


class StoreUnavailable(StoreError):
    """The ledger cannot persist right now; nothing was accepted."""


class DatabaseUnreachable(StoreUnavailable):
    """The configured database server cannot be reached or refuses the login.

    ``may_come_back``: the server did not answer (down, starting, network), so waiting
    may help; False when it answered and refused (password, role, database name).
    """

    def __init__(self, message: str, *, may_come_back: bool) -> None:
        super().__init__(message)
        self.may_come_back = may_come_back


class AlreadyRunning(StoreError):
    """Another daemon already holds the database."""


class DeliveryError(BroadcasterError):
    """Raised by a channel's send; classified so the dispatcher knows what to do."""


class Retryable(DeliveryError):
    """Certainly not delivered; trying again later may succeed.

    ``retry_after`` is the platform's own wait in seconds, when it said one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Permanent(DeliveryError):
    """Will not succeed by retrying: a person has to act (renew a token, fix content)."""


class CredentialsRejected(Permanent):
    """The platform refused the channel's token, password or keys: renew them."""


class OutcomeUnknown(DeliveryError):
    """The request may have reached the platform; whether it was posted is unknown."""
