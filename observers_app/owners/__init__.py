"""How owners live and die: leases and their handles, the process owner (its lock or heartbeat),
and reaping the observers of the dead.

An owner is alive while not closed and its lease runs or its process holds its lock: the condition
is ``OwnerQuerySet.alive()`` in querysets.py, over the ``HeldLock`` view of PostgreSQL's locks.
"""
