"""Exact money: every amount is an ``int`` of pico-dollars (1e-12 USD).

Why integers: summing one cost a million times must give exactly a million times
that cost, and the smallest list price (fractions of a cent per million tokens)
is still a whole number of pico-dollars per token. ``Decimal`` appears only at
the edges: the public API, the wire, and the terminal.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

PICO_PER_USD = 10**12
_PICO = Decimal(1).scaleb(-12)


def to_decimal(pico: int) -> Decimal:
    """Pico-dollars to a ``Decimal`` number of dollars, without trailing zeros."""
    if pico == 0:
        return Decimal(0)
    return (Decimal(pico).scaleb(-12)).normalize()


def from_usd(value: object, *, field: str = "cost_usd") -> int:
    """Parse dollars given as a ``Decimal``, ``str``, ``int`` or ``float`` into pico-dollars.

    Floats go through ``str()`` first so that ``0.1`` means ten cents, not its binary
    neighbour. Amounts finer than a pico-dollar are rounded half-even.
    Raises ``ValueError`` naming ``field`` for anything that is not a finite number.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number or a decimal string, got a boolean")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (int, str)):
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValueError(f"{field} must be a decimal number such as \"0.03\", got {value!r}") from None
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    else:
        raise ValueError(f"{field} must be a number or a decimal string, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{field} must be finite, got {value!r}")
    return int((amount * PICO_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def format_usd(pico: int, *, places: int = 2) -> str:
    """Human display: ``$12.47``. Amounts under a cent keep enough places to be non-zero."""
    amount = to_decimal(pico)
    if 0 < abs(amount) < Decimal("0.01") and places == 2:
        return f"${amount:f}"
    return f"${amount.quantize(Decimal(1).scaleb(-places)):,}"


def display_usd(amount: Decimal, *, significant: int = 3) -> str:
    """For people (dashboard, reports): cents from $1 up (``$1,234.57``); below $1, ``significant`` digits
    (``$0.0046``, ``$0.433``, never fewer than two places), so a cheap model's spend never reads ``$0.00``."""
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if 0 < amount < 1:
        places = max(2, significant - 1 - amount.adjusted())
        rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if rounded < 1:
            whole, _, fraction = format(rounded, "f").partition(".")
            return f"{sign}${whole}.{fraction.rstrip('0').ljust(2, '0')}"
    return f"{sign}$" + format(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), ",f")
