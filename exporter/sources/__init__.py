"""Sources read one system and return an immutable snapshot (exporter.models)."""
