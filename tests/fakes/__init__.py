"""Fake cloud API servers on 127.0.0.1 that speak the providers' real wire format."""
