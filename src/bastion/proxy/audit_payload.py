"""What of a call's content may be stored for audit (approval context, exported records).

Everything that leaves the proxy towards the store passes through :func:`audit_payload`, so the
store never holds raw personal data once redaction is configured.
"""

from __future__ import annotations

from typing import Any


def audit_payload(value: Any) -> Any:
    """The value as it may be stored. Until PII redaction lands, values pass unchanged."""
    return value
