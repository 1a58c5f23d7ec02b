"""Who may watch what: the stream's parameters, signed expiring tokens, and the authorization hook."""

import hashlib
import importlib
import ipaddress
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user
from django.core import signing
from django.http import HttpRequest

from .. import conf
from ..deprecation import REMOVED_IN
from ..exceptions import InvalidVariableId, StreamRefused
from ..globs import glob_matches
from ..models import VAR_ID_MAX_LENGTH
from . import limits

Authorizer = Callable[[Any, list[str]], bool]
TOKEN_SALT = "observers.streams.token"  # noqa: S105 - a signing namespace, not a secret
WATCH_PERMISSION = "observers_app.watch_variable"
WIDE_GLOB_PERMISSION = "observers_app.watch_wide_glob"
TOKEN_EXPIRED = "the token has expired; ask the site for a new one"  # noqa: S105 - a message


@dataclass(frozen=True)
class Grant:
    """What authorized a stream: its session's user, or its token; for the limits and the re-checks."""

    user_id: str | None = None
    session_key: str | None = None
    token_id: str | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    names: tuple[str, ...] = ()  # what a token grants


_authorizers: dict[str, Authorizer] = {}


def stream_authorizer(*, name: str) -> Callable[[Authorizer], Authorizer]:
    """Register ``(user, var_ids) -> bool`` under ``name``, for the OBSERVERS_STREAM_AUTHORIZER
    setting to choose (a name, never a dotted path to import)."""

    def register(func: Authorizer) -> Authorizer:
        current = _authorizers.get(name)
        if current is not None and current is not func:
            raise ValueError(f"stream authorizer {name!r} is already registered to {current!r}")
        _authorizers[name] = func
        return func

    return register


@stream_authorizer(name="observers.watch_permission")
def watch_permission(user: Any, var_ids: list[str]) -> bool:
    """The default: users with the ``observers_app.watch_variable`` permission (directly or through a
    group; a superuser has every permission). Being staff alone is not enough."""
    return bool(user.has_perm(WATCH_PERMISSION))


@stream_authorizer(name="observers.staff_only")
def staff_only(user: Any, var_ids: list[str]) -> bool:
    """Deprecated (the default before 0.3, removed in 0.4): any active staff user may watch anything,
    every session's values included. Grant ``observers_app.watch_variable`` instead."""
    warnings.warn(
        "the stream authorizer observers.staff_only lets any staff user watch every variable; grant the "
        f"{WATCH_PERMISSION} permission and use the default observers.watch_permission (staff_only is "
        f"removed in {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=2,
    )
    return bool(user.is_active and user.is_staff)


def registered_authorizers() -> list[str]:
    return sorted(_authorizers)


def authorizer() -> Authorizer:
    name = conf.stream_authorizer()
    try:
        return _authorizers[name]
    except KeyError:
        raise StreamRefused(
            f"OBSERVERS_STREAM_AUTHORIZER={name!r} names no registered authorizer; register one with "
            "@stream_authorizer(name=...) in a module your app imports"
        ) from None


def parse_var_ids(values: Sequence[str]) -> list[str]:
    """The ``var`` parameters: names and ``*`` patterns, at least one, each valid, at most
    OBSERVERS_STREAM_MAX_VARS (StreamLimitReached past it)."""
    if not values:
        raise InvalidVariableId("name at least one variable: ?var=price:ACME&var=session:42:*")
    limits.check_names(values)
    for var_id in values:
        if not var_id or len(var_id) > VAR_ID_MAX_LENGTH:
            raise InvalidVariableId(f"var must be 1 to {VAR_ID_MAX_LENGTH} characters, not {var_id!r}")
        if "\n" in var_id or "\r" in var_id:
            raise InvalidVariableId(f"var may not contain line breaks: {var_id!r}")
    return list(dict.fromkeys(values))


def issue_token(var_ids: Sequence[str], *, ttl_s: float | None = None, user: Any = None) -> str:
    """A signed token for streams of ``var_ids`` (names or ``*`` patterns), valid ``ttl_s`` seconds:
    for clients without the site's session cookie (other origins, services). Issue it from server
    code, after deciding the bearer may watch these variables. Issued for a ``user``, its streams count
    against that user's limit and ``revoke_tokens(user)`` revokes it."""
    granted = parse_var_ids(list(var_ids))
    now = time.time()
    expires = now + (conf.stream_token_ttl() if ttl_s is None else ttl_s)
    payload = {"v": granted, "exp": round(expires, 3), "iat": now, "i": secrets.token_hex(8)}
    if user is not None:
        payload["u"] = str(user.pk)
    return signing.dumps(payload, salt=TOKEN_SALT, compress=True)


def read_token(token: str) -> Grant:
    """The grant of a validly signed ``token`` (expired or not); StreamRefused for any other."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("v"), list):
        raise StreamRefused("the token is not valid (bad signature or format); ask the site for a new one")
    # A token issued before tokens had ids is known by its digest.
    token_id = str(payload.get("i") or hashlib.sha256(token.encode()).hexdigest()[:16])
    return Grant(
        user_id=str(payload["u"]) if "u" in payload else None,
        token_id=token_id,
        issued_at=float(payload["iat"]) if "iat" in payload else None,
        expires_at=float(payload.get("exp", 0)),
        names=tuple(payload["v"]),
    )


def check_token(token: str, var_ids: list[str]) -> Grant:
    """Raise StreamRefused unless ``token`` is valid, unexpired and grants every one of ``var_ids``
    (revocation is checked apart, in the database: revocation.refuse_revoked)."""
    grant = read_token(token)
    if time.time() > (grant.expires_at or 0):
        raise StreamRefused(TOKEN_EXPIRED)
    refused = [v for v in var_ids if not any(glob_matches(name, v) for name in grant.names)]
    if refused:
        raise StreamRefused(f"the token does not grant {refused}")
    return grant


DEFAULT_PORTS = {"http": 80, "https": 443}


def is_origin(origin: object) -> bool:
    """``scheme://host[:port]`` exactly as a browser serializes it in ``Origin``: lower case, an ASCII
    (punycode) host, IPv6 in its short form, no default port; any other spelling never matches."""
    if not isinstance(origin, str) or not origin.isascii():
        return False
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return False
    host = parts.hostname
    if parts.scheme not in DEFAULT_PORTS or not host or port == DEFAULT_PORTS[parts.scheme]:
        return False
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return False
    return origin == f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")


def cors_origin(origin: str | None) -> str | None:
    """The origin to allow in ``Access-Control-Allow-Origin``: a page of another origin listed in
    OBSERVERS_STREAM_ALLOWED_ORIGINS may read a stream (authenticated by its token: the site's
    cookies are never allowed along, so a session cannot be used from there)."""
    return origin if origin and origin in conf.stream_allowed_origins() else None


def check_user(user: Any, var_ids: list[str]) -> None:
    """Raise StreamRefused unless the session's user may watch ``var_ids``: the authorizer says so,
    and a wide glob (see limits.is_wide) needs the watch_wide_glob permission besides."""
    if not user.is_authenticated:
        raise StreamRefused("not logged in: open the stream with the site's session, or pass a token")
    if not authorizer()(user, var_ids):
        raise StreamRefused(f"user {user.get_username()!r} may not watch {var_ids}")
    wide = [var_id for var_id in var_ids if limits.is_wide(var_id)]
    if wide and not user.has_perm(WIDE_GLOB_PERMISSION):
        raise StreamRefused(
            f"{wide} match too widely (fewer than OBSERVERS_STREAM_GLOB_MIN_PREFIX="
            f"{conf.stream_glob_min_prefix()} characters before '*'): that needs the "
            f"{WIDE_GLOB_PERMISSION} permission"
        )


def session_grant(request: HttpRequest, var_ids: list[str]) -> Grant:
    """Check the session's user (check_user); the grant to check again while the stream is open."""
    check_user(request.user, var_ids)
    session = request.session
    return Grant(user_id=str(request.user.pk), session_key=session.session_key)


def session_user(session_key: str) -> Any:
    """The user a session holds now, as the authentication middleware would find it (AnonymousUser
    once logged out, or after a password change)."""
    request = HttpRequest()
    request.session = importlib.import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(request)
