"""The command API's request bodies, described once as msgspec structs: ``requests``
checks each body against its struct and the OpenAPI document publishes the same
structs as its request schemas. Unknown fields are refused (``forbid_unknown_fields``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ledger.fees import MAX_BASIS_POINTS, OPERATIONS, PAYERS
from ledger.ids import CHAIN_DEPOSIT_ID, CLIENT_ID
from ledger.money import AMOUNT_PATTERN, ASSET_PATTERN
from ledger.monitors import AVAILABLE, BALANCES, WHENS
from ledger.payout_runs import MAX_ROWS
from ledger.transactions import MAX_LEGS

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4 * 1024
MAX_METADATA_DEPTH = 8
MAX_MEMO_BYTES = 28  # a Stellar text memo
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
MAX_BATCH = 100

ClientId = Annotated[
    str,
    msgspec.Meta(
        pattern=CLIENT_ID.pattern,
        description="1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit; chosen by the client",
        examples=["acct-alice"],
    ),
]
AmountText = Annotated[
    str,
    msgspec.Meta(
        pattern=AMOUNT_PATTERN,
        description="A decimal string in major units, at most the asset's scale of fractional digits",
        examples=["12.34"],
    ),
]
AssetText = Annotated[
    str, msgspec.Meta(pattern=ASSET_PATTERN, description="CODE/SCALE, SCALE 0..18", examples=["USD/2"])
]
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"Any JSON object, at most {MAX_METADATA_BYTES} bytes and {MAX_METADATA_DEPTH} levels deep",
        examples=[{"order": "o-17"}],
    ),
]
StellarAccount = Annotated[
    str,
    msgspec.Meta(pattern="^G[A-Z2-7]{55}$", description="A Stellar account id (G..., 56 characters, valid checksum)"),
]


class Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request body: a JSON object with exactly the fields its struct names."""


class OpenAccountBody(Body):
    id: ClientId
    asset: AssetText
    overdraft_limit: AmountText | None = None
    metadata: Metadata | None = None


class DepositBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText


class PayoutBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText
    destination: StellarAccount
    memo: Annotated[str, msgspec.Meta(max_length=MAX_MEMO_BYTES, description="A Stellar text memo")] | None = None


class TransferBody(Body):
    id: ClientId
    debit_account: ClientId
    credit_account: ClientId
    amount: AmountText
    metadata: Metadata | None = None
    pending: Annotated[bool, msgspec.Meta(description="Hold the amount until posted or voided")] = False
    timeout_seconds: (
        Annotated[
            int,
            msgspec.Meta(ge=1, le=MAX_TIMEOUT_SECONDS, description="A pending transfer's time to live, in seconds"),
        ]
        | None
    ) = None


class PostBody(Body):
    amount: (
        Annotated[AmountText, msgspec.Meta(description="Post less than was held; leave out to post it all")] | None
    ) = None


class CancelPayoutBody(Body):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Why, for the audit trail")] = (
        "cancelled by an operator"
    )


class ReassignBody(Body):
    deposit: Annotated[
        str,
        msgspec.Meta(
            pattern=CHAIN_DEPOSIT_ID.pattern,
            description="The chain deposit's transfer id ($stellar.<Stellar payment id>), credited to suspense",
            examples=["$stellar.4294971393"],
        ),
    ]
    account: ClientId


class SweepBody(Body):
    id: ClientId
    asset: AssetText
    account: ClientId
    amount: Annotated[AmountText, msgspec.Meta(description="Omitted: all the fee account has available")] | None = None


class PayoutRunRowBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText
    destination: StellarAccount
    memo: Annotated[str, msgspec.Meta(max_length=MAX_MEMO_BYTES)] | None = None


class PayoutRunBody(Body):
    """The JSON form of a run's file (``commands.run_files`` checks it row by row)."""

    id: Annotated[str, msgspec.Meta(pattern=CLIENT_ID.pattern, max_length=64)]
    rows: Annotated[list[PayoutRunRowBody], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]


class EmptyBody(Body):
    """Void, freeze, unfreeze and close take no fields (and may have no body at all)."""


class PolicyBody(Body):
    """At least one field; null removes a daily or monthly limit."""

    overdraft_limit: AmountText | msgspec.UnsetType = msgspec.UNSET
    daily_limit: AmountText | None | msgspec.UnsetType = msgspec.UNSET
    monthly_limit: AmountText | None | msgspec.UnsetType = msgspec.UNSET


class MonitorBody(Body):
    id: Annotated[ClientId, msgspec.Meta(description="The monitor's id, one per account: set again to change it")]
    account: ClientId
    when: Literal[WHENS]  # type: ignore[valid-type]
    amount: Annotated[AmountText, msgspec.Meta(description="The threshold: strictly below or above it is past it")]
    balance: Literal[BALANCES] = AVAILABLE  # type: ignore[valid-type]


class RemoveMonitorBody(Body):
    account: ClientId


class TransactionBody(Body):
    id: ClientId
    transfers: Annotated[list[TransferBody], msgspec.Meta(min_length=1, max_length=MAX_LEGS)]


class TransferBatchBody(Body):
    transfers: Annotated[list[TransferBody], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ReverseBody(Body):
    id: ClientId
    amount: AmountText | None = None


class FeeRuleBody(Body):
    asset: AssetText
    operation: Literal[OPERATIONS]  # type: ignore[valid-type]
    payer: Literal[PAYERS]  # type: ignore[valid-type]
    basis_points: Annotated[int, msgspec.Meta(ge=0, le=MAX_BASIS_POINTS)] = 0
    fixed: AmountText = "0"
    min: AmountText = "0"
    max: AmountText | None = None
    active: bool = True
