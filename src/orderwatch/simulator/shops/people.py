"""Made-up customers (names, e-mail, address) drawn from a seeded generator."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

_FIRST: Final = ("Ada", "Bruno", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "José", "Kemal", "Lena")
_LAST: Final = ("Lovelace", "Rossi", "Martin", "Ivanov", "Schmidt", "Haddad", "Hopper", "Tanaka", "García", "Yılmaz")
_PLACES: Final = (
    ("Berlin", "BE", "10115", "DE", "Invalidenstraße 12"),
    ("Lyon", "", "69002", "FR", "12 Rue de la République"),
    ("Austin", "TX", "78701", "US", "500 Congress Ave"),
    ("Toronto", "ON", "M5V 2T6", "CA", "220 King St W"),
    ("Osaka", "27", "530-0001", "JP", "1-1 Umeda"),
    ("Madrid", "M", "28013", "ES", "Calle Mayor 5"),
)


@dataclass(frozen=True, slots=True)
class Person:
    """A customer: name, e-mail, phone and one postal address."""

    first: str
    last: str
    email: str
    phone: str
    street: str
    city: str
    state: str
    postcode: str
    country: str


def person(rng: random.Random) -> Person:
    """A random customer; e-mail addresses use the reserved ``example.com`` domain."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, state, postcode, country, street = rng.choice(_PLACES)
    local = f"{first}.{last}".lower().encode("ascii", "ignore").decode() or "customer"
    email = f"{local}{rng.randrange(100)}@example.com"
    phone = f"+1555{rng.randrange(10**7):07d}"
    return Person(first, last, email, phone, street, city, state, postcode, country)
