"""Live watchers over HTTP: Server-Sent Events streams fed by one observer per watched name per process."""
