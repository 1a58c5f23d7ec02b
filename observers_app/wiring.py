"""The hub's Celery wiring: its task names, its own queues, the routes of its own tasks, its beat entry."""

DISPATCH_TASK = "observers.dispatch"
DELIVER_TASK = "observers.deliver"
SWEEP_TASK = "observers.sweep"
