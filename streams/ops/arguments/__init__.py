"""Each area's command-line arguments: processes, verbs, models, data (``streams.ops.cli``
puts them together, ``streams.ops.parser`` has the options they share)."""
