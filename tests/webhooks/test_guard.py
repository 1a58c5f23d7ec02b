"""The SSRF guard, signing and the retry schedule as pure logic: no connection is ever made here."""

import ipaddress
from datetime import UTC, datetime

import pytest
from django.test import override_settings
from standardwebhooks import Webhook

from observers_app import checks, manager
from observers_app.exceptions import InvalidWebhook, WebhookRefused
from observers_app.webhooks import attempts, guard, signing
from observers_app.webhooks.attempts import Outcome


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("100.64.0.1", "not globally routable"),
        ("198.18.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2001:db8::1", "private"),
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    assert guard.refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert guard.refusal_reason(ipaddress.ip_address(address)) is None


def test_the_allowlist_takes_names_addresses_and_networks():
    allow = guard.parse_allowlist(["Hooks.Internal.", "10.0.0.0/8", "192.168.1.5", "fd00::/8"])
    assert allow.allows_host("hooks.internal") and not allow.allows_host("other.internal")
    assert allow.allows_address(ipaddress.ip_address("10.200.0.1"))
    assert allow.allows_address(ipaddress.ip_address("192.168.1.5"))
    assert not allow.allows_address(ipaddress.ip_address("192.168.1.6"))
    assert allow.allows_address(ipaddress.ip_address("fd00::5"))
    with pytest.raises(InvalidWebhook, match="no address"):
        guard.parse_allowlist(["not a host!"])


@override_settings(
    OBSERVERS_WEBHOOK_ALLOW=["10.0.0.0/8", "db.internal"],
    OBSERVERS_WEBHOOK_RESOLVE={
        "db.internal": ["192.168.7.7"],
        "app.internal": ["10.1.1.1"],
        "meta.internal": ["169.254.169.254"],
        "mixed.example": ["93.184.215.14", "192.168.0.1"],
    },
)
def test_vetting_resolves_once_and_refuses_unless_allowed():
    assert guard.vetted_address("app.internal", 443) == "10.1.1.1"  # an allowed network
    assert guard.vetted_address("db.internal", 443) == "192.168.7.7"  # an allowed name
    with pytest.raises(WebhookRefused, match=r"meta.internal \(169.254.169.254\) is link-local"):
        guard.vetted_address("meta.internal", 443)
    with pytest.raises(WebhookRefused, match=r"192\.168\.0\.1"):
        guard.vetted_address("mixed.example", 443)  # one internal address is enough to refuse
    mapped = guard.vetted_address("::ffff:10.0.0.1", 443)  # judged as the IPv4 address it carries
    assert ipaddress.IPv6Address(mapped).ipv4_mapped == ipaddress.IPv4Address("10.0.0.1")
    with pytest.raises(WebhookRefused, match="fd00::1 is private"):
        guard.vetted_address("fd00::1", 443)


def test_urls_are_checked_before_any_connection():
    with (
        override_settings(OBSERVERS_WEBHOOK_ALLOW_HTTP=False),
        pytest.raises(WebhookRefused, match="not https"),
    ):
        guard.check_url("http://example.com/hook", resolve_now=False)
    with pytest.raises(InvalidWebhook, match="absolute http"):
        guard.check_url("ftp://example.com/hook")
    with pytest.raises(InvalidWebhook, match="credentials"):
        guard.check_url("https://user:pw@example.com/hook", resolve_now=False)
    with pytest.raises(InvalidWebhook, match="the limit is 2048"):
        guard.check_url("https://example.com/" + "x" * 2048, resolve_now=False)
    with pytest.raises(InvalidWebhook, match="port"):
        guard.check_url("https://example.com:99999/hook", resolve_now=False)


def test_signatures_verify_with_the_standardwebhooks_package():
    secret = signing.new_secret()
    body = b'{"type":"variable.changed","data":{"new":2}}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = signing.headers(secret, "msg_1", timestamp, body)
    assert Webhook(secret).verify(body, headers) == {"type": "variable.changed", "data": {"new": 2}}
    assert headers["webhook-signature"].startswith("v1,")


def test_secrets_are_checked():
    assert signing.check_secret(signing.new_secret())
    for bad in ["plain", "whsec_!!!", "whsec_" + "QUJD"]:  # not whsec_, not base64, 3 bytes
        with pytest.raises(InvalidWebhook):
            signing.check_secret(bad)


@pytest.mark.django_db
def test_add_webhook_refuses_bad_urls_and_secrets_with_clear_errors():
    with pytest.raises(WebhookRefused, match=r"169\.254\.169\.254 is link-local"):
        manager.add_webhook("v", "http://169.254.169.254/latest/meta-data")
    with pytest.raises(WebhookRefused, match=r"10\.0\.0\.1 is private"):
        manager.add_webhook("v", "http://10.0.0.1/hook")
    with pytest.raises(InvalidWebhook, match="whsec_"):
        manager.add_webhook("v", "http://127.0.0.1:9/hook", secret="hunter2")


def test_retry_after_is_read_as_seconds_or_a_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert attempts.parse_retry_after("120") == 120
    assert attempts.parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now=now) == 60
    assert attempts.parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert attempts.parse_retry_after("soon") is None
    assert attempts.parse_retry_after(None) is None
    # Forms that raised inside the attempt: a Unicode digit, a date with no zone ("-0000": UTC).
    assert attempts.parse_retry_after("\u00b2") is None
    assert attempts.parse_retry_after("Thu, 01 Jan 2026 12:01:00 -0000", now=now) == 60


@override_settings(OBSERVERS_WEBHOOK_RETRY_SCHEDULE=[5, 300, 1800])
def test_the_retry_delay_follows_the_schedule_and_retry_after():
    failed = Outcome(status_code=500, retryable=True)
    assert [attempts.retry_delay(failed, n) for n in (1, 2, 3, 4)] == [5, 300, 1800, None]
    assert attempts.retry_delay(Outcome(status_code=400), 1) is None
    assert attempts.retry_delay(Outcome(status_code=429, retryable=True, retry_after=42), 1) == 42
    assert attempts.retry_delay(Outcome(status_code=429, retryable=True, retry_after=10**9), 1) == 1800


def test_a_webhook_ref_is_a_ref_that_carries_its_secret_once():
    import uuid

    plain = uuid.uuid4()
    ref = manager.WebhookRef(plain, "whsec_x")
    assert ref == plain and hash(ref) == hash(plain) and str(ref) == str(plain)
    assert ref.secret == "whsec_x" and "whsec" not in repr(ref)


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("OBSERVERS_WEBHOOK_ALLOW", ["10.0.0.0/8", "not a host!"], "observers.E006"),
        ("OBSERVERS_WEBHOOK_RETRY_SCHEDULE", [5, -1], "observers.E007"),
        ("OBSERVERS_WEBHOOK_TIMEOUT", 0, "observers.E008"),
        ("OBSERVERS_WEBHOOK_RESOLVE", {"hooks.internal": ["not-an-address"]}, "observers.E009"),
    ],
)
def test_webhook_settings_are_checked(setting, value, check_id):
    assert checks.check_webhook_settings() == []
    with override_settings(**{setting: value}):
        assert [message.id for message in checks.check_webhook_settings()] == [check_id]
