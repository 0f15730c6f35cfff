"""Shared infrastructure: settings, logging, metrics, HTTP helpers, Kafka plumbing and
migrations. It sits below the services and imports none of them."""
