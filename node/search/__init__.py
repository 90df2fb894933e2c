"""The search path's pure parts: which replica's answer a result comes from, and what each copy must be told."""
