"""The Matrix event format: canonical JSON, hashes, event IDs, redaction and signatures.

Spec: content/appendices.md "Signing JSON" and "Cryptographic Test Vectors";
content/server-server-api.md "Signing Events"; the redaction and event-format fragments
under content/rooms/fragments/. See each module's docstring for the exact sections.
"""

from node.events.canonical import (
    InvalidJson,
    check_canonical_values,
    encode_canonical_json,
    parse_canonical_json,
    parse_json,
)
from node.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    decode_base64,
    encode_base64,
    room_id_from_create_event_id,
)
from node.events.redaction import redact, redact_for_client
from node.events.signing import (
    SignatureError,
    SigningKey,
    VerifyKey,
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    format_signing_keys,
    generate_signing_key,
    get_verify_key,
    parse_signing_keys,
    read_signing_key_file,
    servers_that_must_sign,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json,
    verify_key_id,
    write_signing_key_file,
)

__all__ = [
    "InvalidJson",
    "SignatureError",
    "SigningKey",
    "VerifyKey",
    "add_content_hash",
    "check_canonical_values",
    "check_content_hash",
    "compute_content_hash",
    "compute_event_id",
    "compute_reference_hash",
    "decode_base64",
    "decode_signing_key_base64",
    "decode_verify_key_base64",
    "encode_base64",
    "encode_canonical_json",
    "encode_signing_key_base64",
    "encode_verify_key_base64",
    "format_signing_keys",
    "generate_signing_key",
    "get_verify_key",
    "parse_canonical_json",
    "parse_json",
    "parse_signing_keys",
    "read_signing_key_file",
    "redact",
    "redact_for_client",
    "room_id_from_create_event_id",
    "servers_that_must_sign",
    "sign_event",
    "sign_json",
    "verify_event_signature",
    "verify_json",
    "verify_key_id",
    "write_signing_key_file",
]
