"""Command handlers, one module per command family.

The write path, top to bottom: the HTTP adapter (``commands.http``) turns a request into
a command (``commands.messages``); ``commands.application.Books`` submits the command's
handler to the next group (``commands.group_commit``); the handler reads and changes
aggregates through the group's ``Writer`` (``handlers.context``), whose unit of work
(``commands.unit_of_work``) collects every accepted command's events; the group is saved
once, and each command answered (``commands.answers``).

Handlers hold no state of their own and never import ``Books``: everything they use
comes through the ``Writer`` they are given. The ledger's rules live in ``ledger``.
"""
