"""What a worker does with a message: batches of dispatch messages (batching), numbering and
paging a notification (dispatch), one page of observers (delivery, pages), their callbacks isolated
(calls), latest-value-wins observers (coalescing), and messages that never finish (poison).
"""
