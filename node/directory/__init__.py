"""Room aliases and the published room directory.

Spec: content/client-server-api/_index.md "Room aliases" (api/client-server/
directory.yaml) and "Published room directory" (list_public_rooms.yaml); the
``room_alias_name`` and ``visibility`` of create_room.yaml.
"""
