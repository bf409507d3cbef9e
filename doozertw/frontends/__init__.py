"""Client protocols. Each module parses its frames, calls the shared Node,
and writes the answer; none holds state of the store."""
