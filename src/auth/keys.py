"""API keys: what a key may do, and how its secret is made and checked. No I/O.

A key has scopes (which kinds of request it may make) and, optionally, account-id
patterns it is limited to (a tenant's key: ``shop-42:*``). A limited key may debit (at
once or pending), reverse, pay out from and read only the accounts its patterns cover;
it may credit any account unless it was made with ``credits_within_accounts``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

READ = "read"  # the query API
ACCOUNTS = "accounts"  # open accounts
TRANSFERS = "transfers"  # transfers, transactions, batches, post / void / reverse
DEPOSITS = "deposits"  # mints money
PAYOUTS = "payouts"
METRICS = "metrics"  # GET /metrics of every service, and nothing else: a scraper's key
ADMIN = "admin"  # everything: fee rules, policy, freeze / unfreeze / close, keys
SCOPES = (READ, ACCOUNTS, TRANSFERS, DEPOSITS, PAYOUTS, METRICS, ADMIN)

KEY_ID = re.compile(r"^lk_[0-9a-f]{20}$")
PATTERN = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9._:*-]{0,127}$")
NAME_MAX = 100
SECRET_BYTES = 64  # 86 url-safe characters: longer than SHA-256's block (see secret_hash)

# The key a request was authenticated with, for the events its command writes.
acting_key: ContextVar[str | None] = ContextVar("acting_key", default=None)


class KeyDefinitionError(ValueError):
    """A key definition that cannot be accepted (bad scope, pattern or name)."""


def secret_hash(secret: str) -> bytes:
    """What is stored of a secret. The secret is random, so a plain SHA-256 is as strong as
    any password hash here, and costs microseconds per request instead of milliseconds.

    Secrets are longer than SHA-256's 64-byte block, so HMAC first replaces them by their
    SHA-256: the stored hash is the HMAC key of every signature made with the secret."""
    return hashlib.sha256(secret.encode()).digest()


def new_key_id() -> str:
    return "lk_" + secrets.token_hex(10)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    secret_sha256: bytes = field(repr=False)
    scopes: frozenset[str]
    accounts: tuple[str, ...] = ()
    credits_within_accounts: bool = False
    signed_only: bool = False
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    _regexes: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regexes", tuple(pattern_regex(p) for p in self.accounts))

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def limited(self) -> bool:
        """A tenant's key: limited to the accounts its patterns cover."""
        return bool(self.accounts)

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    def covers(self, account_id: str) -> bool:
        """Whether the key may debit (at once or pending), pay out from or read this account."""
        return not self._regexes or any(r.match(account_id) for r in self._regexes)

    def may_credit(self, account_id: str) -> bool:
        return not self.credits_within_accounts or self.covers(account_id)

    def secret_matches(self, secret: str) -> bool:
        return hmac.compare_digest(secret_hash(secret), self.secret_sha256)

    def describe(self) -> dict[str, object]:
        """The key as shown to an operator: never its secret nor the secret's hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "accounts": list(self.accounts),
            "credits_within_accounts": self.credits_within_accounts,
            "signed_only": self.signed_only,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def check_definition(
    name: str, scopes: Iterable[str], accounts: Iterable[str]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """A new key's name, scopes and patterns, checked; raises KeyDefinitionError with the reason."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or not name.isprintable():
        raise KeyDefinitionError(f"name must be 1-{NAME_MAX} printable characters")
    scope_set = frozenset(scopes)
    if not scope_set:
        raise KeyDefinitionError(f"give at least one scope: {', '.join(SCOPES)}")
    unknown = sorted(s for s in scope_set if s not in SCOPES)
    if unknown:
        raise KeyDefinitionError(f"unknown scope(s): {', '.join(map(str, unknown))}; scopes are {', '.join(SCOPES)}")
    patterns = tuple(dict.fromkeys(accounts))
    for pattern in patterns:
        if not isinstance(pattern, str) or not PATTERN.fullmatch(pattern):
            raise KeyDefinitionError(
                f"account pattern {pattern!r} must be 1-128 characters from [A-Za-z0-9._:-] and '*' "
                "(any run of characters), starting with a letter, digit or '*'"
            )
    if patterns and ADMIN in scope_set:
        raise KeyDefinitionError("an admin key acts on everything; it cannot be limited to accounts")
    return scope_set, patterns
