"""Example applications that use exporter.instrument."""
