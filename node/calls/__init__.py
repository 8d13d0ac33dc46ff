"""Voice and video calls: the Matrix 1:1 VoIP module (m.call.*), version "1".

Spec: content/client-server-api/modules/voip_events.md ("Voice over IP").

- :mod:`node.calls.events`: builders and strict parsers for the content of every
  ``m.call.*`` event ("Events", "Common Fields").
- :mod:`node.calls.signalling`: :class:`~node.calls.signalling.CallSession`, one call
  from one side as a pure state machine ("Client behaviour", "Call Event Liveness").
- :mod:`node.calls.router`: :class:`~node.calls.router.CallRouter`, the calls of one
  user across rooms ("Glare").
- :mod:`node.calls.media`, :mod:`node.calls.audio`, :mod:`node.calls.video`: the media
  on aiortc (a peer connection per call, tones, files, analysis, the half-block video).
- :mod:`node.calls.client`: the few client-server API calls a headless call needs.

The pure modules import neither aiortc nor av: the media side is imported only when a
call starts, never by `croft run`.
"""
