import json

from bastion.proxy.errors import error_response


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
