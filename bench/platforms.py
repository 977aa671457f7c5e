"""Platform channels for the benchmarks: a [[channel]] block each, pointed at the
sandbox, and the one raw request that channel makes — the floor is those requests
sent at once with aiohttp (and aiosmtplib), with nothing recorded."""

from __future__ import annotations

import itertools
import json
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
from oauthlib.oauth1 import Client as OAuth1Client

from bench.stack import Endpoint

# channel name → sandbox platform (for the latency fault every platform gets)
PLATFORM_OF = {"telegram": "telegram", "facebook": "facebook", "x": "x",
               "mastodon": "mastodon", "email": "email"}
TELEGRAM_TOKEN = "123456:bench-token"  # sandbox values: no secrets here
PAGE_TOKEN = "bench-page-token"
X_KEYS = {"consumer_key": "bench-consumer", "consumer_secret": "sandbox-consumer-secret",
          "access_token": "42-bench-access", "access_token_secret": "sandbox-access-secret"}
MASTODON_TOKEN = "bench-mastodon-token"
_unique = itertools.count()


def _text() -> str:
    # X and Facebook refuse a text they have already seen.
    return f"Bench {next(_unique)}: Evakuierung Oberwerth bis 09:00 Uhr."


def platform_channels(sandbox: str, smtp_port: int, directory: Path
                      ) -> tuple[dict[str, str], dict[str, Endpoint], dict[str, str]]:
    """(config blocks, floor endpoints, extra environment) per platform channel."""
    blocks = {
        "telegram": f"""
[[channel]]
name = "telegram"
kind = "telegram"
chat_id = "@bench"
token = {{ env = "BENCH_TELEGRAM_TOKEN" }}
api_base = "{sandbox}/telegram"
""",
        "facebook": f"""
[[channel]]
name = "facebook"
kind = "facebook"
page_id = "104000000000001"
token = {{ env = "BENCH_PAGE_TOKEN" }}
api_base = "{sandbox}/facebook"
""",
        "x": f"""
[[channel]]
name = "x"
kind = "x"
consumer_key = {{ env = "BENCH_X_CONSUMER_KEY" }}
consumer_secret = {{ env = "BENCH_X_CONSUMER_SECRET" }}
access_token = {{ env = "BENCH_X_ACCESS_TOKEN" }}
access_token_secret = {{ env = "BENCH_X_ACCESS_TOKEN_SECRET" }}
api_base = "{sandbox}/x"
""",
        "mastodon": f"""
[[channel]]
name = "mastodon"
kind = "mastodon"
instance = "{sandbox}/mastodon"
token = {{ env = "BENCH_MASTODON_TOKEN" }}
""",
        "email": f"""
[[channel]]
name = "email"
kind = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "warnung@koblenz.de"
recipients = ["presse@koblenz.de", "leitstelle@koblenz.de"]
""",
    }
    endpoints = {
        "telegram": Endpoint(lambda session: _telegram(session, sandbox)),
        "facebook": Endpoint(lambda session: _facebook(session, sandbox)),
        "x": Endpoint(lambda session: _x(session, sandbox)),
        "mastodon": Endpoint(lambda session: _mastodon(session, sandbox)),
        "email": Endpoint(lambda session: _email(smtp_port)),
    }
    env = {"BENCH_TELEGRAM_TOKEN": TELEGRAM_TOKEN, "BENCH_PAGE_TOKEN": PAGE_TOKEN,
           "BENCH_MASTODON_TOKEN": MASTODON_TOKEN,
           **{f"BENCH_X_{key.upper()}": value for key, value in X_KEYS.items()}}
    return blocks, endpoints, env


async def _ok(response: aiohttp.ClientResponse) -> None:
    await response.read()
    assert response.status < 300, response.status


async def _telegram(session: aiohttp.ClientSession, sandbox: str) -> None:
    form = {"chat_id": "@bench", "text": _text(), "parse_mode": "HTML"}
    async with session.post(f"{sandbox}/telegram/bot{TELEGRAM_TOKEN}/sendMessage",
                            data=form) as response:
        await _ok(response)


async def _facebook(session: aiohttp.ClientSession, sandbox: str) -> None:
    form = {"message": _text(), "access_token": PAGE_TOKEN}
    async with session.post(f"{sandbox}/facebook/v26.0/104000000000001/feed",
                            data=form) as response:
        await _ok(response)


async def _x(session: aiohttp.ClientSession, sandbox: str) -> None:
    client = OAuth1Client(X_KEYS["consumer_key"], client_secret=X_KEYS["consumer_secret"],
                          resource_owner_key=X_KEYS["access_token"],
                          resource_owner_secret=X_KEYS["access_token_secret"])
    # Signed for the real URL, as tweepy signs it; the stand-in verifies just that.
    _, headers, _ = client.sign("https://api.twitter.com/2/tweets", http_method="POST")
    body = json.dumps({"text": _text()})
    async with session.post(f"{sandbox}/x/2/tweets", data=body,
                            headers={**headers, "Content-Type": "application/json"}
                            ) as response:
        await _ok(response)


async def _mastodon(session: aiohttp.ClientSession, sandbox: str) -> None:
    headers = {"Authorization": f"Bearer {MASTODON_TOKEN}",
               "Idempotency-Key": f"floor-{next(_unique)}"}
    async with session.post(f"{sandbox}/mastodon/api/v1/statuses",
                            data={"status": _text()}, headers=headers) as response:
        await _ok(response)


async def _email(smtp_port: int) -> None:
    message = EmailMessage()
    message["From"] = "warnung@koblenz.de"
    message["To"] = "undisclosed-recipients:;"
    message["Subject"] = "Bench"
    message["Message-ID"] = f"<floor-{next(_unique)}@koblenz.de>"
    message.set_content(_text())
    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_port,
                          sender="warnung@koblenz.de",
                          recipients=["presse@koblenz.de", "leitstelle@koblenz.de"],
                          start_tls=False)  # as the channel with security = "none"
