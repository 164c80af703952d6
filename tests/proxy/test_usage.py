import json

import pytest

from bastion.proxy.usage import Usage


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        (  # OpenAI chat completion
            [
                {
                    "id": "c1",
                    "model": "m",
                    "choices": [{"finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 5},
                }
            ],
            ("m", 3, 5, ["stop"]),
        ),
        (  # Anthropic stream: message_start, then message_delta
            [
                {
                    "type": "message_start",
                    "message": {
                        "id": "m1",
                        "model": "claude",
                        "usage": {"input_tokens": 7, "output_tokens": 1},
                    },
                },
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 9},
                },
            ],
            ("claude", 7, 9, ["end_turn"]),
        ),
        (  # Responses API completed event
            [
                {
                    "type": "response.completed",
                    "response": {"id": "r", "model": "m", "usage": {"input_tokens": 2, "output_tokens": 4}},
                }
            ],
            ("m", 2, 4, []),
        ),
    ],
)
def test_usage_from_each_api(bodies: list[dict[str, object]], expected: tuple[object, ...]) -> None:
    usage = Usage()
    for body in bodies:
        usage.update_from_event_data(json.dumps(body))
    usage.update_from_event_data("[DONE]")
    assert (usage.response_model, usage.input_tokens, usage.output_tokens, usage.finish_reasons) == expected


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        (  # OpenAI chat: cached tokens are part of prompt_tokens
            [{"usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 60}}}],
            (100, 60, None),
        ),
        (  # Responses API
            [{"usage": {"input_tokens": 50, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 0}}}],
            (50, 0, None),
        ),
        (  # Anthropic: reads and writes are counted apart from input_tokens; Bastion adds them in
            [
                {
                    "type": "message_start",
                    "message": {
                        "usage": {"input_tokens": 10, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 40}
                    },
                },
                {"type": "message_delta", "usage": {"output_tokens": 9}},
            ],
            (350, 300, 40),
        ),
    ],
)
def test_cached_input_tokens(bodies: list[dict[str, object]], expected: tuple[object, ...]) -> None:
    usage = Usage()
    for body in bodies:
        usage.update_from_event_data(json.dumps(body))
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_creation_tokens) == expected
