"""The signed-in operator of this browser session: their token, their role, a client carrying it.

The token is asked once per browser session (the sidebar) and kept in Streamlit's session state; a
dashboard started with ``BASTION_TOKEN`` (as ``make demo`` does) signs every session in with it.
"""

from __future__ import annotations

import os

import streamlit as st

from bastion.dashboard.client import CollectorClient, CollectorError, Json

TOKEN = "operator_token"
_WHO = "operator"
# Each role includes the ones before it.
ROLES = ("viewer", "approver", "admin")


def token() -> str:
    return str(st.session_state.get(TOKEN) or os.environ.get("BASTION_TOKEN", "")).strip()


def client() -> CollectorClient:
    return CollectorClient(token=token() or None)


def operator() -> Json | None:
    """The signed-in operator (checked with the collector once per token), or ``None``."""
    current = token()
    if not current:
        return None
    known = st.session_state.get(_WHO)
    if isinstance(known, dict) and known.get("token_hash") == hash(current):
        return known
    try:
        found = client().whoami()
    except CollectorError:
        return None
    if found is not None:
        st.session_state[_WHO] = {**found, "token_hash": hash(current)}
    return found


def can(role: str) -> bool:
    """Whether the signed-in operator holds ``role`` (viewer, approver or admin)."""
    who = operator()
    return who is not None and who.get("role") in ROLES and ROLES.index(str(who["role"])) >= ROLES.index(role)


def sign_out() -> None:
    st.session_state.pop(_WHO, None)
    st.session_state[TOKEN] = ""


SIGN_IN = "Sign in with your operator token in the sidebar to see the audit trail, approvals and alerts."


def unreachable(url: str) -> str:
    return f"Cannot reach the collector at {url}. Start it, or point BASTION_COLLECTOR_URL at it."


def require() -> Json:
    """The signed-in operator; without one the page stops here, saying how to sign in. Every page
    calls it, so a page reached by its own URL shows nothing more than the app would."""
    who = operator()
    if who is None:
        collector = client()
        if not collector.health():
            st.error(unreachable(collector.base_url))
        else:
            st.info(SIGN_IN)
        st.stop()
    assert who is not None
    return who
