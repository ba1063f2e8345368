"""Patchbay's model side: engine, adapter loading, decoding, demo model.

Nothing here imports Django. The web tier maps its rows to the value objects in
`inference.types` and talks to an `Engine` (see docs/ARCHITECTURE.md, "Engine").
"""
