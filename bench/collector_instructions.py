"""Instructions per collector request, counted by valgrind (noise-free, unlike CPU time on a shared box).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/collector_instructions.py --shape mix --reps 1
    (then the same with --reps 0; the difference of the two "Collected" totals / --n is the figure)
    ... --root /tmp/main-tree   # another tree (``git archive main | tar -x -C /tmp/main-tree``)

``--n`` requests of one ``bench/collector_bench.py`` shape (mix, 1, 5, ...) through the tree's
collector app in this process: aiohttp's test server and client (the client's instructions are
counted too), the real handlers, translation, scrub, validation and ``EventProducer.deliver``, with
aiokafka replaced by a stub whose futures settle on the next loop turn (aiokafka's own cost and the
socket to the broker are not counted). Ids come from a seeded generator and the clock is fixed, so
two runs do the same work; ``--reps 0`` does everything but the measured requests (imports, a
warm-up of other requests).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


class StubKafka:
    """aiokafka's ``send`` as ``deliver`` uses it: a future, settled on the next loop turn."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        return fut

    async def stop(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="the tree whose collector is measured (default: this checkout)")
    parser.add_argument("--shape", default="mix", help="a collector_bench shape: mix, 1, 3, 5, 10, 50")
    parser.add_argument("--n", type=int, default=300, help="measured requests")
    parser.add_argument("--reps", type=int, default=1, help="0: everything but the measured requests")
    args = parser.parse_args()
    from collector_identity import freeze_clock_and_ids  # this checkout's bench/, before --root's comes first
    sys.path.insert(0, args.root)
    sys.path.insert(1, os.path.join(args.root, "bench"))
    os.environ["PULSE_COLLECTOR_PROJECT_KEYS"] = '{"bench-key": "bench"}'
    import pipeline.collector.app as app_module  # the tree's pipeline before collector_bench adds its own
    import pipeline.collector.sdk as sdk_module
    from aiohttp.test_utils import TestClient, TestServer

    import collector_bench
    from pipeline.ingest.producer import EventProducer
    from pipeline.settings import Settings

    freeze_clock_and_ids(app_module, sdk_module, collector_bench)
    warm = collector_bench.build_pool(args.shape, 100, seed=1)
    pool = collector_bench.build_pool(args.shape, args.n, seed=2)

    async def serve() -> None:
        settings = Settings()
        producer = EventProducer(settings.kafka, process="collector")
        producer._producer = StubKafka()  # type: ignore[assignment]
        producer._started = True
        client = TestClient(TestServer(app_module.make_app(settings, producer), auto_decompress=False))
        await client.start_server()
        try:
            for requests in [warm] + [pool] * args.reps:
                for req in requests:
                    async with client.post(req.path, data=req.body, headers=req.headers) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
        finally:
            await client.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
