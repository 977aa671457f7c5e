"""Alerts and deliveries: accepting, claiming, finishing, recovering, officers' actions.

The dispatcher's transitions (``claim_many``, ``finish_many``) take several lanes'
requests in one transaction (group commit). A claim walks each channel's queue in
order through the partial index ``deliveries_queue`` and stops after what it may
take, so its cost does not grow with the backlog behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from broadcaster.errors import Conflict, NotFound
from broadcaster.models import Alert, AlertKind, Delivery, DeliveryState, Mode, Receipt, Severity
from broadcaster.store.auditlog import AuditLog
from broadcaster.store.base import THREAD, Tx, marks
from broadcaster.store.reading import Reading
from broadcaster.store.records import (
    IDEMPOTENCY_WINDOW,
    SCHEDULED,
    AuditEntry,
    Claim,
    ClaimRequest,
    DueDelivery,
    Finished,
    Lease,
    NewAlert,
    Outcome,
    Recovered,
    from_ts,
    parse_ts,
    ts,
)

# One channel's due deliveries in queue order: not held, not waiting for a time, not
# behind an earlier message of the same thread that is still on its way. Walks the
# partial index deliveries_queue and stops at the limit, however long the queue.
DUE_COLUMNS = """d.id, d.channel, d.alert_id, d.attempts, d.headline, d.text, d.queued_at,
           a.kind, a.mode, a.severity, a.references_id, a.created_at"""
DUE_WHERE = """d.state = 'queued' AND a.hold IS NULL
      AND (d.not_before IS NULL OR d.not_before <= ?)
      AND NOT EXISTS (
          SELECT 1 FROM deliveries p
          WHERE p.alert_id = a.references_id AND p.channel = d.channel
            AND p.state IN ('queued', 'sending'))"""
_DUE_ONE = f"""
    SELECT * FROM (SELECT {DUE_COLUMNS}
    FROM deliveries d JOIN alerts a ON a.id = d.alert_id
    WHERE d.channel = ? AND {DUE_WHERE}
    ORDER BY d.queued_at, d.id LIMIT ?)"""  # noqa: S608 - constants
_NEXT_DUE_SQL = """
    SELECT d.channel, MIN(d.not_before) FROM deliveries d JOIN alerts a ON a.id = d.alert_id
    WHERE d.channel IN ({channels}) AND d.state = 'queued' AND a.hold IS NULL
      AND d.not_before > ?
    GROUP BY d.channel
"""
_UNION_WIDTH = 100  # channels per statement (SQLite allows 500 compound members)


class Deliveries(AuditLog, Reading):
    # Appended to queries over `sending` rows that resolve them, where the backend can
    # lock those rows and skip what another node is resolving at the same moment.
    _claim_skip = ""

    def check_writable(self, now: datetime) -> None:
        """Prove the database takes a write now (readiness); StoreUnavailable if not."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (ts(now),),
            )

    # -- accepting ------------------------------------------------------------

    def accept_alert(self, alert: NewAlert, entry: AuditEntry) -> tuple[str, bool]:
        """Commit an alert, its deliveries and its audit event in one durable transaction.

        An all-clear or correction cancels the still-queued deliveries of every alert
        in the thread it follows up. With an idempotency key already used by the same
        user, returns the earlier alert's id and False instead (Conflict when the
        request differs). Returns (alert id, created).
        """
        with self._write(durable=True) as db:
            if alert.idempotency_key is not None:
                row = db.execute(
                    "SELECT id, request_hash, created_at FROM alerts WHERE created_by = ? AND "
                    "idempotency_key = ?", (alert.created_by, alert.idempotency_key),
                ).fetchone()
                if row is not None and from_ts(row[2]) < alert.created_at - IDEMPOTENCY_WINDOW:
                    # Keys are remembered for 24 hours; after that the key is new again.
                    db.execute("UPDATE alerts SET idempotency_key = NULL WHERE id = ?",
                               (row[0],))
                    row = None
                if row is not None:
                    if row[1] != alert.request_hash:
                        raise Conflict(
                            "this Idempotency-Key was already used for a different request; "
                            "use a new key for a new alert"
                        )
                    return str(row[0]), False
            if alert.references is not None:
                exists = db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert.references,))
                if exists.fetchone() is None:
                    raise NotFound(f"alert {alert.references} not found")
            created = ts(alert.created_at)
            db.execute(
                "INSERT INTO alerts (id, template, template_sha256, variables, mode, kind, "
                "severity, references_id, created_by, created_at, send_at, hold, "
                "idempotency_key, request_hash, repeat, repeat_of, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.id, alert.template, alert.template_sha256,
                 json.dumps(dict(alert.variables), ensure_ascii=False), alert.mode.value,
                 alert.kind.value, alert.severity.value, alert.references, alert.created_by,
                 created, ts(alert.send_at) if alert.send_at else None, alert.hold,
                 alert.idempotency_key, alert.request_hash,
                 json.dumps(dict(alert.repeat)) if alert.repeat else None, alert.repeat_of,
                 ts(alert.expires_at) if alert.expires_at else None),
            )
            not_before = ts(alert.send_at) if alert.send_at else None
            db.executemany(
                "INSERT INTO deliveries (id, alert_id, channel, state, headline, text, "
                "queued_at, not_before, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                [(d.id, alert.id, d.channel, d.headline, d.text, created, not_before, created)
                 for d in alert.deliveries],
            )
            if alert.kind.supersedes and alert.references is not None:
                self._cancel_thread(db, alert.references, alert.id, alert.kind, created)
            self._append_audit(db, entry, alert.created_at)
            self._announce(db, [d.channel for d in alert.deliveries])
        return alert.id, True

    def _cancel_thread(self, db: Tx, references: str, by_alert: str, kind: AlertKind,
                       now: str) -> None:
        root = references
        while True:
            row = db.execute("SELECT references_id FROM alerts WHERE id = ?", (root,)).fetchone()
            if row is None or row[0] is None:
                break
            root = row[0]
        label = "all-clear" if kind is AlertKind.ALLCLEAR else "correction"
        db.execute(
            THREAD + "UPDATE deliveries SET state = 'cancelled', error = ?, "  # noqa: S608
            "updated_at = ? "
            "WHERE state = 'queued' AND alert_id IN (SELECT id FROM thread) AND alert_id != ?",
            (root, f"superseded by {label} {by_alert} before it was sent", now, by_alert),
        )

    # -- the dispatcher's transitions ------------------------------------------

    def claim_many(self, requests: Sequence[ClaimRequest], now: datetime,
                   lease: Lease | None = None) -> list[Claim]:
        """Several lanes' claims in one transaction (group commit): each channel's due
        deliveries, up to the lane's free slots and within the channel's cluster-wide
        in-flight limit and rate budget, are marked `sending` under ``lease`` and get
        an attempt row."""
        merged: dict[str, ClaimRequest] = {}
        for request in requests:
            known = merged.get(request.channel)
            if known is None or request.limit > known.limit:
                merged[request.channel] = request
        stamp = ts(now)
        claims: dict[str, Claim] = {}
        with self._write() as db:
            budgets = self._budgets(db, [r for r in merged.values() if r.rate], stamp)
            under_way = self._under_way(db, [c for c, r in merged.items() if r.max_in_flight])
            wants: dict[str, tuple[int, str | None]] = {}
            for channel, request in sorted(merged.items()):
                allowed, held_by = request.limit, None
                if request.max_in_flight is not None:
                    slots = max(0, request.max_in_flight - under_way.get(channel, 0))
                    if slots < allowed:
                        allowed, held_by = slots, "slots"
                tokens = budgets.get(channel)
                if tokens is not None and int(tokens) < allowed:
                    allowed, held_by = int(tokens), "rate"
                wants[channel] = (allowed, held_by)
            due_rows = self._due_rows(db, {c: n for c, (n, _) in wants.items()}, stamp)
            taken_all = [r for c, (n, _) in wants.items() for r in due_rows[c][:n]]
            if taken_all:
                self._mark_claimed(db, [(r[0], r[3] + 1) for r in taken_all], stamp, lease)
            idle = [c for c, (n, _) in wants.items() if len(due_rows[c]) <= n]
            next_due = dict(db.execute(_NEXT_DUE_SQL.format(channels=marks(idle)),
                                       (*idle, stamp)).fetchall()) if idle else {}
            for channel, (allowed, held_by) in wants.items():
                rows = due_rows[channel]
                taken = rows[:allowed]
                due = [DueDelivery(
                    id=r[0], alert_id=r[2], channel=r[1], attempts=r[3] + 1, headline=r[4],
                    text=r[5], queued_at=from_ts(r[6]), kind=AlertKind(r[7]), mode=Mode(r[8]),
                    severity=Severity(r[9]), references=r[10], alert_created_at=from_ts(r[11]),
                    reply_to=self._thread_receipt(db, r[10], r[1]),
                ) for r in taken]
                budget_at = None
                tokens = budgets.get(channel)
                rate = merged[channel].rate
                if tokens is not None and rate:
                    left = tokens - len(taken)
                    budgets[channel] = left
                    if left < 1:
                        budget_at = now + timedelta(seconds=(1 - left) / rate)
                more = len(rows) > len(taken)
                claims[channel] = Claim(due, more_due=more,
                                        next_due=parse_ts(next_due.get(channel)),
                                        held_by=held_by if more else None,
                                        budget_at=budget_at)
            # Only where something was taken: an untouched bucket refills the same from
            # its old time as from a new one.
            spent = {c: budgets[c] for c, claim in claims.items()
                     if claim.deliveries and c in budgets}
            if spent:
                self._save_budgets(db, spent, stamp)
        return [claims[request.channel] for request in requests]

    def _mark_claimed(self, db: Tx, claimed: Sequence[tuple[str, int]], stamp: str,
                      lease: Lease | None) -> None:
        """(delivery id, attempt number) → `sending` under the lease, with an attempt row."""
        db.executemany(
            "UPDATE deliveries SET state = 'sending', attempts = ?, "
            "first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ?, "
            "lease_node = ?, lease_until = ? WHERE id = ?",
            [(number, stamp, stamp, lease.node if lease else None,
              ts(lease.until) if lease else None, delivery_id)
             for delivery_id, number in claimed])
        db.executemany("INSERT INTO attempts (delivery_id, number, started_at) VALUES (?, ?, ?)",
                       [(delivery_id, number, stamp) for delivery_id, number in claimed])

    def _save_budgets(self, db: Tx, budgets: dict[str, float], stamp: str) -> None:
        db.executemany("UPDATE channel_budgets SET tokens = ?, updated_at = ? WHERE channel = ?",
                       [(tokens, stamp, channel) for channel, tokens in budgets.items()])

    def _create_budgets(self, db: Tx, requests: Sequence[ClaimRequest], stamp: str) -> None:
        db.executemany("INSERT INTO channel_budgets (channel, tokens, updated_at) "
                       "VALUES (?, ?, ?) ON CONFLICT (channel) DO NOTHING",
                       [(r.channel, r.burst, stamp) for r in requests])

    def _due_rows(self, db: Tx, wants: dict[str, int], stamp: str) -> dict[str, list[Any]]:
        """Each channel's due deliveries, up to its number plus one (to learn whether
        more are due), in one statement per hundred channels."""
        found: dict[str, list[Any]] = {channel: [] for channel in wants}
        items = list(wants.items())
        for start in range(0, len(items), _UNION_WIDTH):
            chunk = items[start:start + _UNION_WIDTH]
            sql = " UNION ALL ".join([_DUE_ONE] * len(chunk))
            params = [value for channel, n in chunk for value in (channel, stamp, n + 1)]
            for row in db.execute(sql, params).fetchall():
                found[row[1]].append(row)
        for rows in found.values():
            rows.sort(key=lambda r: (r[6], r[0]))  # queue order within each channel
        return found

    def _budgets(self, db: Tx, requests: Sequence[ClaimRequest], stamp: str
                 ) -> dict[str, float]:
        """Each rate-limited channel's tokens now (a bucket refilled at its rate up to
        its burst), its row locked until the claim commits, in channel order."""
        if not requests:
            return {}
        by_channel = {r.channel: r for r in requests}
        select = (f"SELECT channel, tokens, updated_at FROM channel_budgets "  # noqa: S608
                  f"WHERE channel IN ({marks(list(by_channel))}) ORDER BY channel"
                  + self._for_update)
        rows = db.execute(select, list(by_channel)).fetchall()
        if len(rows) < len(by_channel):  # a channel's first claim: its bucket starts full
            found = {r[0] for r in rows}
            self._create_budgets(db, [r for r in requests if r.channel not in found], stamp)
            rows = db.execute(select, list(by_channel)).fetchall()
        now = from_ts(stamp)
        budgets = {}
        for channel, tokens, updated_at in rows:
            request = by_channel[channel]
            elapsed = max(0.0, (now - from_ts(updated_at)).total_seconds())
            budgets[channel] = min(request.burst, tokens + elapsed * (request.rate or 0.0))
        return budgets

    @staticmethod
    def _under_way(db: Tx, channels: Sequence[str]) -> dict[str, int]:
        """Attempts under way per channel on every node (the partial index on `sending`)."""
        if not channels:
            return {}
        rows = db.execute(
            f"SELECT channel, COUNT(*) FROM deliveries WHERE state = 'sending' "  # noqa: S608
            f"AND channel IN ({marks(channels)}) GROUP BY channel", list(channels)).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    @staticmethod
    def _thread_receipt(db: Tx, alert_id: str | None, channel: str) -> Receipt | None:
        """The receipt to reply to: the referenced alert's post on this channel, or,
        when that was not delivered, the nearest delivered one up the thread."""
        seen: set[str] = set()
        while alert_id is not None and alert_id not in seen:
            seen.add(alert_id)
            row = db.execute(
                "SELECT d.remote_id, d.url, d.receipt_extra, a.references_id FROM alerts a "
                "LEFT JOIN deliveries d ON d.alert_id = a.id AND d.channel = ? "
                "AND d.state = 'delivered' WHERE a.id = ?", (channel, alert_id),
            ).fetchone()
            if row is None:
                return None
            if row[0] is not None:
                return Receipt(row[0], row[1], json.loads(row[2] or "{}"))
            alert_id = row[3]
        return None

    def finish_attempt(
        self, delivery_id: str, attempt: int, outcome: Outcome, now: datetime,
        node: str | None = None,
    ) -> bool:
        """Record how attempt n ended and move the delivery on; False if stale."""
        return self.finish_many([(delivery_id, attempt, outcome, now)], node)[0].written

    def finish_many(self, items: Sequence[tuple[str, int, Outcome, datetime]],
                    node: str | None = None) -> list[Finished]:
        """Several attempts' ends in one transaction (group commit). With ``node``, an
        outcome is written only while that node still holds the delivery's lease: a
        node that was frozen past its lease finds the work taken over, and its late
        result is not written over the one of the node that took over (False)."""
        with self._write() as db:
            written = [self._finish(db, *item, node) for item in items]
            ended = [item[0] for item, ok in zip(items, written, strict=True)
                     if ok and item[2].state is not DeliveryState.QUEUED]
            waiting = self._followups_waiting(db, ended) if ended else set()
            return [Finished(ok, item[0] in waiting)
                    for item, ok in zip(items, written, strict=True)]

    @staticmethod
    def _followups_waiting(db: Tx, ended: Sequence[str]) -> set[str]:
        """Of these deliveries, those a queued follow-up on the same channel waited for
        (thread order), in one query for the batch. Nested, so the planner walks each
        alert's follow-ups (its index on references_id), never a channel's whole queue."""
        rows = db.execute(
            f"SELECT d.id FROM deliveries d WHERE d.id IN ({marks(ended)}) AND EXISTS ("  # noqa: S608
            "SELECT 1 FROM alerts f WHERE f.references_id = d.alert_id AND EXISTS ("
            "SELECT 1 FROM deliveries q WHERE q.alert_id = f.id "
            "AND q.channel = d.channel AND q.state = 'queued'))", list(ended)).fetchall()
        return {r[0] for r in rows}

    @staticmethod
    def _finish(db: Tx, delivery_id: str, attempt: int, outcome: Outcome,
                now: datetime, node: str | None) -> bool:
        receipt = outcome.receipt
        held = (node,) if node is not None else ()
        changed = db.execute(
            "UPDATE deliveries SET state = ?, error = ?, not_before = ?, updated_at = ?, "  # noqa: S608 - constants
            "remote_id = COALESCE(?, remote_id), url = COALESCE(?, url), "
            "receipt_extra = COALESCE(?, receipt_extra), "
            "delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END, "
            "lease_node = NULL, lease_until = NULL "
            "WHERE id = ? AND state = 'sending' AND attempts = ?"
            + (" AND lease_node = ?" if held else ""),
            (outcome.state.value, outcome.message if outcome.state != DeliveryState.DELIVERED
             else None, ts(outcome.not_before) if outcome.not_before else None, ts(now),
             receipt.remote_id if receipt else None, receipt.url if receipt else None,
             json.dumps(dict(receipt.extra)) if receipt and receipt.extra else None,
             outcome.state is DeliveryState.DELIVERED, ts(now), delivery_id, attempt, *held),
        ).rowcount
        if not changed:
            return False  # stale: the attempt belongs to whoever holds it now
        db.execute(
            "UPDATE attempts SET duration = ?, result = ?, error_class = ?, message = ? "
            "WHERE delivery_id = ? AND number = ?",
            (outcome.duration, outcome.result, outcome.error_class, outcome.message,
             delivery_id, attempt),
        )
        return True

    def recover_interrupted(
        self, policy: Callable[[str], str | None], now: datetime, node: str | None = None,
        keep: Collection[str] = (), expired: bool = True,
    ) -> list[Recovered]:
        """After a crash: deliveries left in `sending` go back to the queue when their
        channel may resend (policy returns "retry"), else become `unknown`.

        Without ``node``, every such delivery (one daemon on the ledger). With it, those
        leased to this node (its previous run), to none, and, with ``expired``, those
        whose lease ran out; never those in ``keep``, which this process still has
        under way (after an outage of the ledger only the others were orphaned)."""
        sql = "SELECT id, channel, attempts, alert_id, lease_node FROM deliveries " \
              "WHERE state = 'sending'"
        params: list[object] = []
        if node is not None:
            sql += " AND (lease_node IS NULL OR lease_node = ?"
            params.append(node)
            if expired:
                sql += " OR lease_until < ?"
                params.append(ts(now))
            sql += ")"
        with self._write() as db:
            rows = [r for r in db.execute(sql + self._claim_skip, params).fetchall()
                    if r[0] not in keep]
            return self._resolve(db, rows, policy, now, lambda attempt, _: (
                f"broadcaster stopped during attempt {attempt}; whether the platform "
                "received it is unknown"))

    def take_over_expired(self, policy: Callable[[str], str | None], now: datetime,
                          node: str) -> list[Recovered]:
        """Deliveries whose node stopped renewing its lease (killed, frozen, cut off
        from the ledger): resolved by the same rule as after a crash, by ``node``."""
        with self._write() as db:
            rows = db.execute(
                "SELECT id, channel, attempts, alert_id, lease_node FROM deliveries "  # noqa: S608 - constants
                "WHERE state = 'sending' AND lease_until < ?" + self._claim_skip,
                (ts(now),)).fetchall()
            return self._resolve(db, rows, policy, now, lambda attempt, holder: (
                f"node {holder} stopped renewing its lease during attempt {attempt}; taken "
                f"over by node {node}; whether the platform received it is unknown"))

    def _resolve(self, db: Tx, rows: Sequence[Any], policy: Callable[[str], str | None],
                 now: datetime, why: Callable[[int, str | None], str]) -> list[Recovered]:
        recovered: list[Recovered] = []
        for delivery_id, channel, attempt, alert_id, holder in rows:
            verdict = policy(channel)
            state = DeliveryState.QUEUED if verdict == "retry" else DeliveryState.UNKNOWN
            message = why(attempt, holder)
            if verdict is None:
                message += f" (channel {channel!r} is no longer configured)"
            db.execute(
                "UPDATE deliveries SET state = ?, error = ?, not_before = NULL, "
                "updated_at = ?, lease_node = NULL, lease_until = NULL WHERE id = ?",
                (state.value, message, ts(now), delivery_id),
            )
            db.execute(
                "UPDATE attempts SET result = 'interrupted', message = ? "
                "WHERE delivery_id = ? AND number = ? AND result IS NULL",
                (message, delivery_id, attempt),
            )
            recovered.append(Recovered(delivery_id, channel, attempt, state, alert_id, holder))
        if recovered:
            self._announce(db, sorted({r.channel for r in recovered}))
        return recovered

    # -- officers' actions ----------------------------------------------------

    def retry_delivery(self, delivery_id: str, entry: AuditEntry, now: datetime) -> Delivery:
        """Queue a failed or unknown delivery again, by an officer's decision."""
        with self._write() as db:
            row = db.execute("SELECT state, channel FROM deliveries WHERE id = ?",
                             (delivery_id,)).fetchone()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row[0] not in (DeliveryState.FAILED, DeliveryState.UNKNOWN):
                raise Conflict(f"delivery {delivery_id} is {row[0]}; only failed or unknown "
                               "deliveries can be retried")
            if not db.execute(
                "UPDATE deliveries SET state = 'queued', not_before = NULL, queued_at = ?, "
                "updated_at = ? WHERE id = ? AND state IN ('failed', 'unknown')",
                (ts(now), ts(now), delivery_id),
            ).rowcount:  # another officer retried it a moment ago
                raise Conflict(f"delivery {delivery_id} was retried meanwhile")
            self._append_audit(db, entry, now)
            self._announce(db, [row[1]])
        return self.get_delivery(delivery_id)

    def release_hold(self, alert_id: str, hold: str, entry: AuditEntry,
                     now: datetime) -> Alert:
        """Let a held alert's deliveries go (a second officer confirmed it); one with a
        send time still ahead becomes scheduled instead."""
        with self._write() as db:
            row = db.execute("SELECT hold, send_at FROM alerts WHERE id = ?",
                             (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id} not found")
            if row[0] != hold:
                raise Conflict(f"alert {alert_id} is not {hold.replace('_', ' ')}")
            then = SCHEDULED if row[1] is not None and from_ts(row[1]) > now else None
            if not db.execute("UPDATE alerts SET hold = ? WHERE id = ? AND hold = ?",
                              (then, alert_id, hold)).rowcount:  # confirmed meanwhile
                raise Conflict(f"alert {alert_id} is not {hold.replace('_', ' ')}")
            self._append_audit(db, entry, now)
            if then is None:
                self._announce_alert(db, alert_id)
        return self.get_alert(alert_id)

    def cancel_alert(self, alert_id: str, entry: AuditEntry, now: datetime) -> Alert:
        """Withdraw an alert that has not gone out: every queued delivery is cancelled."""
        with self._write() as db:
            row = db.execute("SELECT hold FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id} not found")
            released = row[0] is None or not db.execute(
                "UPDATE alerts SET hold = NULL WHERE id = ? AND hold = ?",
                (alert_id, row[0])).rowcount  # released or fired meanwhile
            if released:
                raise Conflict(f"alert {alert_id} is already being delivered; send a "
                               "correction or an all-clear instead")
            db.execute(
                "UPDATE deliveries SET state = 'cancelled', error = ?, updated_at = ? "
                "WHERE alert_id = ? AND state = 'queued'",
                (f"withdrawn by {entry.actor} before it was sent", ts(now), alert_id),
            )
            self._append_audit(db, entry, now)
        return self.get_alert(alert_id)
