"""A labelled set for suggested matches: customers keyed by email in a CRM and in billing,
where some CRM emails changed (so the key no longer pairs them), with typos, swapped
first/last names and missing phones on top, plus customers that truly exist on one side only.

``truth`` is the set of (crm_email, billing_email) pairs a person would match: the labels
precision and recall are measured against (benchmarks/suggestions.py, test_suggestions.py).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

FIRST = ["Ana", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Marta", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Ximena",
         "Yusuf", "Zoe", "Arjun", "Bianca", "Chen", "Dmitri", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Jana"]
LAST = ["Silva", "Smith", "Müller", "Rossi", "Kowalski", "Nguyen", "Okafor", "Garcia", "Johansson", "Yilmaz",
        "Dubois", "Novak", "Tanaka", "Haddad", "Fischer", "Moreau", "Ivanova", "Costa", "Larsen", "Petrov",
        "Schmidt", "Kim", "Ali", "Jensen", "Horvat", "Lopez", "Weber", "Sato", "Brown", "Papadopoulos"]
CITIES = ["Lisbon", "Leeds", "Berlin", "Milan", "Krakow", "Hanoi", "Lagos", "Madrid", "Malmo", "Izmir", "Lyon",
          "Brno", "Osaka", "Beirut", "Graz", "Nantes", "Kazan", "Porto", "Aarhus", "Sofia"]
DOMAINS = ["example.com", "mail.test", "post.test", "inbox.test"]


@dataclass
class LabelledSet:
    crm: list[dict]
    billing: list[dict]
    truth: set[tuple[str, str]]  # (crm email, billing email) of the same customer, keys differing


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text))
    op = rng.choice("swap drop sub".split())
    if op == "swap" and i < len(text) - 1:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if op == "drop" and len(text) > 3:
        return text[:i] + text[i + 1:]
    return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1:]


def labelled_set(customers: int = 2000, changed: float = 0.05, only_crm: float = 0.02, only_billing: float = 0.02,
                 seed: int = 7) -> LabelledSet:
    rng = random.Random(seed)
    crm, billing, truth = [], [], set()
    used: set[str] = set()

    def email(first: str, last: str) -> str:
        while True:
            local = f"{first}.{last}{rng.randrange(100) if rng.random() < 0.5 else ''}".lower()
            address = f"{local}@{rng.choice(DOMAINS)}"
            if address not in used:
                used.add(address)
                return address

    def person() -> dict:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        return {"email": email(first, last), "first_name": first, "last_name": last,
                "birth_date": f"{rng.randrange(1950, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                "phone": f"+44 7{rng.randrange(10**8, 10**9)}", "city": rng.choice(CITIES)}

    changed_people: list[dict] = []
    one_sided = int(customers * (only_crm + only_billing))
    for _ in range(customers - one_sided):
        p = person()
        b = dict(p)
        if rng.random() < changed / (1 - only_crm - only_billing):
            c = dict(p, email=email(p["first_name"], p["last_name"] + rng.choice(["", "x", "2"])))
            noise = rng.random()  # the ways a person's other attributes drift between two systems
            if noise < 0.25:
                c["last_name"] = _typo(rng, c["last_name"])
            elif noise < 0.4:
                c["first_name"], c["last_name"] = c["last_name"], c["first_name"]
            elif noise < 0.55:
                c["phone"] = None
            elif noise < 0.65:
                c["city"] = rng.choice(CITIES)
            crm.append(c)
            billing.append(b)
            truth.add((c["email"], b["email"]))
            changed_people.append(p)
        else:
            if rng.random() < 0.03:  # ordinary field drift on matched customers
                b["city"] = rng.choice(CITIES)
            crm.append(p)
            billing.append(b)
    # Customers on one side only; half are relatives of a changed customer (same surname, home
    # phone and city): the distractors a suggestion must not confuse with the real counterpart.
    for i in range(one_sided):
        p = person()
        if changed_people and rng.random() < 0.5:
            relative = rng.choice(changed_people)
            p.update(last_name=relative["last_name"], phone=relative["phone"], city=relative["city"])
        (crm if i < customers * only_crm else billing).append(p)
    rng.shuffle(crm)
    rng.shuffle(billing)
    return LabelledSet(crm, billing, truth)
