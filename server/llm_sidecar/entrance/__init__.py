"""The one entrance every wire goes through: who the caller is (token, user context),
which call this is (request id, server span), and what is written when it ends (span
status, duration metric, access line). Wire-neutral: gRPC (``transport/``) and HTTP
(``http_api/``) hand it what they read, and keep only their own I/O and status tables.
"""

from llm_sidecar.entrance.incoming import Incoming, read_incoming
from llm_sidecar.entrance.listen import ListenError
from llm_sidecar.entrance.request_ids import new_request_id, request_id_of
from llm_sidecar.entrance.scope import CallScope, Entrance

__all__ = [
    "CallScope",
    "Entrance",
    "Incoming",
    "ListenError",
    "new_request_id",
    "read_incoming",
    "request_id_of",
]
