"""Several nodes on one ledger: the node registry, leases, duties and shared health.

A node registers at start, beats its heart (which also renews the leases of the
attempts it has under way) and says goodbye on a clean stop. Duties that must run
once in the whole cluster per interval (a channel's health check, retention) are
claimed with one conditional update: whoever moves ``last_run_at`` runs it. The
result of a health check is shared here, so every node shows the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from broadcaster.errors import Conflict
from broadcaster.store.auditlog import AuditLog
from broadcaster.store.records import HealthRecord, NodeRecord, from_ts, parse_ts, ts


class Nodes(AuditLog):
    def register_node(self, name: str, instance: str, version: str, address: str | None,
                      now: datetime, alive_within: timedelta) -> None:
        """Join as ``name``; Conflict when another process runs under that name (its
        heartbeat is fresher than ``alive_within`` and it did not stop)."""
        with self._write() as db:
            row = db.execute("SELECT instance, last_seen_at, stopped_at FROM nodes "  # noqa: S608 - constants
                             "WHERE name = ?" + self._for_update, (name,)).fetchone()
            if (row is not None and row[0] != instance and row[2] is None
                    and from_ts(row[1]) > now - alive_within):
                raise Conflict(
                    f"node {name!r} is already running (last seen {row[1]}); give this one "
                    "a name of its own ([service] node or serve --node NAME)")
            db.execute(
                "INSERT INTO nodes (name, instance, version, address, started_at, "
                "last_seen_at, stopped_at) VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, "
                "version = excluded.version, address = excluded.address, "
                "started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, "
                "stopped_at = NULL",
                (name, instance, version, address, ts(now), ts(now)))

    def heartbeat(self, name: str, instance: str, now: datetime, lease_until: datetime
                  ) -> int | None:
        """This node is alive: its heartbeat and the leases of every attempt it has
        under way move on, in one transaction; the number of leases renewed. None
        when the name now belongs to another run (this process was frozen so long
        that a new one took the name): it must renew nothing, and stop."""
        with self._write() as db:
            if not db.execute("UPDATE nodes SET last_seen_at = ? WHERE name = ? "
                              "AND instance = ?", (ts(now), name, instance)).rowcount:
                return None
            return int(db.execute(
                "UPDATE deliveries SET lease_until = ? WHERE state = 'sending' "
                "AND lease_node = ?", (ts(lease_until), name)).rowcount)

    def leave_node(self, name: str, instance: str, now: datetime) -> None:
        """A clean stop: the node is shown as stopped, not as lost."""
        with self._write() as db:
            db.execute("UPDATE nodes SET stopped_at = ?, last_seen_at = ? "
                       "WHERE name = ? AND instance = ?", (ts(now), ts(now), name, instance))

    def list_nodes(self) -> list[NodeRecord]:
        leases = {r[0]: int(r[1]) for r in self._read(
            "SELECT lease_node, COUNT(*) FROM deliveries WHERE state = 'sending' "
            "AND lease_node IS NOT NULL GROUP BY lease_node")}
        return [NodeRecord(name=r[0], version=r[1], address=r[2], started_at=from_ts(r[3]),
                           last_seen_at=from_ts(r[4]), stopped_at=parse_ts(r[5]),
                           leases=leases.get(r[0], 0))
                for r in self._read("SELECT name, version, address, started_at, last_seen_at, "
                                    "stopped_at FROM nodes ORDER BY name")]

    def claim_duty(self, name: str, node: str, now: datetime, every: timedelta) -> bool:
        """True for exactly one caller per ``every`` across the cluster: that one runs
        the duty now. (A little slack: a node whose timer fires a moment early still
        counts for this round.)"""
        due = ts(now - every * 0.9)
        with self._write() as db:
            db.execute("INSERT INTO duties (name, node, last_run_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (name) DO NOTHING", (name, "", ts(now - every)))
            return bool(db.execute(
                "UPDATE duties SET node = ?, last_run_at = ? WHERE name = ? "
                "AND last_run_at <= ?", (node, ts(now), name, due)).rowcount)

    def record_health(self, record: HealthRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO channel_health (channel, up, credentials_ok, message, "
                "checked_at, node) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE "
                "SET up = excluded.up, credentials_ok = excluded.credentials_ok, "
                "message = excluded.message, checked_at = excluded.checked_at, "
                "node = excluded.node",
                (record.channel, record.up, record.credentials_ok, record.message,
                 ts(record.checked_at), record.node))

    def channel_health(self) -> list[HealthRecord]:
        return [HealthRecord(channel=r[0], up=bool(r[1]), credentials_ok=bool(r[2]),
                             message=r[3], checked_at=from_ts(r[4]), node=r[5])
                for r in self._read("SELECT channel, up, credentials_ok, message, "
                                    "checked_at, node FROM channel_health")]
