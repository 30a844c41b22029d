"""Builds pii_labelled.jsonl: sentences with labelled PII spans, plus hard negatives.

Run once (`python tests/data/build_pii_set.py`); the JSONL is shipped and read by
test_pii.py and benchmarks/data_pii.py. Values are synthetic: valid-looking phone numbers
are drawn from libphonenumber's metadata and formatted by it (real numbers are valid by
construction), IBANs get correct check digits, card numbers pass Luhn.
"""
from __future__ import annotations

import json
import random
import string
from pathlib import Path

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn

R = random.Random(20240601)
OUT = Path(__file__).with_name("pii_labelled.jsonl")

FIRST = ["anna", "bob", "chen", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jamal", "kofi", "lena"]
LAST = ["smith", "mueller", "garcia", "nguyen", "okafor", "rossi", "tanaka", "dubois", "kowalski", "silva"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "uni-example.edu", "example.io",
           "post.example.de", "example-shop.fr", "x.example.museum"]


def email() -> str:
    f, l, d = R.choice(FIRST), R.choice(LAST), R.choice(DOMAINS)
    local = R.choice([f"{f}.{l}", f"{f}{R.randint(1, 99)}", f"{f[0]}{l}", f"{f}+{R.choice(['news', 'spam', 'x'])}",
                      f"{f}_{l}", f"{f.upper()}.{l.capitalize()}", f"{l}-{f}"])
    return f"{local}@{d}"


def phone() -> str:
    region = R.choice(["US", "US", "US", "GB", "DE", "FR", "IN", "AU", "JP", "BR"])
    while True:
        example = phonenumbers.example_number_for_type(region, R.choice(
            [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]))
        digits = list(str(example.national_number))
        for i in range(max(3, len(digits) - 5), len(digits)):
            digits[i] = R.choice(string.digits)
        num = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int("".join(digits)))
        if phonenumbers.is_valid_number(num):
            break
    # outside the US numbers are written with their +country code (national formats of other
    # regions are only recognised when that region is in pii.phone_regions)
    styles = ["intl", "intl", "e164"] + (["national", "us_dots", "us_dashes"] if region == "US" else [])
    style = R.choice(styles)
    if style == "intl":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style == "e164":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    n = str(num.national_number)
    if style == "national":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
    sep = "." if style == "us_dots" else "-"
    return f"{n[:3]}{sep}{n[3:6]}{sep}{n[6:]}"


def ip() -> str:
    kind = R.choice(["v4", "v4", "v4", "v6full", "v6short", "v6mapped"])
    if kind == "v4":
        return ".".join(str(R.randint(1, 254)) for _ in range(4))
    groups = [f"{R.randint(0, 0xffff):x}" for _ in range(8)]
    if kind == "v6full":
        return ":".join(groups)
    if kind == "v6short":
        return f"2001:db8::{groups[6]}:{groups[7]}" if R.random() < .5 else f"fe80::{groups[5]}:{groups[6]}:{groups[7]}"
    return f"::ffff:{R.randint(1, 223)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}"


def card() -> str:
    prefix, length, groups = R.choice([("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)),
                                       ("2221", 16, (4, 4, 4, 4)), ("34", 15, (4, 6, 5)), ("37", 15, (4, 6, 5)),
                                       ("6011", 16, (4, 4, 4, 4)), ("3530", 16, (4, 4, 4, 4)),
                                       ("36", 14, (4, 6, 4)), ("4", 13, (4, 4, 5))])
    body = prefix + "".join(R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn.calc_check_digit(body)
    sep = R.choice([" ", "-", ""])
    parts, i = [], 0
    for g in groups:
        parts.append(number[i:i + g])
        i += g
    return sep.join(parts)


IBAN_SHAPES = {"DE": "n18", "GB": "a4n14", "FR": "n23", "ES": "n20", "IT": "a1n22", "NL": "a4n10",
               "BE": "n12", "CH": "n17", "AT": "n16", "PL": "n24", "SE": "n20"}


def iban() -> str:
    while True:
        country = R.choice(list(IBAN_SHAPES))
        shape, bban = IBAN_SHAPES[country], ""
        if shape.startswith("a"):
            letters, digits = int(shape[1]), int(shape[3:])
            bban = "".join(R.choice(string.ascii_uppercase) for _ in range(letters))
        else:
            digits = int(shape[1:])
        bban += "".join(R.choice(string.digits) for _ in range(digits))
        number = country + std_iban.calc_check_digits(country + "00" + bban) + bban
        if std_iban.is_valid(number):
            break
    if R.random() < 0.6:
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return number


def _rand(chars: str, n: int) -> str:
    return "".join(R.choice(chars) for _ in range(n))


AN = string.ascii_letters + string.digits


def api_key() -> tuple[str, str]:
    """(text with the key in context, the key)."""
    kind = R.choice(["aws", "ghp", "ghpat", "slack", "stripe", "openai", "google", "hf", "jwt", "generic", "bearer",
                     "sendgrid"])
    key = {
        "aws": lambda: "AKIA" + _rand(string.ascii_uppercase + string.digits, 16),
        "ghp": lambda: "ghp_" + _rand(AN, 36),
        "ghpat": lambda: "github_pat_" + _rand(AN, 22) + "_" + _rand(AN, 59),
        "slack": lambda: f"xoxb-{_rand(string.digits, 12)}-{_rand(string.digits, 13)}-{_rand(AN, 24)}",
        "stripe": lambda: R.choice(["sk_live_", "pk_test_", "rk_live_"]) + _rand(AN, 24),
        "openai": lambda: "sk-proj-" + _rand(AN + "_-", 48),
        "google": lambda: "AIza" + _rand(AN + "_-", 35),
        "hf": lambda: "hf_" + _rand(string.ascii_letters, 34),
        "jwt": lambda: "eyJ" + _rand(AN, 30) + ".eyJ" + _rand(AN, 40) + "." + _rand(AN + "_-", 43),
        "generic": lambda: _rand(string.ascii_lowercase + string.digits, 32),
        "bearer": lambda: _rand(AN, 40),
        "sendgrid": lambda: "SG." + _rand(AN, 22) + "." + _rand(AN, 43),
    }[kind]()
    if kind == "generic":
        ctx = R.choice(["api_key = \"{k}\"", "export API_KEY={k}", "the secret_key: {k}", "'apiKey': '{k}',",
                        "set ACCESS_TOKEN={k} in the env"])
    elif kind == "bearer":
        ctx = R.choice(["Authorization: Bearer {k}", "curl -H 'Authorization: Bearer {k}' https://api.example.com"])
    else:
        ctx = R.choice(["my key is {k}", "KEY={k}", "token {k} leaked in the log", "use `{k}` for auth",
                        "found {k} in config.yaml"])
    return ctx.replace("{k}", key), key


CONTEXT = {
    "EMAIL": ["Contact me at {v} if you have questions.", "Send the invoice to <{v}>.", "mailto:{v}",
              "Her address ({v}) bounced twice.", "Reply-To: {v}", "You can reach {v}."],
    "PHONE": ["Call me on {v} after 5pm.", "Phone: {v}", "tel. {v} (office)", "Our hotline {v} is open 24/7.",
              "Text {v} to confirm.", "reach the front desk at {v}"],
    "IP_ADDRESS": ["The server at {v} stopped responding.", "ssh admin@{v}", "Blocked {v} after 50 failures.",
                   "GET /login from {v}", "client_ip={v}", "ping {v}"],
    "CREDIT_CARD": ["Card number: {v}", "charged to {v} yesterday", "my visa is {v} exp 04/27",
                    "Please use {v} for the deposit.", "PAN {v}"],
    "IBAN": ["Please transfer to IBAN {v}.", "Account: {v}", "Bank details {v} (BIC DEUTDEFF)",
             "IBAN: {v}", "wire the refund to {v} asap"],
}

NEGATIVES = [
    "The meeting moved to 2023-01-15 at 10:30:00.", "Released version 1.2.3 on 15/01/2023.",
    "Upgrade to v2.0.1.4 before Friday.", "Order #12345678 shipped.", "ISBN 978-3-16-148410-0 is on the shelf.",
    "Request id 123e4567-e89b-12d3-a456-426614174000 failed.", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "The total was $1,234.56 including tax.", "pi is roughly 3.14159265358979.", "Room 404, building 7.",
    "Tracking number 1Z999AA10123456784.", "The colour #ff00aa looks odd.", "Ask @alice on the forum.",
    "Save it as image_2023_final.png.", "Temperature rose from 12.5 to 18.75 degrees.",
    "Call function foo(1, 2, 3) twice.", "The ratio was 16:9 at 1920x1080.", "Population: 8,336,817 people.",
    "Invoice 2023-0042-17 is overdue.", "Flight LH 441 departs at 13:45.", "Zip code 94103, San Francisco.",
    "Serial number 1234 5678 9012 3456 is printed on the box.", "Fake IBAN DE00 3704 0044 0532 0130 00 fails.",
    "Matrix shape is (128, 256, 512).", "Coordinates 48.8584, 2.2945 mark the tower.",
    "Use port 8080 and timeout 30000ms.", "Password reset links expire after 24 hours.",
    "The token limit is 4096 tokens per request.", "See RFC 5322 section 3.4.1 for addresses.",
    "Chapter 3.2.1 covers hashing.", "SKU AB-1234-CD-5678 is out of stock.", "His score was 99.5/100.",
    "Build 20230115.1 passed all 1432 tests.", "The api_key field must not be empty.",
    "Lot no. 4021 7788 1932 expires soon.", "Dial 911 in an emergency.", "Meet at 5 pm on 3/4.",
    "The sha256 is e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.",
    "Kernel 5.15.0.91 is installed.", "About 1,000,000 users signed up.",
]


def main() -> None:
    rows = []
    makers = {"EMAIL": email, "PHONE": phone, "IP_ADDRESS": ip, "CREDIT_CARD": card, "IBAN": iban}
    for kind, maker in makers.items():
        for _ in range(45):
            rows.append([(R.choice(CONTEXT[kind]), kind, maker())])
    for _ in range(45):
        ctx, key = api_key()
        rows.append([(ctx.replace(key, "{v}"), "API_KEY", key)])
    for _ in range(30):   # several kinds in one text
        kinds = R.sample(list(makers), 2)
        rows.append([(R.choice(CONTEXT[k]), k, makers[k]()) for k in kinds])
    R.shuffle(rows)
    with OUT.open("w", encoding="utf-8") as f:
        for parts in rows:
            text, spans = "", []
            for template, kind, value in parts:
                text += " " if text else ""
                start = text.__len__() + template.index("{v}")
                text += template.replace("{v}", value)
                spans.append({"start": start, "end": start + len(value), "type": kind, "value": value})
            f.write(json.dumps({"text": text, "spans": spans}) + "\n")
        for neg in NEGATIVES:
            f.write(json.dumps({"text": neg, "spans": []}) + "\n")


if __name__ == "__main__":
    main()
