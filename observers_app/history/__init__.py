"""What did a variable do? Its notifications, numbered, kept for a while (see docs/streams.md#resuming)."""
