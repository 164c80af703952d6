"""What agents spent: model calls' cost (``bastion.cost.usd``) and tokens summed per agent, role or key
and per day, week or month (UTC), by one ClickHouse aggregate over the stored spans.

Only Bastion's own spans count: spans agents export themselves are stored without ``bastion.*``
attributes (``otlp.agent_supplied``), so they carry no call kind and no agent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from bastion import semconv
from bastion.collector.store import Store
from bastion.collector.views import Json, iso_time

# by -> the span attribute that names the subject
SUBJECTS: Final = {
    "agent": semconv.BASTION_AGENT_ID,
    "role": semconv.BASTION_AGENT_ROLE,
    "key": semconv.BASTION_AGENT_KEY_ID,
}
# period -> the start of the period holding a span, in UTC (fixed SQL; never a value from a request)
_BUCKETS: Final = {
    "day": "toStartOfDay(Timestamp, 'UTC')",
    "week": "toDateTime(toStartOfWeek(Timestamp, 1, 'UTC'), 'UTC')",
    "month": "toDateTime(toStartOfMonth(Timestamp, 'UTC'), 'UTC')",
}
MAX_ROWS: Final = 10_000

_SPEND: Final = """\
SELECT toUnixTimestamp({bucket}) AS start,
    SpanAttributes[{{subject_key:String}}] AS subject,
    sum(toFloat64OrZero(SpanAttributes[{{cost_key:String}}])) AS usd,
    sum(toUInt64OrZero(SpanAttributes[{{input_key:String}}])) AS input_tokens,
    sum(toUInt64OrZero(SpanAttributes[{{output_key:String}}])) AS output_tokens,
    count() AS calls,
    countIf(NOT mapContains(SpanAttributes, {{cost_key:String}})) AS unpriced
FROM {{db:Identifier}}.{{table:Identifier}}
WHERE Timestamp >= fromUnixTimestamp64Nano({{since:Int64}})
    AND Timestamp < fromUnixTimestamp64Nano({{until:Int64}})
    AND SpanAttributes[{{kind_key:String}}] = {{kind:String}}
    AND (mapContains(SpanAttributes, {{input_key:String}}) OR mapContains(SpanAttributes, {{output_key:String}}))
GROUP BY start, subject
ORDER BY start DESC, usd DESC, subject
LIMIT {{limit:UInt32}}"""


@dataclass(frozen=True)
class Row:
    start: float  # Unix seconds: the period's start (UTC)
    subject: str
    usd: float
    input_tokens: int
    output_tokens: int
    calls: int
    unpriced: int  # calls whose model had no price (their cost is not in usd)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def item(self, by: str, period: str) -> Json:
        return {
            "period": period,
            "period_start": iso_time(int(self.start) * 1_000_000_000),
            by: self.subject,
            "cost_usd": round(self.usd, 6),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "calls": self.calls,
            "unpriced_calls": self.unpriced,
        }


def spend(store: Store, by: str, period: str, since: float, until: float | None = None) -> list[Row]:
    """Spend per subject (``by``: agent, role or key) and period, newest period first; blocks."""
    params: dict[str, Any] = {
        "db": store.database,
        "table": store.table,
        "subject_key": SUBJECTS[by],
        "cost_key": semconv.BASTION_COST_USD,
        "input_key": semconv.GEN_AI_USAGE_INPUT_TOKENS,
        "output_key": semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
        "kind_key": semconv.BASTION_CALL_KIND,
        "kind": semconv.KIND_MODEL,
        "since": int(since * 1e9),
        "until": int((time.time() + 60 if until is None else until) * 1e9),
        "limit": MAX_ROWS,
    }
    sql = _SPEND.format(bucket=_BUCKETS[period])
    return [
        Row(float(start), str(subject), float(usd), int(i), int(o), int(calls), int(unpriced))
        for start, subject, usd, i, o, calls, unpriced in store.rows(sql, params)
    ]
