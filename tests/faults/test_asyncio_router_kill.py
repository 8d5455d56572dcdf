"""The asyncio client while the (one) router is SIGKILLed under load: no call
hangs past its timeout, every failure is a typed error, acknowledged writes
are all there, and once the supervisor has restarted the router the same
client works again."""
import asyncio
import os
import signal
import time

import flin.asyncio
from flin import errors
from tests.support import faults as faultlib

TIMEOUT = 3.0


def test_router_sigkill_under_asyncio_load(cluster):
    async def main():
        db = flin.asyncio.Client(cluster.endpoint, timeout=TIMEOUT, retries=3)
        await db.ping()
        stop = asyncio.Event()
        acked, errs, slow = {}, {}, [0.0]

        async def worker(w: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                key = b"aiok:%d:%d" % (w, i)
                t0 = time.monotonic()
                try:
                    if i % 4:
                        await db.set(key, b"%d" % i)
                        acked[key] = b"%d" % i
                    else:
                        await db.get(b"aiok:%d:%d" % (w, i - 1))
                except errors.FlinError as exc:
                    errs[type(exc).__name__] = errs.get(type(exc).__name__, 0) + 1
                slow[0] = max(slow[0], time.monotonic() - t0)

        tasks = [asyncio.create_task(worker(w)) for w in range(64)]
        await asyncio.sleep(1.0)
        router = faultlib.router_pid(cluster)
        os.kill(router, signal.SIGKILL)
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT + 5)   # none hangs
        assert slow[0] <= TIMEOUT + 0.5, slow[0]
        assert set(errs) <= {"Timeout", "ConnectionFailed", "OutcomeUnknown",
                             "ShardUnavailable", "ShuttingDown"}, errs
        new = faultlib.wait_for(lambda: faultlib.router_pid(cluster) not in (None, router),
                                20, "the router restarted")
        assert new
        deadline = time.monotonic() + 20
        while True:                      # the same client reaches the new router
            try:
                await db.ping()
                break
            except errors.FlinError:
                assert time.monotonic() < deadline, "the client never reached the new router"
                await asyncio.sleep(0.2)
        await faultlib.assert_all_there_async(db, acked)
        await db.close()
        return len(acked)
    assert asyncio.run(main()) > 300
