"""Open streams checked again (every OBSERVERS_STREAM_REAUTHORIZE_INTERVAL): a session's user still
logged in, active and authorized; a token unexpired and not revoked."""

import time
from typing import Any

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
            if grant.session_key is not None:
                if grant.session_key not in users:
                    users[grant.session_key] = access.session_user(grant.session_key)
                user = users[grant.session_key]
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
