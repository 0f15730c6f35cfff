"""Exact money: assets written ``CODE/SCALE`` and amounts held as integer minor units.

API amounts are decimal strings in major units. Parsing is strict on purpose: a
client that sends ``"1e3"`` or ``12.5`` has a bug we should surface, not guess around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.errors import InvalidAmount, InvalidAsset

MAX_AMOUNT = 2**127 - 1
MAX_SCALE = 18

# The patterns are also the API's published schema (JSON Schema, so ECMA-262 compatible).
ASSET_PATTERN = r"^([A-Z][A-Z0-9]{0,11})/(0|[1-9][0-9]?)$"
# 39 whole digits hold 2^127-1; longer input is refused before any int() conversion.
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,38})(?:\.([0-9]{1,18}))?$"
_ASSET = re.compile(ASSET_PATTERN)
_AMOUNT = re.compile(AMOUNT_PATTERN)


@dataclass(frozen=True)
class Asset:
    code: str
    scale: int

    @classmethod
    def parse(cls, text: object) -> Asset:
        if not isinstance(text, str):
            raise InvalidAsset("asset must be a string like 'USD/2'")
        match = _ASSET.fullmatch(text)
        if match is None or int(match.group(2)) > MAX_SCALE:
            raise InvalidAsset(
                f"asset {text!r} is not CODE/SCALE: CODE is 1-12 upper-case letters or "
                f"digits starting with a letter, SCALE is 0..{MAX_SCALE} (e.g. 'USD/2')"
            )
        return cls(match.group(1), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.code}/{self.scale}"

    def parse_amount(self, text: object, *, allow_zero: bool = False) -> int:
        """Parse a positive major-unit decimal string into minor units."""
        whole, fraction = split_amount(text)
        if len(fraction) > self.scale:
            raise InvalidAmount(
                f"amount {text!r} has {len(fraction)} fractional digits; {self} allows at most {self.scale}"
            )
        minor = int(whole) * 10**self.scale + int(fraction.ljust(self.scale, "0") or "0")
        if minor == 0 and not allow_zero:
            raise InvalidAmount("amount must be greater than zero")
        if minor > MAX_AMOUNT:
            raise InvalidAmount(f"amount {text!r} exceeds the maximum of 2^127-1 minor units")
        return minor

    def format(self, minor: int) -> str:
        """Format minor units (possibly negative) as a major-unit decimal string."""
        sign = "-" if minor < 0 else ""
        digits = str(abs(minor))
        if self.scale == 0:
            return sign + digits
        digits = digits.rjust(self.scale + 1, "0")
        return f"{sign}{digits[: -self.scale]}.{digits[-self.scale :]}"


def split_amount(text: object) -> tuple[str, str]:
    """Check an amount's shape (a plain decimal string) and split it at the point."""
    if not isinstance(text, str):
        raise InvalidAmount(f'amount must be a decimal string like "12.34", not a JSON {_json_kind(text)}')
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidAmount(
            f"amount {_clip(text)!r} is not a plain decimal string (at most 39 digits, an optional "
            "fraction of at most 18; no sign, exponent, spaces or leading zeros)"
        )
    return match.group(1), match.group(2) or ""


def _clip(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else type(value).__name__
