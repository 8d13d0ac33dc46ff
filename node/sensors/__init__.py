"""Headless sensor publishing: readings from configured sources become room events.

Sources (``[[sensors.source]]`` in config.toml, node/config.py) are read at their
interval: a command's output, a file (``/sys/class/thermal/thermal_zone0/temp``), or
a Python entry point in the group ``croft.sensors`` (readers.py). Each reading is
first stored in the durable queue (queue.py, table ``sensor_queue``), then the
publisher (publisher.py) sends queued rows as events of the node's owner, in batches
and rate-limited per room (ratelimit.py). Events leave through the normal federation
sender, whose per-server queues are durable, so readings taken while peers are
offline reach them when they return. service.py ties it together (SensorService).

The event (Croft's own namespace, per the spec's "Events" naming rule that custom
types use reverse-DNS names): type ``io.croft.sensor.reading`` unless a source names
another type under ``io.croft.sensor.``; content::

    {
      "sensor_id": "cpu-temp",       # the source's id from config.toml
      "value": "42.125",             # the reading, a decimal number as a string
      "unit": "°C",                  # the source's unit ("" when none is configured)
      "ts": 1719830400123,           # when it was read, ms since the Unix epoch
      "seq": 17                      # per source: 1, 2, 3 ... (a gap: readings dropped)
    }

``value`` is a string because room versions 6 and later allow only integers in
event JSON (spec appendices, "Canonical JSON"; rooms/fragments/v6-canonical-json.md):
a float would be refused with M_BAD_JSON. The string is exact (``Decimal``), has no
exponent, and ``float(value)`` or ``Decimal(value)`` reads it back. See content.py.

This package is imported only when the node needs it (node/app.py): with
``features.sensors`` on, or with events queued by ``croft publish``.
"""
