"""The Embedding message built from a vector's bytes equals the one built from floats."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from llm_manager.v1 import llm_manager_pb2 as pb

from llm_sidecar.transport.convert import embedding_msg

float32s = st.floats(width=32, allow_nan=False)


@given(st.lists(float32s, min_size=1, max_size=300), st.booleans())
def test_embedding_from_bytes_is_the_message_from_floats(values: list[float], cached: bool) -> None:
    vector = struct.pack(f"<{len(values)}f", *values)
    built = pb.Embedding(vector=values, cached=cached)
    assert embedding_msg(vector, cached) == built
    assert embedding_msg(vector, cached).SerializeToString() == built.SerializeToString()
