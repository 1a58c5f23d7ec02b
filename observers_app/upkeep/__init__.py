"""The periodic sweep (sweep.py, the one list of everything it does) and pruning what nobody needs."""
