"""The checksums of the European identifiers the PII screen and the edge recognise.

Plain functions with no Presidio import, so the edge's check of short kept values (a model
name, an id: gateway/validation.py) costs no NLP import on a first request, while the
Presidio recognizers (gateway/pii/recognizers.py) wrap the same functions.
"""

from __future__ import annotations

import re
from datetime import date

# --------------------------------------------------------------------------- checksums


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


SE_PERSONNUMMER = "personnummer"
SE_SAMORDNINGSNUMMER = "samordningsnummer"


def swedish_id_kind(text: str) -> str | None:
    """'personnummer', 'samordningsnummer' or None for YYMMDD-XXXX, YYMMDD+XXXX
    (the '+' marks someone 100 or older), YYYYMMDDXXXX and YYYYMMDD-XXXX.

    Valid means: a real calendar date (day + 60 for a samordningsnummer) and a Luhn check
    digit over the last ten digits."""
    compact = text.strip()
    separator = ""
    if len(compact) in (11, 13) and compact[-5] in "-+":
        separator = compact[-5]
        compact = compact[:-5] + compact[-4:]
    if not compact.isdigit() or len(compact) not in (10, 12):
        return None
    if len(compact) == 12 and separator == "+":
        return None  # the '+' only makes sense when the century is not written
    ten = compact[-10:]
    if not luhn_valid(ten):
        return None
    month, day = int(ten[2:4]), int(ten[4:6])
    kind = SE_PERSONNUMMER
    if day > 60:
        kind, day = SE_SAMORDNINGSNUMMER, day - 60
    if len(compact) == 12:
        years: tuple[int, ...] = (int(compact[:4]),)
    else:
        # The century is implicit: a date that exists in either century counts (29 February).
        years = (1900 + int(ten[:2]), 2000 + int(ten[:2]))
    if not any(_real_date(year, month, day) for year in years):
        return None
    return kind


_IBAN_LENGTH_BY_COUNTRY: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(text: str) -> bool:
    """Country length and ISO 13616 mod-97 over the compact, upper-cased value."""
    compact = re.sub(r"[\s\-]", "", text).upper()
    if len(compact) < 15 or not compact.isalnum():
        return False
    if _IBAN_LENGTH_BY_COUNTRY.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return int(numeric) % 97 == 1


def de_tax_id_valid(text: str) -> bool:
    """German Steuerliche Identifikationsnummer: 11 digits, no leading zero, in the first ten
    exactly one digit occurs two or three times (never three in a row), ISO 7064 MOD 11,10."""
    digits = re.sub(r"[\s/]", "", text)
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    first_ten = digits[:10]
    counts = [first_ten.count(d) for d in set(first_ten)]
    repeated = [c for c in counts if c > 1]
    if len(repeated) != 1 or repeated[0] > 3:
        return False
    if repeated[0] == 3 and re.search(r"(\d)\1\1", first_ten):
        return False
    product = 10
    for char in first_ten:
        total = (int(char) + product) % 10
        if total == 0:
            total = 10
        product = (total * 2) % 11
    check = 11 - product
    if check == 10:
        check = 0
    return check == int(digits[10])


_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20,
         11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23],
        strict=True,
    )
)  # fmt: skip
_CF_MONTHS = "ABCDEHLMPRST"
_CF_OMOCODIA = "LMNPQRSTUV"  # letters that replace digits 0-9 when two people collide


def it_fiscal_code_valid(text: str) -> bool:
    """Italian codice fiscale: 16 characters, month letter, day 1-31 (+40 for women),
    omocodia substitutions allowed, and the control letter."""
    code = text.strip().upper()
    if not re.fullmatch(
        r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]", code
    ):
        return False

    def numeric(part: str) -> int:
        return int("".join(str(_CF_OMOCODIA.index(c)) if c.isalpha() else c for c in part))

    if code[8] not in _CF_MONTHS:
        return False
    day = numeric(code[9:11])
    if day > 40:
        day -= 40
    if not 1 <= day <= 31:
        return False
    total = 0
    for index, char in enumerate(code[:15]):
        if index % 2 == 0:  # 1-based odd positions
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - ord("A")
    return chr(ord("A") + total % 26) == code[15]


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_valid(text: str) -> bool:
    value = re.sub(r"[\s\-]", "", text).upper()
    if not re.fullmatch(r"\d{8}[A-Z]", value):
        return False
    return _DNI_LETTERS[int(value[:8]) % 23] == value[8]


def es_nie_valid(text: str) -> bool:
    value = re.sub(r"[\s\-]", "", text).upper()
    if not re.fullmatch(r"[XYZ]\d{7}[A-Z]", value):
        return False
    number = int(str("XYZ".index(value[0])) + value[1:8])
    return _DNI_LETTERS[number % 23] == value[8]


def fr_nir_valid(text: str) -> bool:
    """French NIR (numéro de sécurité sociale): 13 characters + a 2-digit key,
    key = 97 - (number mod 97); Corsica's 2A/2B departments count as 19/18."""
    value = re.sub(r"[\s\.]", "", text).upper()
    if not re.fullmatch(r"[1-478]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}", value):
        return False
    month = int(value[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        return False
    body, key = value[:13], int(value[13:])
    if "A" in body:
        number = int(body.replace("A", "0")) - 1_000_000
    elif "B" in body:
        number = int(body.replace("B", "0")) - 2_000_000
    else:
        number = int(body)
    return 97 - number % 97 == key
