"""Money is integer fen (分) in storage and Decimal yuan (元) for people; never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from hkops.errors import InvalidValue

FEN_PER_YUAN = 100


def yuan_to_fen(value: str | int | Decimal, field: str = "price") -> int:
    """Parse an amount in yuan (``"188"``, ``"12.50"``) into integer fen."""
    if isinstance(value, float):
        raise InvalidValue(field, value, "money must be given as text or Decimal, not float")
    try:
        amount = Decimal(str(value).strip().replace(",", "").lstrip("¥"))
    except InvalidOperation:
        raise InvalidValue(field, value, "must be an amount in yuan such as 188 or 12.50") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidValue(field, value, "must be a non-negative amount in yuan")
    fen = amount * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise InvalidValue(field, value, "has more than two decimal places")
    return int(fen)


def fen_to_yuan(fen: int) -> Decimal:
    """Integer fen as Decimal yuan with two places."""
    return (Decimal(int(fen)) / FEN_PER_YUAN).quantize(Decimal("0.01"))


def format_yuan(fen: int) -> str:
    """``¥1,888.00`` for people."""
    return f"¥{fen_to_yuan(fen):,}"
