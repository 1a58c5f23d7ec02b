"""Open streams checked again (every OBSERVERS_STREAM_REAUTHORIZE_INTERVAL): a session's user still
logged in, active and authorized; a token unexpired and not revoked."""

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from ..exceptions import StreamRefused
from . import access, revocation
from .access import Grant

LOGGED_OUT = "logged out: open the stream again after logging in"


def recheck(streams: list[tuple[Grant, list[str]]]) -> list[str | None]:
    """For each open stream, None if it may go on, else why it must close. One session read per
    session, one query for every token's revocation."""
    users: dict[str, Any] = {}
    revoked = revocation.revoked([grant for grant, _ in streams])
    reasons: list[str | None] = []
    for grant, var_ids in streams:
        try:
            if grant.token_id is None:  # the request's user: by its session where it had one
                key = grant.session_key or f"user:{grant.user_id}"
                if key not in users:
                    users[key] = _user(grant)
                user = users[key]
                if not user.is_authenticated or str(user.pk) != grant.user_id:
                    raise StreamRefused(LOGGED_OUT)
                access.check_user(user, var_ids)
            if grant.expires_at is not None and time.time() > grant.expires_at:
                raise StreamRefused(access.TOKEN_EXPIRED)
            if grant in revoked:
                raise StreamRefused(revocation.REVOKED)
        except StreamRefused as exc:
            reasons.append(f"no longer authorized: {exc}")
        else:
            reasons.append(None)
    return reasons


def _user(grant: Grant) -> Any:
    """The stream's user now: its session's (logged out: anonymous), or, for a user authenticated
    without a session, the user row (deleted: anonymous)."""
    if grant.session_key is not None:
        return access.session_user(grant.session_key)
    if grant.user_id is None:
        return AnonymousUser()
    user = get_user_model()._default_manager.filter(pk=grant.user_id).first()
    return user if user is not None else AnonymousUser()
