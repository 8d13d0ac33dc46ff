"""Ephemeral data: typing notifications, receipts and read markers, presence.

Spec: content/client-server-api/modules/typing_notifications.md, receipts.md,
read_markers.md and presence.md. Each has a service here (typing and presence kept in
memory, receipts in the ``receipts`` table); :mod:`node.ephemeral.sync` puts all three
into /sync (each joined room's ``ephemeral.events``, the top-level ``presence.events``).
"""
