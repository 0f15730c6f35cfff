"""What the services agree on: the event contract (CloudEvents types, their encoding and
schemas, how a consumer reads a message it cannot trust) and the read model's schema.

It sits below every service and above the domain: the relay and the auditors encode
with it, the projector and the chain worker decode with it, the projector and the query
API meet in its collection names. It does no I/O of its own beyond what a caller hands it.
"""
