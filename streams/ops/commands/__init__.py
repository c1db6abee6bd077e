"""Each area's command handlers: processes, verbs, models, data (``streams.ops.cli`` binds
them to their names)."""
