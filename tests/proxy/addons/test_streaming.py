"""ResponseStream: SSE passes through as it arrives and is read on the side for usage; JSON answers are
read for usage too; what cannot be read is passed on, never broken."""

import pytest
from mitmproxy import http

from bastion.proxy.state import state
from factories.addons import call_flow, feed, response_stream, run
from factories.toolcalls import sse

CHUNKS = [
    {"id": "c1", "model": "scripted-small", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
    {"id": "c1", "model": "scripted-small", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "c1", "model": "scripted-small", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
]
STREAM = sse(*CHUNKS) + b"data: [DONE]\n\n"


def answered(content_type: str, body: bytes = b"") -> http.HTTPFlow:
    f = call_flow()
    f.response = http.Response.make(200, body, {"content-type": content_type})
    return f


@pytest.mark.parametrize("size", [1, 7, None])
def test_streamed_events_pass_unchanged_and_yield_usage(size: int | None) -> None:
    f = run(response_stream(), answered("text/event-stream; charset=utf-8"), "responseheaders")
    assert feed(f, STREAM, size) == STREAM
    run(response_stream(), f, "response")
    usage = state(f).usage
    assert (usage.response_model, usage.response_id) == ("scripted-small", "c1")
    assert (usage.input_tokens, usage.output_tokens, usage.finish_reasons) == (5, 7, ["stop"])


def test_an_unreadable_event_passes_on_and_later_ones_are_still_read() -> None:
    stream = b"data: {not json\n\n" + sse(CHUNKS[2])
    f = run(response_stream(), answered("text/event-stream"), "responseheaders")
    assert feed(f, stream) == stream and state(f).usage.output_tokens == 7


def test_json_answers_are_read_for_usage() -> None:
    body = b'{"id": "c2", "model": "scripted-small", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    f = run(response_stream(), answered("application/json", body), "responseheaders", "response")
    assert f.response is not None and f.response.stream is False
    assert (state(f).usage.input_tokens, state(f).usage.output_tokens) == (3, 4)
    assert f.response.content == body


@pytest.mark.parametrize(("content_type", "body"), [("application/json", b"{broken"), ("text/plain", b'{"usage": 1}')])
def test_other_answers_pass_unread(content_type: str, body: bytes) -> None:
    f = run(response_stream(), answered(content_type, body), "responseheaders", "response")
    assert f.response is not None and f.response.content == body and state(f).usage.response_id is None
