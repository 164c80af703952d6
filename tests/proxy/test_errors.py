import json

from bastion.proxy.errors import error_response
from bastion.proxy.formats import gemini, openai_responses


def test_errors_follow_the_callers_api_format() -> None:
    openai = json.loads(error_response("openai", 403, "no", "policy_denied").content or b"")
    anthropic = json.loads(error_response("anthropic", 403, "no", "policy_denied").content or b"")
    assert openai["error"] == {
        "message": "no",
        "type": "permission_denied",
        "code": "policy_denied",
        "param": None,
    }
    assert anthropic == {
        "type": "error",
        "error": {"type": "permission_error", "message": "no", "code": "policy_denied"},
    }
    assert error_response("http", 404, "no", "unknown_route").headers["content-type"] == "application/json"


def test_a_calls_format_writes_its_error_and_gemini_speaks_google_rpc() -> None:
    by_provider = json.loads(error_response("gemini", 403, "no", "policy_denied").content or b"")
    by_format = json.loads(error_response(gemini.FORMAT, 403, "no", "policy_denied").content or b"")
    assert by_provider == by_format
    assert by_format["error"]["code"] == 403 and by_format["error"]["status"] == "PERMISSION_DENIED"
    responses = json.loads(error_response(openai_responses.FORMAT, 503, "down", "x").content or b"")
    assert responses["error"]["type"] == "service_unavailable"
