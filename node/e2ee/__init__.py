"""End-to-end encryption support: the server's part (keys, cross-signing, send-to-device,
key backups, and their /sync sections).

Spec: client-server-api/modules/end_to_end_encryption.md, send_to_device.md. The
server never sees plaintext: it stores and hands out public keys, signatures, opaque
to-device messages and encrypted backups. Modules: ``validate`` (pure checks of uploads),
``store`` / ``cross_signing_store`` / ``backup_store`` (tables), ``keys``,
``cross_signing``, ``to_device``, ``backup`` (services), ``sync`` (the /sync
extension) and ``service`` (assembly).
"""
