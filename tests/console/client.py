"""A small browser stand-in for HTTP-level console tests: cookies, no automatic
redirects, forms posted as a browser posts them, the CSRF token read from a page."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message

FormData = Mapping[str, str] | Sequence[tuple[str, str]]
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass
class Page:
    status: int
    headers: Message
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []

    def hidden(self, name: str) -> str:
        """The value of the first hidden input of that name (HTML-unescaped)."""
        import html

        for found, value in _HIDDEN.findall(self.text):
            if found == name:
                return html.unescape(value)
        raise AssertionError(f"no hidden field {name!r} on the page:\n{self.text[:3000]}")

    def hidden_fields(self, form_action: str) -> list[tuple[str, str]]:
        """Every hidden field of the form posting to ``form_action``."""
        import html

        start = self.text.index(f'action="{form_action}"')
        end = self.text.index("</form>", start)
        return [(n, html.unescape(v)) for n, v in _HIDDEN.findall(self.text[start:end])]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, method: str, path: str, form: FormData | None = None,
                headers: Mapping[str, str] | None = None) -> Page:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=15) as response:
                return Page(response.status, response.headers,
                            response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return Page(exc.code, exc.headers, exc.read().decode("utf-8", "replace"))

    def get(self, path: str, **kwargs: object) -> Page:
        return self.request("GET", path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, form: FormData, **kwargs: object) -> Page:
        return self.request("POST", path, form, **kwargs)  # type: ignore[arg-type]

    def login(self, name: str, secret: str, headers: Mapping[str, str] | None = None) -> Page:
        form = self.get("/console/login")
        return self.post("/console/login", {"csrf": form.hidden("csrf"), "next": "/console/",
                                            "username": name, "secret": secret},
                         headers=headers)

    def csrf(self) -> str:
        return self.get("/console/").hidden("csrf")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)
