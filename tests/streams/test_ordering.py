"""A variable's changes put back in seq order in the web process (pure logic on an event loop)."""

import asyncio

from observers_app.streams.messages import StreamEvent
from observers_app.streams.ordering import GAP_WAIT_S, SeqOrder


def event(var_id: str, seq: int) -> StreamEvent:
    return StreamEvent(var_id=var_id, seq=seq, notification_id=f"{var_id}/{seq}", data={"var_id": var_id})


def test_changes_come_out_in_seq_order_and_a_gap_is_waited_for_then_skipped():
    async def scenario() -> list[tuple[str, int | None]]:
        emitted: list[StreamEvent] = []
        order = SeqOrder(emitted.append, asyncio.get_running_loop())
        order.start_from("a", 0)
        for seq in (2, 1, 3):
            order.push(event("a", seq))
        order.push(event("b", 7))  # no known position: passes
        order.push(event("a", 5))  # 4 is missing
        await asyncio.sleep(GAP_WAIT_S / 2)
        assert [e.seq for e in emitted] == [1, 2, 3, 7]
        await asyncio.sleep(GAP_WAIT_S)
        order.push(event("a", 4))  # late: passes, never lost
        order.close()
        return [(e.var_id, e.seq) for e in emitted]

    assert asyncio.run(scenario()) == [("a", 1), ("a", 2), ("a", 3), ("b", 7), ("a", 5), ("a", 4)]
