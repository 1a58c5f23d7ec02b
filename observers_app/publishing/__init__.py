"""From notify_observers to the broker: whether a name is observed, the in-process send buffer,
the durable outbox table, confirmed publishing, sequence numbers, and the bounded dispatch queue.
"""
