"""The service's bearer tokens: created, listed, revoked and checked, stored in the catalog's ``tokens`` table.

A token is ``sks_<lookup>_<secret>``: the lookup part (8 random bytes, hex) finds its row, the secret (32 random
bytes, URL-safe base64) is checked against ``sha256(salt || secret)`` with a constant-time comparison. Only the
salt and that hash are stored: a copy of the database gives no usable token. The secrets are random (256 bits),
not passwords, so one salted SHA-256 is enough; no slow password hash is needed.

Roles: ``read`` (read every scan, alert and the catalog), ``submit`` (read, submit, rescan, abort) and
``admin`` (everything, also tokens); each includes the ones before it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass

from skyscan.errors import InputError
from skyscan.ops.catalog.db import TOKEN_ROLES, transaction
from skyscan.timestamps import utcnow

__all__ = ["ROLES", "Token", "authenticate", "create_token", "list_tokens", "revoke_token", "role_allows"]

ROLES = TOKEN_ROLES
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}\Z")
_TOKEN = re.compile(r"sks_([0-9a-f]{16})_([A-Za-z0-9_-]{20,64})\Z")


@dataclass(frozen=True)
class Token:
    """A token as listed (never its secret)."""

    name: str
    role: str
    created: str
    revoked: str | None

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "role": self.role, "created": self.created, "revoked": self.revoked}


def role_allows(role: str | None, needed: str) -> bool:
    """True when ``role`` includes ``needed`` (read < submit < admin); None (anonymous) includes nothing."""
    if role is None:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(f"--name: {name!r} is not a token name (1-64 letters, digits or _.@+-, "
                         "starting with a letter or digit)")
    return name


def create_token(conn: sqlite3.Connection, name: str, role: str) -> str:
    """A new token named ``name`` with ``role``; the token itself is returned once and never stored."""
    check_name(name)
    if role not in ROLES:
        raise InputError(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    with transaction(conn):
        if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone() is not None:
            raise InputError(f"--name: a token named {name!r} exists (revoke it first, or choose another name)")
        conn.execute("INSERT INTO tokens (name, role, lookup, salt, hash, created) VALUES (?, ?, ?, ?, ?, ?)",
                     (name, role, lookup, salt, _digest(salt, secret), utcnow()))
    return f"sks_{lookup}_{secret}"


def list_tokens(conn: sqlite3.Connection) -> list[Token]:
    rows = conn.execute("SELECT name, role, created, revoked FROM tokens ORDER BY name").fetchall()
    return [Token(str(r["name"]), str(r["role"]), str(r["created"]), r["revoked"]) for r in rows]


def revoke_token(conn: sqlite3.Connection, name: str) -> bool:
    """Revoke the token ``name`` (its row stays, for the record of who did what); False if already revoked."""
    with transaction(conn):
        row = conn.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise InputError(f"no token named {name!r}")
        if row["revoked"] is not None:
            return False
        conn.execute("UPDATE tokens SET revoked = ? WHERE name = ?", (utcnow(), name))
        return True


def authenticate(conn: sqlite3.Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of a valid, unrevoked token; None for anything else (malformed, unknown, revoked, wrong)."""
    m = _TOKEN.match(token)
    if m is None:
        return None
    row = conn.execute("SELECT name, role, salt, hash, revoked FROM tokens WHERE lookup = ?",
                       (m.group(1),)).fetchone()
    if row is None or row["revoked"] is not None:
        return None
    if not hmac.compare_digest(_digest(str(row["salt"]), m.group(2)), str(row["hash"])):
        return None
    return str(row["name"]), str(row["role"])
