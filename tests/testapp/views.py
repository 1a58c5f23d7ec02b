"""Async views the tests call under a real ASGI server (uvicorn): each uses the hub's async twins.

CSRF-exempt because the tests POST plain JSON without a token; test-only, never a pattern for a host.
"""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from observers_app import manager

from .callbacks import record


@csrf_exempt
async def observe(request: HttpRequest) -> JsonResponse:
    """POST ``{"var_id"}``: add ``record`` as an observer; answers its ref and the variable's count."""
    var_id = json.loads(request.body)["var_id"]
    ref = await manager.aadd_observer(var_id, record)
    return JsonResponse({"ref": str(ref), "observer_count": await manager.aobserver_count(var_id)})


@csrf_exempt
async def notify(request: HttpRequest) -> JsonResponse:
    """POST ``{"var_id", "values", "ordered"}``: notify each value in turn (the first from None);
    answers the notification ids."""
    body = json.loads(request.body)
    var_id, ordered = body["var_id"], body.get("ordered", False)
    notification_ids = []
    old_value = None
    for new_value in body["values"]:
        metadata = {"via": "async view"}
        notification_ids.append(
            await manager.anotify_observers(var_id, old_value, new_value, metadata, ordered=ordered)
        )
        old_value = new_value
    return JsonResponse({"notification_ids": notification_ids})


async def ping(request: HttpRequest) -> JsonResponse:
    """Answers at once, on the event loop: it answers only while the loop is free."""
    return JsonResponse({"pong": True})
