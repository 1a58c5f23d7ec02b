"""Revoked stream tokens: a token, or every token issued for a user until now. Stored in the database,
so every web process sees it: at a stream's open, and at its next check while it is open."""

import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .. import aio
from ..exceptions import InvalidArgument, StreamRefused
from ..models import RevokedToken
from . import access

# Expired token revocations deleted per revoke call (they are kept until then, a bounded batch each).
PRUNE_BATCH = 1000
REVOKED = "the token was revoked; ask the site for a new one"


def revoke_tokens(user: Any = None, *, token: str | None = None) -> None:
    """Revoke every stream token issued for ``user`` (``issue_token(..., user=)``) until now, or one
    ``token``; their open streams close at their next check (OBSERVERS_STREAM_REAUTHORIZE_INTERVAL)."""
    if (user is None) == (token is None):
        raise InvalidArgument("revoke_tokens takes a user or token=, exactly one")
    now = timezone.now()
    if user is not None:
        RevokedToken.objects.update_or_create(user_id=str(user.pk), defaults={"revoked_at": now})
    else:
        assert token is not None
        grant = access.read_token(token)
        expires = datetime.datetime.fromtimestamp(grant.expires_at or 0, tz=datetime.UTC)
        RevokedToken.objects.update_or_create(
            token_id=grant.token_id, defaults={"revoked_at": now, "expires_at": expires}
        )
    expired = RevokedToken.objects.filter(expires_at__lt=now).values_list("pk", flat=True)[:PRUNE_BATCH]
    RevokedToken.objects.filter(pk__in=list(expired)).delete()


arevoke_tokens = aio.async_twin(revoke_tokens)


def revoked(grants: list[access.Grant]) -> set[access.Grant]:
    """Which of the token ``grants`` are revoked, in one query."""
    tokens = [g for g in grants if g.token_id is not None]
    if not tokens:
        return set()
    token_ids = {g.token_id for g in tokens}
    user_ids = {g.user_id for g in tokens if g.user_id is not None}
    rows = RevokedToken.objects.filter(Q(token_id__in=token_ids) | Q(user_id__in=user_ids))
    by_token, by_user = set(), {}
    for token_id, user_id, revoked_at in rows.values_list("token_id", "user_id", "revoked_at"):
        if token_id is not None:
            by_token.add(token_id)
        else:
            by_user[user_id] = revoked_at.timestamp()
    return {
        g
        for g in tokens
        if g.token_id in by_token
        or (g.user_id in by_user and (g.issued_at is None or g.issued_at <= by_user[g.user_id]))
    }


def refuse_revoked(grant: access.Grant) -> access.Grant:
    """``grant``, unless its token was revoked (StreamRefused)."""
    if revoked([grant]):
        raise StreamRefused(REVOKED)
    return grant
