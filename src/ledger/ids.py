"""Client-chosen identifiers and the deterministic aggregate ids derived from them.

Deriving aggregate ids with ``uuid5`` makes "create" idempotent by construction: a
second create of the same id collides on the event store's primary key.
"""

from __future__ import annotations

import re
from functools import lru_cache
from uuid import UUID, uuid5

from ledger.errors import InvalidRequest

NAMESPACE = UUID("6f1a3c1e-2f4b-5d7e-9a0b-1c2d3e4f5a6b")

# Client ids start with a letter or digit; ids starting with "$" are reserved for
# system accounts, so a client can never address (and mint from) them.
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_client_id(field: str, value: object) -> str:
    if not isinstance(value, str) or CLIENT_ID.fullmatch(value) is None:
        raise InvalidRequest(
            f"{field} must be a string of 1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit"
        )
    return value


@lru_cache(maxsize=65536)
def account_uuid(account_id: str) -> UUID:
    """Remembered: a command names its accounts several times (hints, reads, events),
    and a SHA-1 each time is a measurable part of a transfer's cost."""
    return uuid5(NAMESPACE, f"account:{account_id}")


@lru_cache(maxsize=65536)
def transfer_uuid(transfer_id: str) -> UUID:
    return uuid5(NAMESPACE, f"transfer:{transfer_id}")


def transaction_uuid(transaction_id: str) -> UUID:
    return uuid5(NAMESPACE, f"transaction:{transaction_id}")


def fee_rule_uuid(asset: str, operation: str) -> UUID:
    return uuid5(NAMESPACE, f"fee-rule:{asset}:{operation}")


def _system_account_id(kind: str, asset: str) -> str:
    """``$kind.CODE.SCALE``: "$" keeps system accounts out of every client's id space."""
    code, scale = asset.split("/")
    return f"${kind}.{code}.{scale}"


def issuance_account_id(asset: str) -> str:
    """The per-asset system account that funds deposits; it may go negative."""
    return _system_account_id("issuance", asset)


def fee_account_id(asset: str) -> str:
    """The per-asset system account that fees are credited to."""
    return _system_account_id("fees", asset)


def fee_transfer_id(transfer_id: str) -> str:
    """The id of a transfer's fee leg; "$" keeps it out of every client's id space."""
    return f"{transfer_id}$fee"


def payout_uuid(payout_id: str) -> UUID:
    return uuid5(NAMESPACE, f"payout:{payout_id}")


def clearing_account_id(asset: str) -> str:
    """The per-asset system account that holds money on its way out to the chain."""
    return _system_account_id("chain", asset)


def payout_transfer_id(payout_id: str) -> str:
    """The id of the pending transfer a payout places (its ``hold_id``); "$" keeps it out
    of every client's id space."""
    return f"{payout_id}$payout"


def reassignment_id(deposit_id: str) -> str:
    """The transfer moving a chain deposit out of suspense: one per deposit, ever."""
    return f"{deposit_id}$reassigned"


def suspense_account_id(asset: str) -> str:
    """The per-asset system account for money from the chain that names no account of ours."""
    return _system_account_id("suspense", asset)


CHAIN_DEPOSIT_ID = re.compile(r"\$stellar\.[0-9]{1,30}")  # Horizon's operation ids are numbers


def chain_deposit_id(payment_id: str) -> str:
    """The transfer crediting one Stellar payment; "$" keeps it out of every client's id space."""
    return f"$stellar.{payment_id}"
