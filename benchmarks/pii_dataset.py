"""Writes tests/data/pii_labelled_large.json: a labelled set of sentences of the kind agents send.

Templates filled with Faker data in several locales (names, street addresses, multi-line addresses,
cities, organisations, local phone formats, cards, IBANs, emails, IPs, dates of birth, ages,
postcodes), hand-written hard cases, and PII-free texts full of product and tool names, code and
JSON. Each case: {"text", "entities": [[label, value], ...], "locale"}; values occur verbatim in
the text. Seeded: the same file every run. ``.venv/bin/python benchmarks/pii_dataset.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from faker import Faker

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "pii_labelled_large.json"
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]
PER_LOCALE = 40
DATE_FORMATS = ["%d %B %Y", "%Y-%m-%d", "%d/%m/%Y", "%B %d, %Y"]
CARDS = ["visa16", "visa19", "mastercard", "amex", "discover", "jcb16", "maestro"]

# {slot} -> label; slots: name, first, street, city, postcode, phone, card, iban, email, ip, dob, age, company
TEMPLATES = [
    "Please update the CRM record for {name}: new mobile {phone}.",
    "Ship the replacement to {name}, {street}, {postcode} {city}.",
    "Customer {name} ({email}) says the card {card} was charged twice.",
    "Wire the refund to IBAN {iban}, account holder {name}.",
    "Our login alerts show {ip} trying to sign in as {email}.",
    "{name} was born on {dob} and is {age} years old.",
    "Draft a letter to {name} at {company}, {street}, {postcode} {city}.",
    "Address:\n{name}\n{street}\n{postcode} {city}",
    "Call {first} back on {phone}; her date of birth is {dob}.",
    "Summarise this ticket: '{name} cannot log in, phone {phone}, email {email}.'",
    "The applicant, {name}, aged {age}, lives in {city}.",
    "Book a taxi for {name} from {street}, {city} to the airport; driver can call {phone}.",
    "Refund {name} on card {card}; she is {age} years old and lives at {street}.",
    "Translate for our client {name} ({company}): the contract starts next month.",
    "Check whether {email} and {phone} belong to the same customer, {name}.",
]
# label of each slot
LABELS = {
    "name": "PERSON", "first": "PERSON", "street": "STREET_ADDRESS", "city": "CITY", "postcode": "POSTCODE",
    "phone": "PHONE_NUMBER", "card": "CREDIT_CARD", "iban": "IBAN_CODE", "email": "EMAIL_ADDRESS",
    "ip": "IP_ADDRESS", "dob": "DATE_OF_BIRTH", "age": "AGE", "company": "ORGANIZATION",
}  # fmt: skip

HARD = [
    ("My name is Christiane de Vaan but everyone calls me Christiane.", [("PERSON", "Christiane de Vaan")]),
    ("Bel me op 06-82237745 na vijven.", [("PHONE_NUMBER", "06-82237745")]),
    (
        "My mobile is 07700 900123, the office 020 7946 0958.",
        [("PHONE_NUMBER", "07700 900123"), ("PHONE_NUMBER", "020 7946 0958")],
    ),
    ("Ruf mich unter 030 12345678 an.", [("PHONE_NUMBER", "030 12345678")]),
    ("Desk phone 415-555-0134x12, ask for Sam Ortiz.", [("PHONE_NUMBER", "415-555-0134x12"), ("PERSON", "Sam Ortiz")]),
    ("The 2-series Mastercard 2223 0031 2200 3222 was declined.", [("CREDIT_CARD", "2223 0031 2200 3222")]),
    ("Her 19-digit Visa 4000000000000000006 works.", [("CREDIT_CARD", "4000000000000000006")]),
    ("He is 67 years old and was born on 3 May 1959.", [("AGE", "67 years old"), ("DATE_OF_BIRTH", "3 May 1959")]),
    ("DOB: 1990-11-23; postcode SW1A 2AA.", [("DATE_OF_BIRTH", "1990-11-23"), ("POSTCODE", "SW1A 2AA")]),
    (
        "Send it to 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
        [("STREET_ADDRESS", "1600 Amphitheatre Parkway"), ("CITY", "Mountain View"), ("POSTCODE", "94043")],
    ),
    ("jan.de.vries@example.nl asked about order 58213.", [("EMAIL_ADDRESS", "jan.de.vries@example.nl")]),
    ("Patient Ana María López Sánchez, 34, was admitted.", [("PERSON", "Ana María López Sánchez")]),
    ("Contact: Dr. Wei Zhang, +86 10 6552 9988.", [("PERSON", "Wei Zhang"), ("PHONE_NUMBER", "+86 10 6552 9988")]),
    (
        "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX, holder Lena Fischer.",
        [("IBAN_CODE", "DE89 3704 0044 0532 0130 00"), ("PERSON", "Lena Fischer")],
    ),
    (
        "The server at 10.20.30.40 logged bob.smith@example.com.",
        [("IP_ADDRESS", "10.20.30.40"), ("EMAIL_ADDRESS", "bob.smith@example.com")],
    ),
]

TOOLS = [
    "Grafana",
    "Jenkins",
    "Kubernetes",
    "Terraform",
    "Prometheus",
    "Postgres",
    "Redis",
    "Kafka",
    "Airflow",
    "Django",
    "FastAPI",
    "React",
    "Docker",
    "Helm",
    "Sentry",
    "Datadog",
    "Jira",
    "Confluence",
    "Slack",
    "GitHub Actions",
    "Elasticsearch",
    "Kibana",
    "Ansible",
    "Vault",
    "Nginx",
    "ClickHouse",
    "Snowflake",
]
CLEAN_TEMPLATES = [
    "The {t} dashboard shows p99 latency at {n} ms since the {t2} upgrade.",
    "Please summarise why the {t} job failed on build {n} and suggest a fix.",
    "Migrate the {t} config to {t2}; keep the retention at {n} days.",
    "```python\ndef handler(event):\n    return {{'status': {n}, 'items': event.get('items', [])}}\n```",
    '{{"service": "{t}", "replicas": {d}, "port": {n}, "image": "registry/{t}:{d}.{d}.{d}"}}',
    "Run `kubectl rollout restart deploy/{t}` and check the {t2} alerts.",
    "Version {d}.{d}.{d} of {t} fixes the memory leak reported in issue #{n}.",
    "The quarterly report is due on Friday; revenue grew {d}% and churn fell to {d}.{d}%.",
    "Write a SQL query that counts orders per day from the {t} events table for the last {d} weeks.",
    "Compare {t} and {t2} for our use case: {n} requests per second, {d} regions.",
    "SELECT id, status FROM jobs WHERE retries > {d} AND queue = '{t}' LIMIT {n};",
    "The meeting moved to Thursday at {d} pm; bring the {t} capacity numbers.",
    "Error: connection to {t} timed out after {n} ms (attempt {d} of 5).",
    "Our {t} cluster has {d} nodes with {n} GB of memory each.",
]
CLEAN_FIXED = [
    "Could you rewrite this paragraph so that it sounds friendlier?",
    "List three ways to reduce cold-start time in a serverless function.",
    "What does HTTP status 429 mean and how should a client back off?",
    "Explain the difference between a mutex and a semaphore with a short example.",
    "The invoice total is 4,200 EUR, due on 2025-03-05.",
    "Set the password field to required in the signup form.",
    "Use the api_key parameter from the settings page.",
    "Build 20240305 passed; 1234 tests ran in 56.7 s.",
    "Apple and Amazon both reported results on Thursday.",
    "Paris is a common test fixture name in our geography module.",
]


def cases_for(locale: str, rng: random.Random) -> list[dict[str, Any]]:
    fake = Faker(locale)
    fake.seed_instance(rng.randrange(1 << 30))
    out = []
    for i in range(PER_LOCALE):
        template = TEMPLATES[i % len(TEMPLATES)]
        first, last = fake.first_name(), fake.last_name()
        dob = fake.date_of_birth(minimum_age=18, maximum_age=90)
        values = {
            "name": f"{first} {last}",
            "first": first,
            "street": fake.street_address().replace("\n", ", "),
            "city": fake.city(),
            "postcode": fake.postcode(),
            "phone": fake.phone_number(),
            "card": fake.credit_card_number(rng.choice(CARDS)),
            "iban": fake.iban(),
            "email": fake.email(),
            "ip": fake.ipv4_public(),
            "dob": dob.strftime(rng.choice(DATE_FORMATS)),
            "age": str(rng.randint(18, 90)),
            "company": fake.company(),
        }
        text = template.format(**values)
        slots = [s.split("}")[0] for s in template.split("{")[1:]]
        entities = []
        for slot in dict.fromkeys(slots):
            value = values[slot] + (" years old" if slot == "age" and "years old" in template else "")
            if slot == "first" and "name" in slots:
                continue
            entities.append([LABELS[slot], value])
        out.append({"text": text, "entities": entities, "locale": locale})
    return out


def clean_cases(rng: random.Random) -> list[dict[str, Any]]:
    out = [{"text": t, "entities": [], "locale": "en"} for t in CLEAN_FIXED]
    for i in range(140):
        template = CLEAN_TEMPLATES[i % len(CLEAN_TEMPLATES)]
        t, t2 = rng.sample(TOOLS, 2)
        text = template.format(t=t, t2=t2, n=rng.randint(10, 99999), d=rng.randint(1, 12))
        out.append({"text": text, "entities": [], "locale": "en"})
    return out


def main() -> None:
    rng = random.Random(16)
    cases = [c for locale in LOCALES for c in cases_for(locale, rng)]
    cases += [{"text": text, "entities": [list(e) for e in entities], "locale": "hard"} for text, entities in HARD]
    cases += clean_cases(rng)
    for case in cases:
        for _, value in case["entities"]:
            assert value in case["text"], (value, case["text"])
    OUT.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases ({sum(not c['entities'] for c in cases)} without personal data) -> {OUT}")


if __name__ == "__main__":
    main()
