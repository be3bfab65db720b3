"""Money is integer minor units plus an ISO 4217 code; never floats."""

from __future__ import annotations

# ISO 4217 codes accepted here, with their minor-unit exponent. A closed list on
# purpose: an unknown code is a client bug, not something to pass through.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2,
    "AUD": 2,
    "BGN": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "ISK": 0,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "PHP": 2,
    "PLN": 2,
    "RON": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TRY": 2,
    "TWD": 2,
    "UAH": 2,
    "USD": 2,
    "ZAR": 2,
}

# No single order or payment may exceed this many minor units (10^12, i.e. ten
# billion EUR): anything larger is a unit mistake, and it keeps sums far from int64.
MAX_AMOUNT_MINOR = 10**12


def is_known_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


def major_to_minor(major: int, currency: str) -> int:
    """Whole units of ``currency`` in its minor units (100 EUR -> 10000)."""
    return major * 10 ** CURRENCY_EXPONENTS[currency]


def format_money(amount_minor: int, currency: str) -> str:
    """``12345, "EUR"`` -> ``"123.45 EUR"``; exact, no float rounding."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    if exponent == 0:
        return f"{amount_minor} {currency}"
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d} {currency}"
