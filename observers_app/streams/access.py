"""Who may watch what: the stream's parameters, signed expiring tokens, and the authorization hook."""

import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core import signing

from .. import conf
from ..exceptions import InvalidVariableId, StreamRefused
from ..globs import glob_matches
from ..models import VAR_ID_MAX_LENGTH

Authorizer = Callable[[Any, list[str]], bool]
TOKEN_SALT = "observers.streams.token"  # noqa: S105 - a signing namespace, not a secret

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


@stream_authorizer(name="observers.staff_only")
def staff_only(user: Any, var_ids: list[str]) -> bool:
    """The default: active staff users may watch anything."""
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
    """The ``var`` parameters: names and ``*`` patterns, at least one, each valid."""
    if not values:
        raise InvalidVariableId("name at least one variable: ?var=price:ACME&var=session:42:*")
    if len(values) > conf.stream_max_vars():
        raise InvalidVariableId(
            f"{len(values)} variables in one stream; OBSERVERS_STREAM_MAX_VARS is {conf.stream_max_vars()}"
        )
    for var_id in values:
        if not var_id or len(var_id) > VAR_ID_MAX_LENGTH:
            raise InvalidVariableId(f"var must be 1 to {VAR_ID_MAX_LENGTH} characters, not {var_id!r}")
        if "\n" in var_id or "\r" in var_id:
            raise InvalidVariableId(f"var may not contain line breaks: {var_id!r}")
    return list(dict.fromkeys(values))


def issue_token(var_ids: Sequence[str], *, ttl_s: float | None = None) -> str:
    """A signed token for streams of ``var_ids`` (names or ``*`` patterns), valid ``ttl_s`` seconds:
    for clients without the site's session cookie (other origins, services). Issue it from server
    code, after deciding the bearer may watch these variables."""
    granted = parse_var_ids(list(var_ids))
    expires = time.time() + (conf.stream_token_ttl() if ttl_s is None else ttl_s)
    return signing.dumps({"v": granted, "exp": round(expires, 3)}, salt=TOKEN_SALT, compress=True)


def check_token(token: str, var_ids: list[str]) -> None:
    """Raise StreamRefused unless ``token`` is valid, unexpired and grants every one of ``var_ids``."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise StreamRefused(
            "the token is not valid (bad signature or format); ask the site for a new one"
        ) from None
    if not isinstance(payload, dict) or time.time() > float(payload.get("exp", 0)):
        raise StreamRefused("the token has expired; ask the site for a new one")
    granted = payload.get("v") or []
    refused = [var_id for var_id in var_ids if not any(glob_matches(grant, var_id) for grant in granted)]
    if refused:
        raise StreamRefused(f"the token does not grant {refused}")


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
    """Raise StreamRefused unless the session's user may watch ``var_ids``."""
    if not user.is_authenticated:
        raise StreamRefused("not logged in: open the stream with the site's session, or pass a token")
    if not authorizer()(user, var_ids):
        raise StreamRefused(f"user {user.get_username()!r} may not watch {var_ids}")
