"""Scraping Redis: connections, commands, and their translation into redis_exporter's metrics."""
