from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.scrub import FILTERED, is_sensitive_key, luhn_ok, scrub_event, scrub_text


@pytest.mark.parametrize("card", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111",
                                  "5500 0000 0000 0004", "3782 822463 10005", "6011000990139424"])
def test_luhn_valid_cards_are_filtered(card: str) -> None:
    assert scrub_text(f"paid with {card} today") == f"paid with {FILTERED} today"


def test_numbers_that_are_not_cards_stay() -> None:
    assert not luhn_ok("4111111111111112")
    for text in ["card 4111 1111 1111 1112", "ts 1732356000000", "order 41111111111111111111111",
                 "phone 555-1234", "id 12345678901234"]:
        assert scrub_text(text) == text


def test_a_card_after_a_stray_number_is_still_found() -> None:
    assert scrub_text("qty 5 4111 1111 1111 1111") == f"qty 5 {FILTERED}"


def test_emails() -> None:
    assert scrub_text("from ann.lee+x@mail.example.co.uk to bob@ex.io") == "from [email] to [email]"
    assert scrub_text("@handle and a@b") == "@handle and a@b"


def test_bearer_and_key_values() -> None:
    assert scrub_text("Authorization: Bearer eyJhbGciOi.J9x-y_z") == f"Authorization: {FILTERED}"
    assert scrub_text("sent bearer abc123==") == f"sent bearer {FILTERED}"
    assert scrub_text('{"password": "hunter2", "user": "ann"}') == f'{{"password": "{FILTERED}", "user": "ann"}}'
    assert scrub_text("db_passwd=s3cr3t; host=x") == f"db_passwd={FILTERED}; host=x"
    assert scrub_text("x-api-key: abc") == f"x-api-key: {FILTERED}"


def test_url_query_parameters() -> None:
    url = "https://shop.example.com/cb?code=1&access_token=abc.def&apikey=zz&session=q#top"
    assert scrub_text(url) == f"https://shop.example.com/cb?code=1&access_token={FILTERED}&apikey={FILTERED}&session={FILTERED}#top"
    # A host name containing a sensitive word, followed by a port, is not a key/value pair.
    assert scrub_text("https://auth.example.com:8443/login") == "https://auth.example.com:8443/login"


def test_sensitive_keys() -> None:
    for key in ["password", "user_password", "X-Auth-Token", "sessionid", "api-key", "Cookie", "client_secret"]:
        assert is_sensitive_key(key), key
    for key in ["user", "page", "count", "selector"]:
        assert not is_sensitive_key(key), key


def error_event() -> dict[str, object]:
    return {
        "event_id": "e1", "type": "error", "project": "p", "session_id": "s", "timestamp": "2026-11-23T10:00:00Z",
        "url": "https://x.io/checkout?token=abc&step=2",
        "error": {
            "exception_type": "Error", "message": "failed for ann@example.com card 4111111111111111",
            "breadcrumbs": [{"message": "POST /login password=hunter2",
                             "data": {"url": "/p?apikey=k", "nested": {"Authorization": "Basic x", "ok": [1, "a@b.io"]}}}],
            "tags": {"user_email": "ann@example.com", "auth_token": "t", "plan": "pro"},
        },
    }


def test_scrub_event_fields_and_nested_keys() -> None:
    original = error_event()
    before = copy.deepcopy(original)
    out = scrub_event(original)
    assert original == before, "the input is never mutated"
    assert out["url"] == f"https://x.io/checkout?token={FILTERED}&step=2"
    err = out["error"]
    assert err["message"] == f"failed for [email] card {FILTERED}"
    crumb = err["breadcrumbs"][0]
    assert crumb["message"] == f"POST /login password={FILTERED}"
    assert crumb["data"] == {"url": f"/p?apikey={FILTERED}", "nested": {"Authorization": FILTERED, "ok": [1, "[email]"]}}
    assert err["tags"] == {"user_email": "[email]", "auth_token": FILTERED, "plan": "pro"}


def test_scrub_event_api_and_action() -> None:
    api = scrub_event({"type": "api", "api": {"url": "/v1/me?api_key=zzz", "duration_ms": 3}})
    assert api["api"]["url"] == f"/v1/me?api_key={FILTERED}"
    action = scrub_event({"type": "action", "action": {"kind": "custom", "name": "n", "text": "mail a@b.io",
                                                       "properties": {"password": 1, "deep": [{"cookie": "c"}]}}})
    assert action["action"]["text"] == "mail [email]"
    assert action["action"]["properties"] == {"password": FILTERED, "deep": [{"cookie": FILTERED}]}


def test_scrub_event_is_idempotent_and_tolerates_odd_shapes() -> None:
    once = scrub_event(error_event())
    assert scrub_event(once) == once
    assert scrub_event(42) == 42
    assert scrub_event({"error": "not a dict", "url": 5}) == {"error": "not a dict", "url": 5}


def test_deep_nesting_is_bounded() -> None:
    deep: object = "a@b.io"
    for _ in range(2000):
        deep = {"x": deep}
    out = scrub_event({"type": "action", "action": {"properties": deep}})
    assert "a@b.io" not in repr(out)[:100_000]


TEXT = st.text(alphabet=st.sampled_from(list("0123456789 -@.=:&?\"'abeokrtnpswdBEARERTOKEN_\n")), max_size=120)


@settings(max_examples=400, deadline=None)
@given(st.one_of(TEXT, st.text(max_size=200)))
def test_scrub_text_never_raises_and_is_idempotent(text: str) -> None:
    once = scrub_text(text)
    assert scrub_text(once) == once


def test_metric_tags_are_scrubbed() -> None:
    from pipeline.ingest.scrub import scrub_event

    out = scrub_event({"type": "metric", "metric": {"name": "m", "value": 1,
                                                    "tags": {"user": "ann@example.com", "api_key": "k-123"}}})
    assert out["metric"]["tags"] == {"user": "[email]", "api_key": "[Filtered]"}


@pytest.mark.parametrize(("text", "want"), [
    ("from 10.1.2.3 via 192.168.0.255", "from [ip] via [ip]"),
    ("GET http://127.0.0.1:8080/x", "GET http://[ip]:8080/x"),
    ("v1.2.3 and 1.2.3.4.5 and 300.1.1.1", "v1.2.3 and 1.2.3.4.5 and 300.1.1.1"),
])
def test_ipv4_addresses_are_scrubbed(text: str, want: str) -> None:
    from pipeline.ingest.scrub import scrub_text

    assert scrub_text(text) == want
    assert scrub_text(want) == want


def test_stack_frame_source_lines_and_urls_are_scrubbed() -> None:
    from pipeline.ingest.scrub import scrub_event

    out = scrub_event({"type": "error", "error": {"stacktrace": [
        {"filename": "https://x.example/app.js?token=abc", "function": "f",
         "context_line": 'login("ann@example.com", password="hunter2")'}]}})
    frame = out["error"]["stacktrace"][0]
    assert frame["filename"] == "https://x.example/app.js?token=[Filtered]"
    assert frame["context_line"] == 'login("[email]", password="[Filtered]")'


def test_ip_addresses_can_be_kept() -> None:
    from pipeline.ingest.scrub import scrub_event

    event = {"type": "error", "url": "http://10.0.0.7/x?token=t", "error": {"message": "from 10.0.0.7 as ann@example.com"}}
    kept = scrub_event(event, keep_ips=True)
    assert kept["error"]["message"] == "from 10.0.0.7 as [email]" and kept["url"] == "http://10.0.0.7/x?token=[Filtered]"
    assert scrub_event(event)["error"]["message"] == "from [ip] as [email]"


@pytest.mark.parametrize("consent", [False, 0, "false", "No", "off"])
def test_withheld_consent_drops_user_identifiers_at_the_edge(consent: object) -> None:
    item = {"type": "action", "consent": consent, "user_id": "u-42", "anonymous_id": "anon-7", "session_id": "s"}
    out = scrub_event(item)
    assert out["user_id"] is None and out["anonymous_id"] is None and out["session_id"] == "s"
    assert item["user_id"] == "u-42"  # the caller's dict is untouched


@pytest.mark.parametrize("consent", [True, 1, "true", None])
def test_consent_given_or_unset_keeps_user_identifiers(consent: object) -> None:
    item = {"type": "action", "user_id": "u-42", "anonymous_id": "anon-7"}
    if consent is not None:
        item["consent"] = consent
    out = scrub_event(item)
    assert (out["user_id"], out["anonymous_id"]) == ("u-42", "anon-7")
