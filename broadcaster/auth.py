"""Who may do what: roles, API tokens and console passwords.

A token reads ``bc_<user id>_<secret>``. Only the sha256 of the secret is stored;
the user id finds the row and the hashes are compared in constant time. Tokens
carry 256 bits of randomness, so a fast hash is enough for them; passwords are
chosen by people and get scrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ROLES = ("viewer", "officer", "admin")
_TOKEN_PREFIX = "bc"  # noqa: S105 - a prefix, not a secret
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def role_allows(role: str, needed: str) -> bool:
    """Roles are ordered: an admin may do what an officer may, and so on."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def new_user_id() -> str:
    return secrets.token_hex(6)


def new_token(user_id: str) -> tuple[str, str]:
    """A fresh token for the user and the hash to store."""
    secret = secrets.token_urlsafe(32)
    return f"{_TOKEN_PREFIX}_{user_id}_{secret}", _digest(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(user id, secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def token_matches(secret: str, stored_hash: str | None) -> bool:
    if stored_hash is None:
        return False
    return hmac.compare_digest(_digest(secret), stored_hash)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """scrypt with a random salt, encoded as scrypt$n$r$p$salt$hash (hex)."""
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${derived.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt),
                                 n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(derived.hex(), expected)
