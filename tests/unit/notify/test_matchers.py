"""Label matchers (pipeline/notify/matchers.py): Alertmanager semantics."""

from __future__ import annotations

import pytest

from pipeline.notify.matchers import Matcher, format_matchers, matches_all, parse_matcher, parse_matchers


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ('severity="critical"', {"severity": "critical"}, True),
    ('severity="critical"', {"severity": "warning"}, False),
    ('severity!="critical"', {"severity": "warning"}, True),
    ("page=~/checkout.*", {"page": "/checkout/pay"}, True),
    # fully anchored: a prefix or an infix is not a match
    ('page=~"/check"', {"page": "/checkout"}, False),
    ('page=~"out"', {"page": "/checkout"}, False),
    ('project=~"shop|blog"', {"project": "blog"}, True),
    ('project=~"shop|blog"', {"project": "shopping"}, False),
    ('project!~"shop|blog"', {"project": "shopping"}, True),
    # a missing label equals ""
    ('team=""', {}, True),
    ('team!=""', {}, False),
    ('team=~".*"', {}, True),
    ('team=~".+"', {}, False),
    ('team!~"a.*"', {}, True),
])
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_parse_quoted_and_bare_values() -> None:
    assert parse_matcher(' severity = "crit ical" ') == Matcher("severity", "=", "crit ical")
    assert parse_matcher("severity=critical") == Matcher("severity", "=", "critical")
    assert parse_matcher(r'msg="say \"hi\"\\ok\nnext"').value == 'say "hi"\\ok\nnext'
    assert parse_matcher(r'code=~"\d+"').matches({"code": "503"})  # unknown escapes stay for the regex


def test_parse_list_forms() -> None:
    expected = [Matcher("a", "=", "1"), Matcher("b", "=~", "x,y|z"), Matcher("c", "!=", "2")]
    assert parse_matchers('{a="1", b=~"x,y|z", c!="2"}') == expected
    assert parse_matchers(['a="1"', 'b=~"x,y|z"', "c!=2"]) == expected
    assert parse_matchers("a=1, c!=2") == [Matcher("a", "=", "1"), Matcher("c", "!=", "2")]
    assert parse_matchers("{}") == []


def test_format_round_trips() -> None:
    ms = parse_matchers(r'{a="x\"y", b!~"c|d"}')
    assert format_matchers(ms) == r'{a="x\"y", b!~"c|d"}'
    assert parse_matchers(format_matchers(ms)) == ms


@pytest.mark.parametrize(("text", "message"), [
    ("severity", "expected one of"),
    ('1abc="x"', "expected a label name"),
    ('a=~"("', "bad regex"),
    ('a="unterminated', "unterminated"),
    ('a="1" b="2"', "unexpected text"),
])
def test_bad_matchers_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_matcher(text)


def test_conjunction() -> None:
    ms = parse_matchers('{severity="critical", project=~"shop|blog"}')
    assert matches_all(ms, {"severity": "critical", "project": "shop"})
    assert not matches_all(ms, {"severity": "critical", "project": "docs"})
    assert matches_all([], {"anything": "x"})
