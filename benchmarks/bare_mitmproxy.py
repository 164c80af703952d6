"""mitmproxy in reverse mode with no addons: the baseline Bastion's own cost is measured against."""

from __future__ import annotations

import asyncio
import sys

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster


async def main(upstream: str, port: int) -> None:
    master = DumpMaster(
        options.Options(mode=[f"reverse:{upstream}@127.0.0.1:{port}"]), with_termlog=False, with_dumper=False
    )
    await master.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
