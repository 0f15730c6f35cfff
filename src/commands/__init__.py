"""The write side: command handlers over the event store, and the command HTTP app."""
