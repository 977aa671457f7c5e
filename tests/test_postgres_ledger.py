"""PostgreSQL as the ledger: configuration, start-up errors, outages, wake-up, moving a city.

Each test that stops or restarts the server gets a server of its own; the others
share the run's server and take a fresh database each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broadcaster.config import load_config
from broadcaster.errors import ConfigError
from broadcaster.models import AlertKind, Mode, Severity, new_id, utcnow
from broadcaster.store import AuditEntry, NewAlert, NewDelivery
from broadcaster.store.postgres import Connection, PostgresLedger, server_version_problem
from tests.conftest import ledger_for
from tests.console.client import Client
from tests.console.conftest import PASSWORD
from tests.postgres import ROLE, ROLE_PASSWORD, PostgresServer
from tests.support import (
    Daemon,
    SandboxThread,
    add_user,
    assert_secrets_stay_hidden,
    free_port,
    http,
    run_cli,
    wait_for,
    webhook_channel,
    write_config,
)

VARIABLES = {"area": "Oberwerth", "reason": "Gasaustritt", "until": "09:00",
             "shelter": "Rhein-Mosel-Halle"}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server this test may stop and restart."""
    server = PostgresServer().start()
    yield server
    server.kill()


def _evacuation(daemon: Daemon, token: str, timeout: float = 10.0,
                **extra: Any) -> tuple[int, Any]:
    return daemon.api("POST", "/api/v1/alerts", {
        "template": "evakuierung", "variables": VARIABLES, "mode": "live", **extra}, token,
        timeout=timeout)


def _metric(daemon: Daemon, name: str) -> float:
    text = http("GET", daemon.url + "/metrics")[1]
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(name + " "))


# -- configuration and start-up --------------------------------------------------

def test_a_uri_with_a_password_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", database="postgresql://broadcaster:geheim@db1/ledger")
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert raised.value.key == "service.database" and "database_password" in str(raised.value)
    assert "geheim" not in str(raised.value)
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2 and "service.database" in result.stderr
    assert "geheim" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("uri", [
    "postgresql://broadcaster@db1/ledger?password=geheim",
    "postgresql://broadcaster@db1/ledger?no_such_option=1",
])
def test_a_bad_uri_is_refused_naming_the_key(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, "", database=uri))
    assert raised.value.key == "service.database" and "geheim" not in str(raised.value)


def test_a_password_for_a_sqlite_ledger_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", service='database_password = { env = "X" }')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert raised.value.key == "service.database_password"


def test_a_multi_host_uri_with_target_session_attrs_is_understood(tmp_path: Path) -> None:
    uri = "postgresql://broadcaster@db1:5432,db2:5433/ledger?target_session_attrs=read-write"
    config = load_config(write_config(tmp_path, "", database=uri),
                         environ={"LEDGER_PASSWORD": "x", "WEBHOOK_SECRET": "s"})
    assert str(config.service.database) == uri
    assert "x" in config.secret_values()


def test_an_unreachable_server_at_start_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"postgresql://broadcaster@127.0.0.1:{free_port()}/ledger"
    started = time.monotonic()
    result = run_cli("serve", "--config", str(write_config(tmp_path, "", database=uri)))
    assert result.returncode == 2, result.stderr
    assert "cannot connect to the PostgreSQL ledger at 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_with_wait_for_database_the_daemon_waits_for_a_server_that_comes_up_later(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    server = PostgresServer()  # its port is known before it runs
    try:
        port = free_port()
        config = write_config(tmp_path, "", port=port, database=server.uri("postgres"))
        daemon = Daemon(config, port)
        daemon.log_path = tmp_path / "waiting.log"
        with daemon.log_path.open("w") as log:
            daemon.process = subprocess.Popen(
                [sys.executable, "-m", "broadcaster", "serve", "--wait-for-database",
                 "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "LEDGER_PASSWORD": ROLE_PASSWORD})
        daemons.append(daemon)
        wait_for(lambda: "daemon.waiting_for_database" in daemon.output(), timeout=20,
                 message="the daemon to say it waits")
        assert daemon.process.poll() is None  # waiting, not ended
        server.start()
        server.sql(f"ALTER DATABASE postgres OWNER TO {ROLE}")
        daemon.wait_ready(timeout=30)
    finally:
        server.kill()


def test_a_wrong_password_is_refused_at_start_and_never_shown(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    uri = postgres_server.uri(postgres_server.create_database())
    config = write_config(tmp_path, "", database=uri)
    result = run_cli("serve", "--wait-for-database", "--config", str(config),
                     env={"LEDGER_PASSWORD": "wrong-password-4711"})  # waiting cannot help
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert "database_password" in result.stderr
    assert "wrong-password-4711" not in result.stderr + result.stdout


def test_a_ledger_of_a_newer_schema_is_refused(tmp_path: Path,
                                              postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    ledger_for(postgres_server.uri(name)).close()  # create the schema
    postgres_server.sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'", name)
    result = run_cli("serve", "--config",
                     str(write_config(tmp_path, "", database=postgres_server.uri(name))))
    assert result.returncode == 1
    assert "schema version 99, newer than this broadcaster" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_older_than_13_is_refused() -> None:
    assert server_version_problem(120017) is not None
    assert "13 or newer" in (server_version_problem(120017) or "")
    assert server_version_problem(130000) is None and server_version_problem(150018) is None


def test_two_nodes_starting_together_migrate_once(postgres_server: PostgresServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    uri = postgres_server.uri(postgres_server.create_database())
    with ThreadPoolExecutor(3) as pool:
        ledgers = list(pool.map(lambda _: ledger_for(uri), range(3)))
    assert {ledger.schema_version for ledger in ledgers} == {5}
    for ledger in ledgers:
        ledger.close()


# -- the daemon on PostgreSQL -----------------------------------------------------

def _start(tmp_path: Path, sandbox: SandboxThread, daemons: list[Daemon], uri: str | None,
           channels: str | None = None) -> tuple[Daemon, str]:
    """A daemon on the PostgreSQL database ``uri`` (None: on SQLite) and an officer."""
    port = free_port()
    config = write_config(tmp_path, channels or webhook_channel("leitstelle", sandbox.url),
                          port=port, database=uri)
    token = add_user(config, "duty-1", "officer")
    daemon = Daemon(config, port)
    daemons.append(daemon.start())
    return daemon, token


def test_the_password_never_shows(tmp_path: Path, live_sandbox: SandboxThread,
                                  daemons: list[Daemon],
                                  postgres_server: PostgresServer) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons,
                           postgres_server.uri(postgres_server.create_database()))
    assert _evacuation(daemon, token)[0] == 201
    assert_secrets_stay_hidden(daemon, token, {"database_password": ROLE_PASSWORD})


def test_an_alert_accepted_by_another_process_is_sent_at_once(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    uri = postgres_server.uri(postgres_server.create_database())
    daemon, _ = _start(tmp_path, live_sandbox, daemons, uri)
    wait_for(lambda: "ledger.listening" in daemon.output(), message="the LISTEN")
    # Another process on the same ledger (a second node, later) accepts an alert; the
    # lanes here sleep until woken, so only its NOTIFY can start the delivery.
    other = PostgresLedger(Connection(uri, ROLE_PASSWORD))
    alert = NewAlert(
        id=new_id(), template="evakuierung", template_sha256="0" * 64, variables={},
        mode=Mode.LIVE, kind=AlertKind.ALERT, severity=Severity.SEVERE, references=None,
        created_by="duty-1", created_at=utcnow(),
        deliveries=(NewDelivery(new_id(), "leitstelle", "Kopf", "Text"),))
    accepted = time.monotonic()
    other.accept_alert(alert, AuditEntry(actor="duty-1", action="alert.send"))
    other.close()
    wait_for(lambda: [p for p in live_sandbox.posts("webhook") if p["extra"]["id"] == alert.id],
             timeout=5, message="the post")
    assert time.monotonic() - accepted < 2.0


def test_a_stopped_server_refuses_alerts_with_503_and_the_daemon_reconnects(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        own_postgres: PostgresServer) -> None:
    uri = own_postgres.uri(own_postgres.create_database())
    daemon, token = _start(tmp_path, live_sandbox, daemons, uri)
    assert _metric(daemon, "broadcaster_database_up") == 1
    assert run_cli("users", "add", "duty-2", "--role", "officer", "--password-stdin",
                   "--config", str(daemon.config), input=PASSWORD + "\n").returncode == 0
    console = Client(daemon.url)
    assert console.login("duty-2", PASSWORD).status == 303
    own_postgres.ctl("stop")

    status, answer = _evacuation(daemon, token)
    assert status == 503, answer
    assert "nothing was accepted" in answer["error"]["message"]
    assert http("GET", daemon.url + "/readyz")[0] == 503
    wait_for(lambda: _metric(daemon, "broadcaster_database_up") == 0, timeout=10,
             message="database_up to fall")
    page = console.get("/console/")
    assert page.status == 503 and "Datenbank des Warnsystems antwortet gerade nicht" in page.text

    own_postgres.ctl("start")
    wait_for(lambda: http("GET", daemon.url + "/readyz")[0] == 200, timeout=20,
             message="the daemon to find the server again")
    wait_for(lambda: _metric(daemon, "broadcaster_database_up") == 1, timeout=10,
             message="database_up to rise")
    listed = daemon.api("GET", "/api/v1/alerts", token=token)[1]["alerts"]
    assert listed == []  # the refused alert left nothing behind
    status, alert = _evacuation(daemon, token)
    assert status == 201

    def delivered() -> bool:
        found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)[1]
        return bool(found["state"] == "delivered")
    wait_for(delivered, timeout=10, message="delivery after the outage")


def _sending(daemon: Daemon) -> int:
    text = http("GET", daemon.url + "/metrics")[1]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("broadcaster_deliveries{") and 'state="sending"' in line)


def _fan_out_of_50(tmp_path: Path, sandbox: SandboxThread, daemons: list[Daemon],
                   server: PostgresServer) -> tuple[Daemon, str, dict[str, Any]]:
    """An alert to 50 webhooks whose posts each take 1.5 s, all of them under way."""
    names = [f"partner{n:02d}" for n in range(50)]
    channels = "".join(webhook_channel(name, sandbox.url, extra="timeout = 30")
                       for name in names)
    daemon, token = _start(tmp_path, sandbox, daemons, server.uri(server.create_database()),
                           channels)
    sandbox.fault("webhook", "latency", value=1500)
    status, alert = _evacuation(daemon, token)
    assert status == 201
    wait_for(lambda: _sending(daemon) == 50, timeout=10, message="50 attempts under way")
    return daemon, token, alert


def _each_delivered_once(daemon: Daemon, token: str, alert: dict[str, Any],
                         sandbox: SandboxThread) -> None:
    def settled() -> dict[str, Any] | None:
        code, found = daemon.api("GET", f"/api/v1/alerts/{alert['id']}", token=token)
        if code != 200:
            return None
        final = all(d["state"] in ("delivered", "failed", "unknown")
                    for d in found["deliveries"])
        return found if final else None

    found = wait_for(settled, timeout=60, message="every delivery to reach a final state")
    assert len(found["deliveries"]) == 50
    assert {d["state"] for d in found["deliveries"]} == {"delivered"}
    posts = [p for p in sandbox.posts("webhook") if p["extra"]["id"] == alert["id"]]
    per_delivery = Counter(p["idempotency_key"] for p in posts)
    assert set(per_delivery) == {d["id"] for d in found["deliveries"]}
    assert set(per_delivery.values()) == {1}, per_delivery.most_common(3)


def test_a_restart_of_the_server_during_a_fan_out_to_50_channels_loses_and_doubles_nothing(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        own_postgres: PostgresServer) -> None:
    daemon, token, alert = _fan_out_of_50(tmp_path, live_sandbox, daemons, own_postgres)
    own_postgres.ctl("restart")  # pg_ctl restart -m fast, while all 50 posts are under way
    _each_delivered_once(daemon, token, alert, live_sandbox)


def test_outcomes_of_attempts_that_end_while_the_server_is_down_are_written_when_it_is_back(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        own_postgres: PostgresServer) -> None:
    daemon, token, alert = _fan_out_of_50(tmp_path, live_sandbox, daemons, own_postgres)
    own_postgres.ctl("stop")
    wait_for(lambda: daemon.output().count("msg=delivery.unrecorded ") == 50, timeout=20,
             message="all 50 attempts to end with the ledger away")
    assert http("GET", daemon.url + "/readyz")[0] == 503
    own_postgres.ctl("start")
    _each_delivered_once(daemon, token, alert, live_sandbox)
    assert daemon.output().count("msg=delivery.recorded_late ") == 50


# -- moving a city, backups ------------------------------------------------------------

def test_a_sqlite_ledger_moves_to_postgresql_whole_and_verifiable(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    daemon, token = _start(tmp_path, live_sandbox, daemons, None)  # SQLite first
    alerts = [_evacuation(daemon, token)[1]["id"] for _ in range(3)]
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = _evacuation(daemon, token, send_at=tomorrow)[1]["id"]
    wait_for(lambda: daemon.api("GET", f"/api/v1/alerts/{alerts[-1]}", token=token)[1]
             ["state"] == "delivered", message="the alerts to be delivered")
    before = {a["id"]: a for a in daemon.api("GET", "/api/v1/alerts", token=token)[1]["alerts"]}
    audit_before = run_cli("audit", "verify", "--config", str(daemon.config)).stdout
    uri = postgres_server.uri(postgres_server.create_database())

    refused = run_cli("db", "migrate", "--to", uri, "--config", str(daemon.config))
    assert refused.returncode == 1 and "stop it first" in refused.stderr  # daemon running
    daemon.stop()
    password = tmp_path / "db_password"
    password.write_text(ROLE_PASSWORD + "\n", encoding="utf-8")
    moved = run_cli("db", "migrate", "--to", uri, "--password-file", str(password),
                    "--config", str(daemon.config), env={"LEDGER_PASSWORD": ""})
    assert moved.returncode == 0, moved.stderr
    assert "4 alerts" in moved.stdout and "audit chain verified" in moved.stdout

    again = run_cli("db", "migrate", "--to", uri, "--password-file", str(password),
                    "--config", str(daemon.config))
    assert again.returncode == 1 and "already holds a ledger" in again.stderr

    moved_config = daemon.config.parent / "postgres.toml"
    moved_config.write_text(daemon.config.read_text(encoding="utf-8").replace(
        f'database = "{tmp_path / "broadcaster.db"}"',
        f'database = "{uri}"\ndatabase_password = {{ file = "{password}" }}'), encoding="utf-8")
    assert run_cli("audit", "verify", "--config", str(moved_config)).stdout == audit_before
    on_postgres = Daemon(moved_config, daemon.port)
    daemons.append(on_postgres.start())
    after = {a["id"]: a for a in
             on_postgres.api("GET", "/api/v1/alerts", token=token)[1]["alerts"]}
    assert after == before  # the same alerts, deliveries, receipts, times and token
    assert after[scheduled]["state"] == "scheduled"


def test_a_bad_migration_target_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    for target, words in (("/var/lib/other.db", "must be a postgresql:// URI"),
                          ("postgresql://u:pw@db/x", "contains a password")):
        result = run_cli("db", "migrate", "--to", target, "--config", str(config))
        assert result.returncode == 2 and words in result.stderr
        assert "pw@" not in result.stderr


def test_a_backup_of_the_postgresql_ledger_is_a_checked_pg_dump(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    daemon, token = _start(tmp_path, live_sandbox, daemons, postgres_server.uri(name))
    assert _evacuation(daemon, token)[0] == 201
    result = run_cli("backup", str(tmp_path / "backups") + "/", "--config",
                     str(daemon.config))
    assert result.returncode == 0, result.stderr
    dumps = list((tmp_path / "backups").glob("broadcaster-*"))
    assert len(dumps) == 1 and dumps[0].stat().st_mode & 0o777 == 0o600
    assert "1 alert(s)" in result.stdout and "audit chain intact" in result.stdout
    assert ROLE_PASSWORD not in result.stdout + result.stderr
    # The restore: pg_restore into an empty database gives the same ledger.
    restored = postgres_server.create_database()
    postgres_server.restore(dumps[0], restored)
    copy = ledger_for(postgres_server.uri(restored))
    try:
        assert [a.id for a in copy.list_alerts()] == [
            a["id"] for a in daemon.api("GET", "/api/v1/alerts", token=token)[1]["alerts"]]
        assert copy.verify_audit() is None
    finally:
        copy.close()


def test_the_cli_sends_once_across_a_database_outage(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        own_postgres: PostgresServer) -> None:
    uri = own_postgres.uri(own_postgres.create_database())
    daemon, token = _start(tmp_path, live_sandbox, daemons, uri)
    own_postgres.ctl("stop")
    sending = subprocess.Popen(
        [sys.executable, "-m", "broadcaster", "send", "evakuierung", "--yes", "--no-wait",
         *[f"--set={k}={v}" for k, v in VARIABLES.items()]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BROADCASTER_URL": daemon.url, "BROADCASTER_TOKEN": token})
    assert sending.stderr is not None
    first = sending.stderr.readline()
    assert "trying again" in first, first
    own_postgres.ctl("start")
    out, err = sending.communicate(timeout=60)
    assert sending.returncode == 0, err
    assert "accepted:" in out
    ledger = ledger_for(uri)
    try:
        alerts = ledger.list_alerts()
        assert len(alerts) == 1
        assert (alerts[0].idempotency_key or "").startswith("cli-")
    finally:
        ledger.close()


def test_commits_held_by_a_missing_synchronous_standby_answer_503_not_a_hang(
        tmp_path: Path, live_sandbox: SandboxThread, daemons: list[Daemon],
        own_postgres: PostgresServer) -> None:
    uri = own_postgres.uri(own_postgres.create_database())
    daemon, token = _start(tmp_path, live_sandbox, daemons, uri)
    # A standby named here never connects: the primary holds every commit.
    own_postgres.sql("ALTER SYSTEM SET synchronous_standby_names = 'gone'")
    own_postgres.sql("SELECT pg_reload_conf()")
    started = time.monotonic()
    status, answer = _evacuation(daemon, token, timeout=30)
    assert status == 503 and "did not confirm the alert" in answer["error"]["message"]
    assert time.monotonic() - started < 15
    wait_for(lambda: _metric(daemon, "broadcaster_database_up") == 0, timeout=15,
             message="database_up to fall")
    assert http("GET", daemon.url + "/readyz", timeout=15)[0] == 503

    own_postgres.sql("ALTER SYSTEM RESET synchronous_standby_names")
    own_postgres.sql("SELECT pg_reload_conf()")
    wait_for(lambda: _metric(daemon, "broadcaster_database_up") == 1, timeout=15,
             message="database_up to rise")
    # The held commit went through once the standby was no longer waited for: the
    # 503 said it might, and it is there once, not twice.
    listed = daemon.api("GET", "/api/v1/alerts", token=token)[1]["alerts"]
    assert len(listed) == 1
