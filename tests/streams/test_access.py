"""Stream parameters, tokens and the authorization hook (no server)."""

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission, User
from django.test import override_settings

from observers_app import checks
from observers_app.exceptions import InvalidVariableId, StreamLimitReached, StreamRefused
from observers_app.streams import access, reauthorization


def test_parameters_are_checked():
    assert access.parse_var_ids(["a", "b:*", "a"]) == ["a", "b:*"]
    for bad in ([], [""], ["x" * 256], ["a\nb"]):
        with pytest.raises(InvalidVariableId):
            access.parse_var_ids(bad)
    with pytest.raises(StreamLimitReached, match="OBSERVERS_STREAM_MAX_VARS"):
        access.parse_var_ids(["v"] * 51)


def test_a_token_grants_its_names_and_narrower_patterns_only():
    token = access.issue_token(["session:42:*", "price:ACME"])
    access.check_token(token, ["session:42:cart", "session:42:a*", "price:ACME"])
    for refused in (["session:4*"], ["session:43:cart"], ["price:*"], ["price:ACME2"]):
        with pytest.raises(StreamRefused, match="does not grant"):
            access.check_token(token, refused)
    with pytest.raises(StreamRefused, match="expired"):
        access.check_token(access.issue_token(["a"], ttl_s=-1), ["a"])
    with pytest.raises(StreamRefused, match="not valid"):
        access.check_token(token[:-2] + "xx", ["price:ACME"])


@access.stream_authorizer(name="tests.only_own_session")
def only_own_session(user, var_ids):
    return all(var_id.startswith(f"session:{user.pk}:") for var_id in var_ids)


@access.stream_authorizer(name="tests.anyone")
def anyone(user, var_ids):
    return True


def person(*, pk: int, is_staff: bool = False, perms: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        is_authenticated=True,
        is_active=True,
        is_staff=is_staff,
        pk=pk,
        get_username=lambda: f"user{pk}",
        has_perm=lambda perm: perm in perms,
    )


def test_the_authorizer_is_chosen_by_registered_name():
    watcher = person(pk=1, perms=("observers_app.watch_variable",))
    staff = person(pk=2, is_staff=True)
    user = person(pk=7)
    access.check_user(watcher, ["anything"])
    for refused in (staff, user):  # staff alone is not the permission
        with pytest.raises(StreamRefused, match="may not watch"):
            access.check_user(refused, ["session:7:x"])
    with override_settings(OBSERVERS_STREAM_AUTHORIZER="tests.only_own_session"):
        access.check_user(user, ["session:7:x"])
        with pytest.raises(StreamRefused):
            access.check_user(user, ["session:8:x"])
    unregistered = override_settings(OBSERVERS_STREAM_AUTHORIZER="tests.not.registered")
    with unregistered, pytest.raises(StreamRefused, match="names no registered authorizer"):
        access.check_user(user, ["session:7:x"])


def test_a_wide_glob_needs_its_own_permission_whatever_the_authorizer():
    narrow = person(pk=1, perms=("observers_app.watch_variable",))
    wide = person(pk=2, perms=("observers_app.watch_variable", "observers_app.watch_wide_glob"))
    access.check_user(narrow, ["sess*", "session:1:*"])
    for pattern in ("*", "s*", "ses*", "*:cart"):
        with pytest.raises(StreamRefused, match=r"observers_app\.watch_wide_glob"):
            access.check_user(narrow, [pattern])
        access.check_user(wide, [pattern])
    anyone = override_settings(OBSERVERS_STREAM_AUTHORIZER="tests.anyone")
    with anyone, pytest.raises(StreamRefused, match="watch_wide_glob"):
        access.check_user(person(pk=1), ["*"])


def test_the_old_default_still_works_with_a_deprecation_warning_and_a_system_check():
    staff = person(pk=2, is_staff=True)
    with override_settings(OBSERVERS_STREAM_AUTHORIZER="observers.staff_only"):
        with pytest.warns(DeprecationWarning, match="observers_app.watch_variable"):
            access.check_user(staff, ["price:ACME"])
        assert [m.id for m in checks.check_stream_authorizer()] == ["observers.W007"]
    assert checks.check_stream_authorizer() == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "http://127.0.0.1:8000",
        "http://[::1]:3000",
        "https://xn--bcher-kva.example",
    ],
)
def test_an_origin_is_a_scheme_a_host_and_a_port(origin):
    assert access.is_origin(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/page",
        "https://app.example.com?x=1",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://app.example.com:port",
        "https://app.example.com:99999",
        "HTTPS://App.Example.com",
        "https://app.example.com:443",
        "http://app.example.com:80",
        "https://bücher.example",
        "https://:pw@app.example.com",
        "https://app.example.com:",
        "https://app.example.com:08080",
        "http://[0:0::1]:3000",
        "http://[::1",
        "*",
        "",
    ],
)
def test_what_is_not_an_origin_is_refused_by_the_check(settings, origin):
    assert not access.is_origin(origin)
    settings.OBSERVERS_STREAM_ALLOWED_ORIGINS = ["https://ok.example.com", origin]
    assert [error.id for error in checks.check_stream_origins()] == ["observers.E011"]


def test_origins_given_as_one_string_are_refused_by_the_check(settings):
    settings.OBSERVERS_STREAM_ALLOWED_ORIGINS = "https://app.example.com"
    assert [error.id for error in checks.check_stream_origins()] == ["observers.E011"]
    assert access.cors_origin("https://app.example.com") is None


def test_only_a_listed_origin_is_allowed(settings):
    settings.OBSERVERS_STREAM_ALLOWED_ORIGINS = ["https://app.example.com"]
    assert access.cors_origin("https://app.example.com") == "https://app.example.com"
    assert access.cors_origin("https://app.example.com.evil.test") is None
    assert access.cors_origin("http://app.example.com") is None
    assert access.cors_origin(None) is None
    assert checks.check_stream_origins() == []


@pytest.mark.django_db
def test_a_user_authenticated_without_a_session_is_checked_again_by_its_row(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = User.objects.create_user("sessionless", password="a-long-test-password")
    user.user_permissions.add(Permission.objects.get(codename="watch_variable"))
    grant = access.Grant(user_id=str(user.pk))
    assert reauthorization.recheck([(grant, ["price:ACME"])]) == [None]
    User.objects.filter(pk=user.pk).update(is_active=False)
    [reason] = reauthorization.recheck([(grant, ["price:ACME"])])
    assert reason is not None and "no longer authorized" in reason
    User.objects.filter(pk=user.pk).delete()
    assert "logged out" in str(reauthorization.recheck([(grant, ["price:ACME"])])[0])
