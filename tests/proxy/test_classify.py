import pytest

from bastion.proxy.classify import classify


@pytest.mark.parametrize(
    ("provider", "method", "path", "kind", "operation", "obj", "act"),
    [
        ("openai", "POST", "/v1/chat/completions", "model", "chat", "model:m", "chat"),
        ("openai", "POST", "/v1/responses", "model", "chat", "model:m", "chat"),
        ("openai", "POST", "/v1/embeddings", "model", "embeddings", "model:m", "embeddings"),
        ("anthropic", "POST", "/v1/messages", "model", "chat", "model:m", "chat"),
        ("anthropic", "POST", "/v1/chat/completions", "http", "http", "http:h/v1/chat/completions", "POST"),
        ("openai", "GET", "/v1/models", "http", "http", "http:h/v1/models", "GET"),
        ("http", "DELETE", "/items/1?x=1", "http", "http", "http:h/items/1", "DELETE"),
    ],
)
def test_classify(provider: str, method: str, path: str, kind: str, operation: str, obj: str, act: str) -> None:
    call = classify(provider, method, "h", path, {"model": "m", "stream": True})
    assert (call.kind, call.operation, call.policy_object, call.policy_action) == (kind, operation, obj, act)


def test_model_calls_are_named_after_operation_and_model() -> None:
    call = classify("openai", "POST", "h", "/v1/chat/completions", {"model": "m", "stream": True})
    assert call.span_name == "chat m" and call.stream and call.model == "m"


@pytest.mark.parametrize("body", [None, [1, 2], "text", 3])
def test_a_model_endpoint_without_its_body_is_no_plain_http_call(body: object) -> None:
    with pytest.raises(ValueError, match="was not read as a JSON object"):
        classify("openai", "POST", "h", "/v1/chat/completions", body)
