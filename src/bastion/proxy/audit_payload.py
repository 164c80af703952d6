"""What of a call's content may be stored for audit (approval context, exported records).

Everything that leaves the proxy towards the store passes through :func:`audit_payload`, so the
store never holds raw personal data once redaction is configured (``policies/pii.yaml``): every
string in the value has each configured entity type replaced by its label (``<EMAIL_ADDRESS>``),
whatever the type's action towards the provider. Without a PII configuration values pass unchanged.
"""

from __future__ import annotations

from typing import Any

from bastion.proxy.pii import audit


def audit_payload(value: Any) -> Any:
    """The value as it may be stored: a redacted copy (the input is not changed)."""
    return audit.redact(value)
