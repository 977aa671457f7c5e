"""Several nodes on one PostgreSQL ledger: each a real `serve` process, as in production.

Nodes share nothing but the database: they claim with leases, take over from a node
that stops renewing, keep a channel's rate for the whole cluster, fire a scheduled
alert once, and share console sessions, the login throttle and the audit chain.
Leases are short here (a few seconds) so takeovers are quick to watch.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.console.client import Client
from tests.console.conftest import PASSWORD
from tests.postgres import PostgresServer
from tests.support import (
    Daemon,
    SandboxThread,
    add_user,
    free_port,
    http,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}
LEASE = 3


def _nodes(tmp_path: Path, daemons: list[Daemon], uri: str, channels: str,
           names: tuple[str, ...] = ("a", "b"), lease: int = LEASE, start: bool = True
           ) -> tuple[list[Daemon], str]:
    """One `serve` per name on the same ledger, and an officer's token."""
    nodes = []
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()
        config = write_config(folder, channels, port=port, database=uri, service=(
            f'node = "{name}"\nlease_seconds = {lease}\nexpected_nodes = {len(names)}'))
        nodes.append(Daemon(config, port))
    token = add_user(nodes[0].config, "duty-1", "officer")
    for node in nodes if start else ():
        daemons.append(node.start())
    return nodes, token


def _send(node: Daemon, token: str, channels: list[str] | None = None,
          **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": "evakuierung", "variables": VARIABLES, "mode": "live",
                            **extra}
    if channels is not None:
        body["channels"] = channels
    status, alert = node.api("POST", "/api/v1/alerts", body, token)
    assert status == 201, alert
    return dict(alert)


def _alert(node: Daemon, token: str, alert_id: str) -> dict[str, Any]:
    return dict(node.api("GET", f"/api/v1/alerts/{alert_id}", token=token)[1])


def _final(node: Daemon, token: str, alert_ids: list[str], timeout: float
           ) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        found = [_alert(node, token, i) for i in alert_ids]
        return found if all(d["state"] in ("delivered", "failed", "unknown")
                            for a in found for d in a["deliveries"]) else None
    return wait_for(done, timeout=timeout, interval=0.1,
                    message="every delivery to reach a final state")


def _metric(node: Daemon, prefix: str) -> float:
    text = http("GET", node.url + "/metrics")[1]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def _webhooks(sandbox: SandboxThread, count: int, extra: str = "") -> tuple[str, list[str]]:
    names = [f"partner{n:02d}" for n in range(count)]
    return "".join(webhook_channel(n, sandbox.url, extra=extra) for n in names), names


def test_two_nodes_deliver_each_alert_once_and_keep_one_audit_chain(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 3)
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels)
    accepted = [_send(node, token)["id"] for node in (a, b, a, b, a, b, a, b, a, b)]
    alerts = _final(b, token, accepted, timeout=30)
    assert {d["state"] for alert in alerts for d in alert["deliveries"]} == {"delivered"}
    posts = [p for p in live_sandbox.posts("webhook") if p["extra"]["id"] in accepted]
    per_delivery = Counter(p["idempotency_key"] for p in posts)
    assert len(per_delivery) == 30 and set(per_delivery.values()) == {1}
    verified = run_cli("audit", "verify", "--config", str(a.config))
    assert verified.returncode == 0 and "intact" in verified.stdout
    nodes = {n["name"]: n for n in a.api("GET", "/api/v1/nodes", token=token)[1]["nodes"]}
    assert {n: nodes[n]["state"] for n in nodes} == {"a": "running", "b": "running"}
    assert nodes["a"]["this"] and not nodes["b"]["this"]
    assert _metric(a, "broadcaster_nodes_live") == 2
    assert _metric(a, "broadcaster_claims_total") + _metric(b, "broadcaster_claims_total") == 30


def test_a_killed_node_s_deliveries_are_finished_by_the_other_within_the_lease(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 50, extra="timeout = 30")
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels)
    live_sandbox.fault("webhook", "latency", value=1000)  # every post takes a second
    alert = _send(a, token)
    wait_for(lambda: _metric(a, 'broadcaster_deliveries{channel="partner') and sum(
        n["attempts_under_way"] for n in a.api("GET", "/api/v1/nodes", token=token)[1]["nodes"]
    ) == 50, timeout=10, message="50 attempts under way")
    nodes = a.api("GET", "/api/v1/nodes", token=token)[1]["nodes"]
    holder = max(nodes, key=lambda n: n["attempts_under_way"])["name"]
    victim, survivor = (a, b) if holder == "a" else (b, a)
    victim.kill()
    killed = time.monotonic()
    found = _final(survivor, token, [alert["id"]], timeout=LEASE + 10)[0]
    assert time.monotonic() - killed <= LEASE + 5
    assert {d["state"] for d in found["deliveries"]} == {"delivered"}
    posts = [p for p in live_sandbox.posts("webhook") if p["extra"]["id"] == alert["id"]]
    # A repeat by the survivor carries the delivery's own webhook-id: the receiver
    # sees one message, however often it arrives.
    assert {p["idempotency_key"] for p in posts} == {d["id"] for d in found["deliveries"]}
    assert len(posts) >= 50
    assert "msg=delivery.taken_over" in survivor.output()
    assert _metric(survivor, "broadcaster_leases_taken_over_total") >= 1
    wait_for(lambda: {n["name"]: n["state"] for n in survivor.api(
        "GET", "/api/v1/nodes", token=token)[1]["nodes"]}[holder] == "lost", timeout=10,
        message="the killed node to show as lost")


def test_a_frozen_node_finds_its_late_result_discarded(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1, extra="timeout = 30")
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels, lease=2, start=False)
    daemons.append(a.start())
    live_sandbox.fault("webhook", "latency", value=4000)
    alert = _send(a, token)
    wait_for(lambda: a.api("GET", "/api/v1/nodes", token=token)[1]["nodes"][0]
             ["attempts_under_way"] == 1, message="node a to hold the attempt")
    daemons.append(b.start())  # b joins after a took the delivery
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)  # frozen past its lease, attempt under way
    try:
        found = _final(b, token, [alert["id"]], timeout=20)[0]
    finally:
        a.process.send_signal(signal.SIGCONT)
    delivery = found["deliveries"][0]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 2
    wait_for(lambda: "msg=delivery.late_result_discarded" in a.output(), timeout=15,
             message="node a to discard its late result")
    again = _alert(b, token, alert["id"])["deliveries"][0]
    assert again["state"] == "delivered" and again["attempts"] == 2  # not written over
    assert "msg=delivery.taken_over" in b.output()


def test_a_scheduled_alert_fires_once_on_the_other_node_when_its_node_dies(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1)
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels)
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=9)
    alert = _send(a, token, send_at=send_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert alert["state"] == "scheduled"
    wait_for(lambda: datetime.now(UTC) > send_at - timedelta(seconds=1.5), timeout=15,
             message="shortly before its time")
    a.kill()
    found = _final(b, token, [alert["id"]], timeout=20)[0]
    assert found["state"] == "delivered"
    posts = [p for p in live_sandbox.posts("webhook") if p["extra"]["id"] == alert["id"]]
    assert len(posts) == 1
    assert b.output().count("msg=alert.fired") == 1


def test_a_channel_s_rate_holds_for_the_whole_cluster(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1, extra="rate = 1")
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels)
    accepted: list[str] = []
    lock = threading.Lock()

    def send(node: Daemon) -> None:
        for _ in range(10):
            alert = _send(node, token)
            with lock:
                accepted.append(alert["id"])

    senders = [threading.Thread(target=send, args=(node,)) for node in (a, b)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    _final(a, token, accepted, timeout=40)
    arrived = sorted(datetime.fromisoformat(p["received_at"].replace("Z", "+00:00"))
                     for p in live_sandbox.posts("webhook") if p["extra"]["id"] in accepted)
    assert len(arrived) == 20
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(arrived)]
    assert min(gaps) >= 0.9, gaps  # one a second, on both nodes together
    assert _metric(a, "broadcaster_claims_total") > 0 and _metric(b, "broadcaster_claims_total") > 0


def test_sessions_and_the_login_throttle_are_shared_by_the_nodes(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1)
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), _ = _nodes(tmp_path, daemons, uri, channels)
    for name in ("duty-2", "locked-1"):
        added = run_cli("users", "add", name, "--role", "officer", "--password-stdin",
                        "--config", str(a.config), input=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
    on_a = Client(a.url)
    assert on_a.login("duty-2", PASSWORD).status == 303
    on_b = Client(b.url)
    for cookie in on_a.jar:  # the same browser, now answered by node b
        on_b.jar.set_cookie(cookie)
    page = on_b.get("/console/")
    assert page.status == 200 and "duty-2" in page.text
    for attempt in range(19):  # one short of the account's limit, spread over both nodes
        node = Client(a.url if attempt % 2 else b.url)
        assert node.login("locked-1", f"wrong-{attempt}").status == 401
    assert Client(a.url).login("locked-1", "wrong-19").status == 429  # the twentieth
    for url in (a.url, b.url):
        locked = Client(url).login("locked-1", PASSWORD)
        assert locked.status == 429 and "Zu viele fehlgeschlagene Anmeldungen" in locked.text


def test_health_checks_run_once_per_interval_in_the_cluster(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1, extra="health_interval = 2")
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), _ = _nodes(tmp_path, daemons, uri, channels)
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 9, timeout=12, interval=0.5,
             message="nine seconds of health checks")
    checks = (_metric(a, "broadcaster_health_checks_total")
              + _metric(b, "broadcaster_health_checks_total"))
    assert 3 <= checks <= 7  # once every 2 s in the cluster, not once per node


def test_a_second_process_under_a_live_node_s_name_is_refused_and_sqlite_stays_single(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1)
    uri = postgres_server.uri(postgres_server.create_database())
    (a,), _ = _nodes(tmp_path, daemons, uri, channels, names=("a",))
    twin = a.config.parent / "twin.toml"
    twin.write_text(a.config.read_text().replace(f":{a.port}", f":{free_port()}"))
    result = run_cli("serve", "--config", str(twin), timeout=60)
    assert result.returncode == 1 and "node 'a' is already running" in result.stderr
    other = run_cli("serve", "--node", "bad name!", "--config", str(twin))
    assert other.returncode == 2 and "service.node" in other.stderr


@pytest.mark.parametrize("name", ["", "a b", "x" * 64])
def test_a_bad_node_name_is_refused_naming_the_key(tmp_path: Path, name: str) -> None:
    from broadcaster.config import load_config
    from broadcaster.errors import ConfigError

    config = write_config(tmp_path, "", service=f'node = "{name}"')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert raised.value.key == "service.node"


def test_leases_are_renewed_while_an_attempt_runs_longer_than_one(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    channels, _ = _webhooks(live_sandbox, 1, extra="timeout = 30")
    uri = postgres_server.uri(postgres_server.create_database())
    (a, b), token = _nodes(tmp_path, daemons, uri, channels, lease=2)
    live_sandbox.fault("webhook", "latency", value=6000)  # three leases long
    alert = _send(a, token)
    found = _final(a, token, [alert["id"]], timeout=20)[0]
    assert found["deliveries"][0]["state"] == "delivered"
    assert found["deliveries"][0]["attempts"] == 1  # nobody took a live node's work
    assert "taken_over" not in a.output() + b.output()


def test_a_database_failover_loses_no_accepted_alert_and_answers_503_in_the_gap(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon]) -> None:
    primary = PostgresServer().start()
    standby = None
    try:
        database = primary.create_database()
        standby = primary.standby()  # synchronous: a 201 means both have it
        uri = (f"postgresql://broadcaster@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
               f"/{database}?target_session_attrs=read-write&connect_timeout=2")
        channels, _ = _webhooks(live_sandbox, 10, extra="timeout = 30")
        (a, b), token = _nodes(tmp_path, daemons, uri, channels)
        live_sandbox.fault("webhook", "latency", value=300)
        answers: list[tuple[int, Any]] = []
        stop = threading.Event()

        def officer() -> None:  # sends all along, to both nodes in turn
            turn = 0
            while not stop.is_set():
                node = (a, b)[turn % 2]
                turn += 1
                status, answer = node.api("POST", "/api/v1/alerts", {
                    "template": "evakuierung", "variables": VARIABLES, "mode": "live"},
                    token, timeout=30)
                answers.append((status, answer))

        sending = threading.Thread(target=officer)
        sending.start()
        try:
            wait_for(lambda: sum(s == 201 for s, _ in answers) >= 5, timeout=20,
                     message="alerts before the failover")
            primary.crash()
            wait_for(lambda: any(s == 503 for s, _ in answers[-3:]), timeout=20,
                     message="the gap to be noticed")
            standby.promote()
            wait_for(lambda: sum(s == 201 for s, _ in answers[-5:]) == 5, timeout=60,
                     message="alerts accepted again on the new primary")
        finally:
            stop.set()
            sending.join(60)
        assert {status for status, _ in answers} <= {201, 503}, Counter(s for s, _ in answers)
        accepted = [answer["id"] for status, answer in answers if status == 201]
        found = _final(a, token, accepted, timeout=60)
        assert len(found) == len(accepted)  # every 201 survived the failover
        assert all(d["state"] == "delivered" for alert in found for d in alert["deliveries"])
        assert any(status == 503 for status, _ in answers)
    finally:
        primary.kill()
        if standby is not None:
            standby.kill()
