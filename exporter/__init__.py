"""imaging-exporter: warns before a cloud server image or backup fails."""

__version__ = "0.1.0"
