"""The ledger contract: every state transition the engine, API, console, scheduler
and CLI use, written once over a backend's plumbing (``base.Plumbing``).

Callers hold a ``Ledger``; ``open_ledger`` (``broadcaster.store``) picks the backend
from ``[service] database``: ``SqliteLedger`` or ``PostgresLedger``. Both pass the
same contract tests. Nothing outside this package writes SQL.
"""

from __future__ import annotations

from broadcaster.store.accounts import Accounts
from broadcaster.store.deliveries import Deliveries
from broadcaster.store.nodes import Nodes
from broadcaster.store.timeline import Timeline


class Ledger(Deliveries, Timeline, Accounts, Nodes):
    """Alerts, deliveries, attempts, users, sessions and the audit chain in one database."""
