"""Telegram Bot API stand-in: ``/telegram/bot<token>/<method>``.

Speaks the Bot API wire protocol for the methods broadcaster uses — sendMessage,
editMessageText, deleteMessage and getMe — so python-telegram-bot can be pointed
at it unchanged. Parameters come from the query string and from either a
form-urlencoded body (what python-telegram-bot sends; nested values such as
``reply_parameters`` are JSON strings inside the form) or a JSON body.

Answers are ``{"ok":true,"result":…}``; errors ``{"ok":false,"error_code":N,
"description":"…"}`` with Telegram's own descriptions: the token ``revoked`` gets
401 Unauthorized, a text over 4096 visible characters (UTF-16 units after HTML
parsing) "message is too long", an unsupported HTML tag "can't parse entities",
an unknown message "message to edit/delete not found". Posts are recorded with
the HTML text as received; faults target the chat as the request names it
(``@name``, or the numeric id of a chat without one).
"""

from __future__ import annotations

import html
import json
import re
import time
import zlib
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from broadcaster import lengths
from broadcaster.sandbox.state import Post, SandboxState, apply_faults

REVOKED = "revoked"
# Tags Telegram's HTML parse mode understands.
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
                 "tg-spoiler", "a", "code", "pre", "blockquote", "tg-emoji"}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*>")
_NUMERIC = re.compile(r"-?[0-9]+")


class BotApiError(Exception):
    """An answer in Telegram's error shape."""

    def __init__(self, status: int, description: str) -> None:
        self.status = status
        self.description = description
        super().__init__(description)


def bad_request(what: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {what}")


def error_body(status: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def visible_text(text: str, parse_mode: str | None) -> str:
    """What Telegram shows; raises for HTML it cannot parse, as Telegram does."""
    if (parse_mode or "").upper() != "HTML":
        return text
    open_tags: list[str] = []
    for match in _TAG.finditer(text):
        closing, tag = match[1] == "/", match[2].lower()
        offset = len(text[:match.start()].encode("utf-8"))
        if tag not in _ALLOWED_TAGS:
            kind = "end" if closing else "start"
            raise bad_request(f'can\'t parse entities: Unsupported {kind} tag "{tag}" at byte '
                              f"offset {offset}")
        if not closing:
            open_tags.append(tag)
        elif not open_tags or open_tags.pop() != tag:
            raise bad_request(f'can\'t parse entities: Unmatched end tag at byte offset {offset},'
                              f' expected "</{open_tags[-1] if open_tags else tag}>"')
    if open_tags:
        raise bad_request(f"can't parse entities: Can't find end tag corresponding to start "
                          f'tag "{open_tags[-1]}"')
    return html.unescape(_TAG.sub("", text))


def _nested(value: Any, name: str) -> Mapping[str, Any] | None:
    """A nested object: JSON text inside a form, or an object in a JSON body."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be an object")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        return int(value)
    raise bad_request(f"{what} is not specified" if value in (None, "") else f"invalid {what}")


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


class TelegramStandIn:
    platform = "telegram"

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._names: dict[int, str] = {}  # chat id → "@name", for chats that have one

    def routes(self) -> list[web.RouteDef]:
        path = "/telegram/bot{token}/{method}"
        return [web.post(path, self.call), web.get(path, self.call)]

    def error_response(self, request: web.Request, status: int) -> web.Response:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        # Echoes the path, token included: tests prove the channel never repeats it.
        return web.json_response(
            error_body(status, f"{phrase}: sandbox error for {request.path_qs}"), status=status)

    def ratelimit_response(self, request: web.Request, seconds: float) -> web.Response:
        wait = max(1, round(seconds))  # Telegram sends whole seconds, never 0
        return web.json_response(
            error_body(429, f"Too Many Requests: retry after {wait}", retry_after=wait),
            status=429)

    async def call(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, Any] = {}
        unreadable: BotApiError | None = None
        try:
            params = await self._parameters(request)  # reads the whole body
        except BotApiError as exc:
            unreadable = exc
        chat = params.get("chat_id")
        target = self._target(chat) if chat not in (None, "") else None
        faulted = await apply_faults(request, self.state, self, target)
        if faulted is not None:
            return faulted
        if request.match_info["token"] == REVOKED:
            return web.json_response(error_body(401, "Unauthorized"), status=401)
        handler = {
            "sendmessage": self._send_message, "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message, "getme": self._get_me,
        }.get(request.match_info["method"].lower())
        if handler is None:
            return web.json_response(error_body(404, "Not Found"), status=404)
        try:
            if unreadable is not None:
                raise unreadable
            result = handler(request.match_info["token"], params)
        except BotApiError as exc:
            return web.json_response(error_body(exc.status, exc.description), status=exc.status)
        return web.json_response({"ok": True, "result": result},
                                 dumps=lambda v: json.dumps(v, ensure_ascii=False))

    async def _parameters(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            try:
                document = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON") from None
            if not isinstance(document, dict):
                raise bad_request("the request body must be a JSON object")
            params.update(document)
        elif request.content_type == "multipart/form-data":
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        else:
            body = (await request.read()).decode("utf-8", "replace")
            params.update(parse_qsl(body, keep_blank_values=True))
        return params

    def _chat_id(self, chat: Any) -> int:
        """The numeric id of a chat given as an id or "@name" (stable per name)."""
        if chat in (None, ""):
            raise bad_request("chat_id is empty")
        if isinstance(chat, str) and chat.startswith("@") and len(chat) > 1:
            chat_id = -1_000_000_000_000 - zlib.crc32(chat[1:].lower().encode())
            self._names.setdefault(chat_id, chat)
            return chat_id
        try:
            return _integer(chat, "chat_id")
        except BotApiError:
            raise bad_request("chat not found") from None

    def _target(self, chat: Any) -> str:
        """How faults and posts name a chat: its "@name" when it has one."""
        try:
            chat_id = self._chat_id(chat)
        except BotApiError:
            return str(chat)
        return self._names.get(chat_id, str(chat_id))

    def _chat_json(self, chat_id: int) -> dict[str, Any]:
        name = self._names.get(chat_id)
        kind = "channel" if name or str(chat_id).startswith("-100") else (
            "group" if chat_id < 0 else "private")
        chat: dict[str, Any] = {"id": chat_id, "type": kind,
                                "title": name[1:] if name else f"Sandbox chat {chat_id}"}
        if name:
            chat["username"] = name[1:]
        return chat

    def _message_json(self, post: Post, chat_id: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": int(post.id), "date": int(post.received_at.timestamp()),
            "chat": self._chat_json(chat_id),
            "text": visible_text(post.text, post.extra.get("parse_mode")),
        }
        if post.edited:
            message["edit_date"] = int(time.time())
        if post.reply_to is not None:
            message["reply_to_message"] = {"message_id": int(post.reply_to),
                                           "date": message["date"], "chat": message["chat"]}
        return message

    def _checked_text(self, params: Mapping[str, Any]) -> tuple[str, str | None]:
        text = params.get("text")
        parse_mode = params.get("parse_mode") or None
        if not isinstance(text, str) or not text.strip():
            raise bad_request("message text is empty")
        shown = visible_text(text, parse_mode)
        if not shown.strip():
            raise bad_request("message text is empty")
        if len(shown.encode("utf-16-le")) // 2 > lengths.TELEGRAM_LIMIT:
            raise bad_request("message is too long")
        return text, parse_mode

    def _find(self, chat_id: int, message_id: int) -> Post | None:
        post = self.state.find(self.platform, str(message_id))
        if post is None or post.deleted or post.extra.get("chat_id") != chat_id:
            return None
        return post

    def _send_message(self, token: str, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params.get("chat_id"))
        text, parse_mode = self._checked_text(params)
        reply = _nested(params.get("reply_parameters"), "reply parameters") or {}
        reply_to = reply.get("message_id", params.get("reply_to_message_id"))
        allow_without = _flag(reply.get("allow_sending_without_reply",
                                        params.get("allow_sending_without_reply")))
        reply_id: str | None = None
        if reply_to not in (None, ""):
            message_id = _integer(reply_to, "message identifier")
            if self._find(chat_id, message_id) is not None:
                reply_id = str(message_id)
            elif not allow_without:
                raise bad_request("message to be replied not found")
        post = self.state.record(Post(
            platform=self.platform, target=self._target(params["chat_id"]),
            id=str(self.state.next_id()), text=text, reply_to=reply_id,
            extra={"chat_id": chat_id, "parse_mode": parse_mode},
        ))
        return self._message_json(post, chat_id)

    def _edit_message_text(self, token: str, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params.get("chat_id"))
        message_id = _integer(params.get("message_id"), "message identifier")
        text, parse_mode = self._checked_text(params)
        post = self._find(chat_id, message_id)
        if post is None:
            raise bad_request("message to edit not found")
        if post.text == text and post.extra.get("parse_mode") == parse_mode:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
        post.text, post.edited = text, True
        post.extra["parse_mode"] = parse_mode
        self.state.updated()
        return self._message_json(post, chat_id)

    def _delete_message(self, token: str, params: Mapping[str, Any]) -> bool:
        chat_id = self._chat_id(params.get("chat_id"))
        message_id = _integer(params.get("message_id"), "message identifier")
        post = self._find(chat_id, message_id)
        if post is None:
            raise bad_request("message to delete not found")
        post.deleted = True
        self.state.updated()
        return True

    def _get_me(self, token: str, params: Mapping[str, Any]) -> dict[str, Any]:
        bot_id = token.partition(":")[0]
        return {"id": int(bot_id) if bot_id.isdigit() else 1_000_001, "is_bot": True,
                "first_name": "Sandbox Bot", "username": "sandbox_warnung_bot",
                "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}
