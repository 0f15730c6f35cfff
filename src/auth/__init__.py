"""The trust boundary: API keys, how a request presents one, and what each key may do."""
