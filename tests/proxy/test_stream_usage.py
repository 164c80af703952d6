"""Asking a streamed chat completion for usage, and hiding the usage chunk from an agent that did not ask."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion.proxy.stream_usage import ask_for_usage, without_usage_chunk


@pytest.mark.parametrize(
    ("body", "asked"),
    [
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        (
            {"stream": True, "stream_options": {"include_obfuscation": False}},
            {"stream": True, "stream_options": {"include_obfuscation": False, "include_usage": True}},
        ),
        (
            {"stream": True, "stream_options": {"include_usage": False}},
            {"stream": True, "stream_options": {"include_usage": True}},
        ),
        ({"stream": True, "stream_options": {"include_usage": True}}, None),
        ({"stream": False}, None),
        ({}, None),
        ([1], None),
    ],
)
def test_ask_for_usage(body: Any, asked: dict[str, Any] | None) -> None:
    assert ask_for_usage(body) == asked


def sse(data: Any) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"


CHUNKS = [
    sse({"choices": [{"delta": {"content": "Hi"}}], "usage": None}),
    sse({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}),
    sse(b"[DONE]"),
]


@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_the_usage_chunk_is_removed_however_the_bytes_arrive(cut: int) -> None:
    stream = b"".join(CHUNKS)
    seen: list[bytes] = []

    def inner(chunk: bytes) -> bytes:
        seen.append(chunk)
        return chunk

    callback = without_usage_chunk(inner)
    out = [callback(stream[i : i + cut]) for i in range(0, len(stream), cut)] + [callback(b"")]
    assert b"".join(seen) == stream  # what reads usage before it still sees every byte
    assert all(part != [b""] for part in out)  # never an empty chunk: it would end the response
    assert b"".join(b"".join(part) for part in out) == CHUNKS[0] + CHUNKS[2]
