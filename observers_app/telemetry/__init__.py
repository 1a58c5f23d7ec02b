"""What the hub shows of itself: its counters (each with one label and help text), the figures
of get_stats, the admin's dashboard, and Prometheus metrics.
"""
