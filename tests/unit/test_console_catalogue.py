"""The console's catalogue: every key a template or a console module names exists, in
Portuguese and English, with the same placeholders; every template renders in both."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from protocolo.console import catalogue, rules

CONSOLE = Path(catalogue.__file__).parent
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_.]+)["']""")
#: Keys built from a prefix and a value: each value the code can produce must have its key.
COMPOSED = {
    "role.": ["analyst", "supervisor", "compliance", "regulator", "service", "customer"],
    "request.kind.": ["RECORDING", "HISTORY"],
    "request.status.": ["requested", "located", "fulfilled", "rejected"],
    "approvals.action.": ["EARLY_DELETION", "CUSTOMER_ERASURE"],
    "customer.delivery.": ["EMAIL", "APP", "WEB"],
    "recording.status.": ["retained", "deleted"],
    "regulator.kind.": ["export", "report"],
    "exports.state.": ["running", "done", "failed"],
    "flag.": list(rules.FLAGS),
    "rule.": list(rules.FLAGS),
}


def _sources() -> list[Path]:
    return sorted([*CONSOLE.glob("templates/*.html"), *(p for p in CONSOLE.glob("*.py") if p.name != "catalogue.py")])


def test_every_key_named_is_in_the_catalogue() -> None:
    named = {key for path in _sources() for key in LITERAL_KEY.findall(path.read_text(encoding="utf-8"))}
    prefixes = {key for key in named if key.endswith(".")}
    assert prefixes <= set(COMPOSED), "a key built from a value: list its values in COMPOSED"
    named = (named - prefixes) | {prefix + value for prefix, values in COMPOSED.items() for value in values}
    assert len(named) > 50, "the scan found (almost) no key: the pattern is wrong"
    assert sorted(named - set(catalogue.MESSAGES)) == []


def test_both_languages_say_something_with_the_same_placeholders() -> None:
    for key, (pt, en) in catalogue.MESSAGES.items():
        assert pt.strip() and en.strip(), key
        fields = [{f for _, f, _, _ in string.Formatter().parse(text) if f} for text in (pt, en)]
        assert fields[0] == fields[1], key


@pytest.mark.parametrize("lang", catalogue.LANGUAGES)
def test_spans_read_as_days_hours_or_minutes(lang: str) -> None:
    t = catalogue.translator(lang)
    assert catalogue.span(3 * 86_400 + 2 * 3_600 + 59, t) == t("span.days", d=3, h=2)
    assert catalogue.span(-(5 * 3_600 + 7 * 60), t) == t("span.hours", h=5, m=7)
    assert catalogue.span(30, t) == t("span.minutes", m=1)


def test_an_unknown_language_falls_back_to_portuguese() -> None:
    assert catalogue.language_of("xx") == "pt"
    assert catalogue.translator("xx")("login.title") == catalogue.MESSAGES["login.title"][0]
