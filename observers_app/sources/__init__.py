"""Where changes come from besides notify_observers: the session store and observed model fields."""
