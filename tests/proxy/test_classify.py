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
    call, fmt = classify(provider, method, "h", path, {"model": "m", "stream": True})
    assert (fmt is not None) == (kind == "model")
    assert (call.kind, call.operation, call.policy_object, call.policy_action) == (kind, operation, obj, act)


def test_model_calls_are_named_after_operation_and_model() -> None:
    call, fmt = classify("openai", "POST", "h", "/v1/chat/completions", {"model": "m", "stream": True})
    assert fmt is not None and fmt.name == call.endpoint == "chat.completions"
    assert call.span_name == "chat m" and call.stream and call.model == "m"


@pytest.mark.parametrize(
    ("host", "port", "obj"),
    [
        ("api.example.com", 443, "http:api.example.com/items/1"),
        ("api.example.com", 80, "http:api.example.com/items/1"),
        ("127.0.0.1", 9200, "http:127.0.0.1:9200/items/1"),
        ("api.example.com", 8443, "http:api.example.com:8443/items/1"),
        ("::1", 8080, "http:[::1]:8080/items/1"),
    ],
)
def test_http_objects_carry_the_port_unless_it_is_80_or_443(host: str, port: int, obj: str) -> None:
    assert classify("http", "GET", host, "/items/1?x=1", None, port)[0].policy_object == obj


@pytest.mark.parametrize("body", [None, [1, 2], "text", 3])
def test_a_model_endpoint_without_its_body_is_no_plain_http_call(body: object) -> None:
    with pytest.raises(ValueError, match="was not read as a JSON object"):
        classify("openai", "POST", "h", "/v1/chat/completions", body)
