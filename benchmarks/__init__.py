"""Development-only harnesses for the hub: benchmarks, load, scale and soak runs, and the demo."""
