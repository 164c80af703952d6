"""Every span attribute name Bastion writes or reads, in one place.

Standard names come from the OpenTelemetry semantic conventions package; Bastion's own
governance names live under the ``bastion.`` prefix.
"""

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import jsonrpc_attributes as jsonrpc
from opentelemetry.semconv._incubating.attributes import mcp_attributes as mcp
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
)

SERVICE_NAME_PROXY: Final = "bastion-proxy"

# OpenTelemetry GenAI semantic conventions.
GEN_AI_OPERATION_NAME: Final = gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_STREAM: Final = gen_ai.GEN_AI_REQUEST_STREAM
GEN_AI_RESPONSE_MODEL: Final = gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID: Final = gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS: Final = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_USAGE_INPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
# Of the input tokens: read from the provider's prompt cache, and written to it.
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
GEN_AI_AGENT_ID: Final = gen_ai.GEN_AI_AGENT_ID
GEN_AI_TOOL_NAME: Final = gen_ai.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID: Final = gen_ai.GEN_AI_TOOL_CALL_ID

# MCP and JSON-RPC conventions.
MCP_METHOD_NAME: Final = mcp.MCP_METHOD_NAME
MCP_SESSION_ID: Final = mcp.MCP_SESSION_ID
MCP_PROTOCOL_VERSION: Final = mcp.MCP_PROTOCOL_VERSION
JSONRPC_REQUEST_ID: Final = jsonrpc.JSONRPC_REQUEST_ID

# GenAI security conventions (development status in the GenAI SIG; not yet in the package).
GEN_AI_SECURITY_DECISION_TYPE: Final = "gen_ai.security.decision.type"
GEN_AI_SECURITY_DECISION_REASON: Final = "gen_ai.security.decision.reason"
GEN_AI_SECURITY_TARGET_TYPE: Final = "gen_ai.security.target.type"
GEN_AI_SECURITY_TARGET_ID: Final = "gen_ai.security.target.id"
GEN_AI_SECURITY_POLICY_ID: Final = "gen_ai.security.policy.id"
GEN_AI_SECURITY_POLICY_NAME: Final = "gen_ai.security.policy.name"
GEN_AI_SECURITY_POLICY_VERSION: Final = "gen_ai.security.policy.version"

# HTTP, URL and error conventions.
HTTP_REQUEST_METHOD: Final = http_attributes.HTTP_REQUEST_METHOD
HTTP_RESPONSE_STATUS_CODE: Final = http_attributes.HTTP_RESPONSE_STATUS_CODE
URL_PATH: Final = url_attributes.URL_PATH
SERVER_ADDRESS: Final = server_attributes.SERVER_ADDRESS
SERVER_PORT: Final = server_attributes.SERVER_PORT
# The address Bastion checked and connected to for a tunnel (a DNS name is resolved once and pinned).
NETWORK_PEER_ADDRESS: Final = network_attributes.NETWORK_PEER_ADDRESS
ERROR_TYPE: Final = error_attributes.ERROR_TYPE

# Bastion's governance attributes.
BASTION_PREFIX: Final = "bastion."
# Where a stored span came from: absent for Bastion's own; "agent" for spans an agent exported itself
# (stored without any bastion.* attribute it sent, never read as a decision).
BASTION_SOURCE: Final = "bastion.source"
SOURCE_AGENT: Final = "agent"
BASTION_AGENT_ID: Final = "bastion.agent.id"
BASTION_AGENT_ROLE: Final = "bastion.agent.role"
# The id of the Bastion key the agent presented (as `bastion keys list` shows it; never the key).
BASTION_AGENT_KEY_ID: Final = "bastion.agent.key_id"
BASTION_CALL_KIND: Final = "bastion.call.kind"
BASTION_ROUTE: Final = "bastion.route"
BASTION_DECISION: Final = "bastion.decision"
BASTION_POLICY_RULE: Final = "bastion.policy.rule"
BASTION_POLICY_VERSION: Final = "bastion.policy.version"
# Set when a shadow-mode rule would have denied or held the call that was allowed.
BASTION_SHADOW_DECISION: Final = "bastion.shadow.decision"
BASTION_SHADOW_RULE: Final = "bastion.shadow.rule"
BASTION_MCP_SERVER: Final = "bastion.mcp.server"
# Names of the tools removed from a model request's tool list because the agent may not call them.
BASTION_TOOLS_HIDDEN: Final = "bastion.tools.hidden"
# A decided tool call's arguments as stored (JSON, redacted like everything stored for audit), where
# they came from (JSON: argument -> {source, untrusted, tools}, or {"unknown": true}), the arguments
# whose values came only from untrusted tool results (list), and the session's earlier calls (JSON:
# [[object, arguments], ...], the last 50). `bastion policy replay` decides again from these.
BASTION_TOOL_ARGUMENTS: Final = "bastion.tool.arguments"
# The policy object and action a tool call was decided as (tool:<server>/<name> or tool:<name>; call).
BASTION_POLICY_OBJECT: Final = "bastion.policy.object"
BASTION_POLICY_ACTION: Final = "bastion.policy.action"
BASTION_PROVENANCE: Final = "bastion.provenance"
BASTION_PROVENANCE_UNTRUSTED: Final = "bastion.provenance.untrusted"
BASTION_SESSION_CALLS: Final = "bastion.session.calls"
# Alerts: events people should look at, such as a rejected policy edit.
BASTION_ALERT_TYPE: Final = "bastion.alert.type"
BASTION_ALERT_MESSAGE: Final = "bastion.alert.message"
ALERT_POLICY_REJECTED: Final = "policy_rejected"
# An edit of the agents' keys file that does not load (the keys loaded before keep serving).
ALERT_KEYS_REJECTED: Final = "keys_rejected"
# A runaway-agent breaker tripped (step budget, repetition, error streak): the call's span carries it.
ALERT_RUNAWAY_AGENT: Final = "runaway_agent"
# An upstream failed too often in a row: its circuit opened (the span of the call that opened it).
ALERT_UPSTREAM_CIRCUIT_OPEN: Final = "upstream_circuit_open"

# Budgets (bastion.yaml `budgets:`): a subject's spend passed the soft threshold, or the limit.
ALERT_BUDGET_SOFT: Final = "budget_soft"
ALERT_BUDGET_EXCEEDED: Final = "budget_exceeded"
BASTION_BUDGET_NAME: Final = "bastion.budget.name"
BASTION_BUDGET_SUBJECT: Final = "bastion.budget.subject"

# Cost: what a model call cost in US dollars (a float), from the price table (proxy/cost.py)
# and the usage the provider reported; absent when the model has no price.
BASTION_COST_USD: Final = "bastion.cost.usd"

# Values of gen_ai.operation.name that Bastion uses.
OPERATION_CHAT: Final = "chat"
OPERATION_EMBEDDINGS: Final = "embeddings"
OPERATION_HTTP: Final = "http"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"
# A guardrail's check: here the policy decision on a tool call a model emitted. GenAI security
# conventions draft: span "apply_guardrail {gen_ai.security.target.type}", a child of the call.
OPERATION_APPLY_GUARDRAIL: Final = "apply_guardrail"

# Values of gen_ai.provider.name for the model APIs Bastion reads (proxy/formats/).
PROVIDER_OPENAI: Final = gen_ai.GenAiProviderNameValues.OPENAI.value
PROVIDER_ANTHROPIC: Final = gen_ai.GenAiProviderNameValues.ANTHROPIC.value
PROVIDER_GCP_GEMINI: Final = gen_ai.GenAiProviderNameValues.GCP_GEMINI.value

# Values of bastion.call.kind.
KIND_MODEL: Final = "model"
KIND_HTTP: Final = "http"
KIND_MCP: Final = "mcp"
KIND_TOOL: Final = "tool"  # a tool call the model emitted, decided before the agent sees it
KIND_CONNECT: Final = "connect"  # a CONNECT on the explicit proxy: whether a tunnel opens
KIND_TCP: Final = "tcp"  # what is not HTTP inside a tunnel: raw TCP, allowed only by a tcp: rule

# Raw TCP through a tunnel: bytes relayed in each direction (ints).
BASTION_TCP_BYTES_FROM_CLIENT: Final = "bastion.tcp.bytes.from_client"
BASTION_TCP_BYTES_FROM_SERVER: Final = "bastion.tcp.bytes.from_server"

# Values of gen_ai.security.target.type.
TARGET_LLM_INPUT: Final = "llm_input"
TARGET_TOOL_CALL: Final = "tool_call"
TARGET_TOOL_DEFINITION: Final = "tool_definition"

# Approvals: a call held for a human, and how it ended.
BASTION_APPROVAL_ID: Final = "bastion.approval.id"
# approved | denied | timeout | abandoned | unavailable
BASTION_APPROVAL_STATUS: Final = "bastion.approval.status"
BASTION_APPROVAL_APPROVER: Final = "bastion.approval.approver"
BASTION_APPROVAL_REASON: Final = "bastion.approval.reason"
# Set when an earlier approval's scope let this call through without a new one.
BASTION_APPROVAL_GRANT: Final = "bastion.approval.grant"
# Interventions: guidance a human wrote, injected into this model call.
BASTION_GUIDANCE_ID: Final = "bastion.guidance.id"
BASTION_GUIDANCE_TEXT: Final = "bastion.guidance.text"

# The audit hash chain (bastion.audit_chain): a decision record's canonical JSON with its chain
# position, hash and signature; the periodic chain head and the anchor a restarted proxy records
# ({"instance", "seq", "hash", "signature"}); and the proxy's public key ({"instance",
# "public_key", "signature"}), recorded at start (bastion.audit_keys).
BASTION_AUDIT_RECORD: Final = "bastion.audit.record"
BASTION_AUDIT_SEQ: Final = "bastion.audit.seq"
BASTION_AUDIT_HASH: Final = "bastion.audit.hash"
BASTION_AUDIT_HEAD: Final = "bastion.audit.head"
BASTION_AUDIT_ANCHOR: Final = "bastion.audit.anchor"
BASTION_AUDIT_KEY: Final = "bastion.audit.key"

# PII redaction: counts by entity type per direction, as "bastion.pii.<direction>.<TYPE>" (ints),
# never values; whether a failed analysis let the call pass (a route configured to fail open).
BASTION_PII_PREFIX: Final = "bastion.pii"
BASTION_PII_FAILED_OPEN: Final = "bastion.pii.failed_open"
BASTION_PII_ERROR: Final = "bastion.pii.error"
