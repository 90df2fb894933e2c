"""Compact in-memory stores of a node's data: tweets as columns and byte buffers, not one object per tweet."""
