"""Cache keys: stable across processes, distinct for everything that changes an answer."""

from __future__ import annotations

import subprocess
import sys

from llm_sidecar.core.state.cache_keys import cache_key
from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams

BASE = {
    "user_id": "alice",
    "session_id": "s1",
    "thread_id": "t1",
    "model": "m",
    "params": GenerationParams(),
    "messages": [ChatMessage("user", "hello")],
}


def test_key_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the key must not be.
    code = (
        "from llm_sidecar.core.state.cache_keys import cache_key\n"
        "from llm_sidecar.core.vocabulary.models import ChatMessage, GenerationParams\n"
        "print(cache_key(user_id='alice', session_id='s1', thread_id='t1', model='m',"
        " params=GenerationParams(), messages=[ChatMessage('user', 'hello')]))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == cache_key(**BASE)


def test_every_input_changes_the_key() -> None:
    variants = [
        {"user_id": "bob"},
        {"session_id": "s2"},
        {"session_id": None},
        {"thread_id": "t2"},
        {"model": "other"},
        {"params": GenerationParams(temperature=0.5)},
        {"messages": [ChatMessage("user", "hello!")]},
        {"messages": [ChatMessage("system", "hello")]},
        {"json_schema": {"type": "object"}},
    ]
    keys = {cache_key(**{**BASE, **v}) for v in variants}
    keys.add(cache_key(**BASE))
    assert len(keys) == len(variants) + 1


def test_fields_cannot_run_into_each_other() -> None:
    # Length-prefixed fields: moving characters between ids changes the key.
    a = cache_key(**{**BASE, "user_id": "ab", "session_id": "c"})
    b = cache_key(**{**BASE, "user_id": "a", "session_id": "bc"})
    assert a != b
