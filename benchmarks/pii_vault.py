"""The pseudonym vault's memory with a new conversation per call (the soak in issue 16, in one
process and faster than real time): conversations of three pseudonymized values each, RSS sampled
as they are added, with the shipped caps and without them (the cap set past the run's end)."""

from __future__ import annotations

import gc
import os

from harness import print_table

from bastion.proxy.pii.redactor import Vault

CALLS = 200_000
SAMPLES = 5


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(vault: Vault) -> list[float]:
    out = []
    for n in range(CALLS):
        conversation = vault.conversation(f"call-{n}")
        for i, entity in enumerate(("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER")):
            conversation.placeholder(entity, f"value {i} of conversation {n:08d}@example.com")
        if (n + 1) % (CALLS // SAMPLES) == 0:
            gc.collect()
            out.append(rss_mb())
    return out


def main() -> None:
    rows = []
    for name, vault in (
        ("capped (10000 conversations, 64 MB)", Vault(3600)),
        ("uncapped", Vault(3600, max_conversations=CALLS + 1, max_bytes=1 << 40)),
    ):
        start = rss_mb()
        samples = soak(vault)
        rows.append([name, len(vault), vault.bytes >> 20, *(round(s - start, 1) for s in samples)])
        del vault
        gc.collect()
    steps = [f"+MB after {(i + 1) * CALLS // SAMPLES // 1000}k calls" for i in range(SAMPLES)]
    print(f"\nPseudonym vault, a new conversation per call, {CALLS} calls\n")
    print_table(["vault", "conversations kept", "estimated MB", *steps], rows)


if __name__ == "__main__":
    main()
