"""Find personal data and secrets in text and replace them with typed placeholders.

Types: EMAIL, PHONE, IP_ADDRESS, CREDIT_CARD, IBAN, API_KEY -> `<EMAIL>`, `<PHONE>`, ...
Candidates come from patterns; each is then validated: phone numbers by libphonenumber
(`phonenumbers`, valid number with the digit grouping of its region), IBANs by their country format and mod-97 check (`python-stdnum`), card
numbers by the Luhn check and issuer prefix, IP addresses by `ipaddress`. Secrets are
matched by the published token formats of common providers, or a long mixed token after a
word such as `api_key=` or `Bearer`.

Example:
    >>> Anonymizer().anonymize("mail bob@example.org from 10.0.0.12")
    ('mail <EMAIL> from <IP_ADDRESS>', {'EMAIL': 1, 'IP_ADDRESS': 1})
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn

PII_TYPES = ("API_KEY", "EMAIL", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "PHONE")  # overlap priority

EMAIL = re.compile(r"(?<![\w.+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                   r"[A-Za-z]{2,24}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)")
CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d])")
CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6011|64[4-9]|65|35|30[0-5]|36|38|62|5[06-9]|6[0-9])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,32}")
# dotted quads right after these words are software versions, not addresses
VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\b(?:version|release|build|kernel|firmware)\s?)$")
SECRET_FORMATS = re.compile("|".join([
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",              # AWS access key id
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b",                       # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
    r"\bglpat-[A-Za-z0-9_-]{20}\b",                                       # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",                                 # Slack
    r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b",                   # Stripe
    r"\bsk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}",              # OpenAI / Anthropic
    r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])",                                  # Google API key
    r"\bhf_[A-Za-z0-9]{30,}\b",                                           # Hugging Face
    r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",                       # SendGrid
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",   # JWT
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
]))
SECRET_AFTER_KEYWORD = re.compile(
    r"(?i)(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key|(?:access|auth|api|bearer|refresh)[_-]?token"
    r"|token|client[_-]?secret|bearer|authorization)[\"']?\s*(?:[:=]|=>|\s)\s*(?:bearer\s+)?[\"']?"
    r"([A-Za-z0-9][A-Za-z0-9_\-./+=]{15,}[A-Za-z0-9=])")


@dataclass(frozen=True)
class Span:
    """A found item: text[start:end] of `type`."""

    start: int
    end: int
    type: str


def _emails(text: str) -> Iterable[Span]:
    for m in EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL")


def _ips(text: str) -> Iterable[Span]:
    for m in IPV4.finditer(text):
        if VERSION_BEFORE.search(text[max(0, m.start() - 10):m.start()]):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP_ADDRESS")
    for m in IPV6.finditer(text):
        s = m.group()
        if s.count(":") < 2 or len(s.replace(":", "")) < 3:
            continue
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP_ADDRESS")


def _cards(text: str) -> Iterable[Span]:
    for m in CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and CARD_PREFIX.match(digits) and luhn.is_valid(digits):
            yield Span(m.start(), m.end(), "CREDIT_CARD")


def _ibans(text: str) -> Iterable[Span]:
    for m in IBAN.finditer(text):
        candidate = m.group()
        for end in range(len(candidate), 14, -1):     # longest valid prefix: the match may run into a word
            if candidate[end - 1].isalnum() and std_iban.is_valid(candidate[:end]):
                yield Span(m.start(), m.start() + end, "IBAN")
                break


def _secrets(text: str) -> Iterable[Span]:
    for m in SECRET_FORMATS.finditer(text):
        yield Span(m.start(), m.end(), "API_KEY")
    for m in SECRET_AFTER_KEYWORD.finditer(text):
        token = m.group(1)
        if re.search(r"\d", token) and re.search(r"[A-Za-z]", token):
            yield Span(m.start(1), m.end(1), "API_KEY")


class Anonymizer:
    """Finds PII spans and replaces them with `<TYPE>` placeholders.

    Example:
        >>> Anonymizer(types=["PHONE"]).anonymize("call +44 20 7946 0958 now")[0]
        'call <PHONE> now'
    """

    def __init__(self, types: Iterable[str] = PII_TYPES, phone_regions: Iterable[str] = ("US",)):
        self.types = set(types)
        self.phone_regions = list(phone_regions)

    def _phones(self, text: str) -> Iterable[Span]:
        for region in self.phone_regions:
            for m in phonenumbers.PhoneNumberMatcher(text, region, 
                                                      leniency=phonenumbers.Leniency.STRICT_GROUPING):
                yield Span(m.start, m.end, "PHONE")

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans, sorted by position; on overlap the type earlier in PII_TYPES wins,
        then the longer span."""
        finders = {"API_KEY": _secrets, "EMAIL": _emails, "IBAN": _ibans, "CREDIT_CARD": _cards,
                   "IP_ADDRESS": _ips, "PHONE": self._phones}
        chosen: list[Span] = []
        for kind in PII_TYPES:
            if kind not in self.types:
                continue
            for span in sorted(finders[kind](text), key=lambda s: s.start - s.end):
                if all(span.end <= c.start or span.start >= c.end for c in chosen):
                    chosen.append(span)
        return sorted(chosen, key=lambda s: s.start)

    def anonymize(self, text: str) -> tuple[str, dict[str, int]]:
        """(text with placeholders, count per type)."""
        spans = self.find(text)
        if not spans:
            return text, {}
        out, pos = [], 0
        for s in spans:
            out += [text[pos:s.start], f"<{s.type}>"]
            pos = s.end
        out.append(text[pos:])
        return "".join(out), dict(Counter(s.type for s in spans))


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and not text[start].isalnum() and text[start] not in "+-":
        start += 1
    while end > start and not text[end - 1].isalnum() and text[end - 1] != "=":
        end -= 1
    return start, end


def evaluate(rows: Iterable[dict], anonymizer: Anonymizer) -> dict[str, dict[str, float]]:
    """Precision/recall/F1 per type (and "all") on rows `{"text", "spans": [{"start","end","type"}]}`.
    A prediction counts only when its type and its span (ignoring punctuation at the edges) equal a
    labelled one.

    Example:
        >>> evaluate([{"text": "a@b.io", "spans": [{"start": 0, "end": 6, "type": "EMAIL"}]}], Anonymizer())["all"]
        {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'gold': 1, 'predicted': 1}
    """
    tp: Counter = Counter()
    gold_n: Counter = Counter()
    pred_n: Counter = Counter()
    for row in rows:
        text = row["text"]
        gold = {(*_trim(text, s["start"], s["end"]), s["type"]) for s in row["spans"]}
        pred = {(*_trim(text, s.start, s.end), s.type) for s in anonymizer.find(text)}
        for kind in {t for *_, t in gold | pred}:
            g = {x for x in gold if x[2] == kind}
            p = {x for x in pred if x[2] == kind}
            tp[kind] += len(g & p)
            gold_n[kind] += len(g)
            pred_n[kind] += len(p)
    out = {}
    for kind in sorted(gold_n | pred_n) + ["all"]:
        t = sum(tp.values()) if kind == "all" else tp[kind]
        g = sum(gold_n.values()) if kind == "all" else gold_n[kind]
        p = sum(pred_n.values()) if kind == "all" else pred_n[kind]
        prec, rec = (t / p if p else 1.0), (t / g if g else 1.0)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[kind] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "gold": g, "predicted": p}
    return out


MARK = re.compile(r"\[\[([A-Z_]+):(.+?)\]\]", re.S)


def load_labelled(path: str) -> list[dict]:
    """Rows `{"text", "spans"}` from a JSONL file holding either that form or
    `{"marked": "call [[PHONE:+44 20 7946 0958]]"}` (spans written inline)."""
    import json

    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if "marked" in row:
                text, spans, pos = "", [], 0
                for m in MARK.finditer(row["marked"]):
                    text += row["marked"][pos:m.start()]
                    spans.append({"start": len(text), "end": len(text) + len(m.group(2)), "type": m.group(1)})
                    text += m.group(2)
                    pos = m.end()
                row = {"text": text + row["marked"][pos:], "spans": spans}
            rows.append(row)
    return rows
