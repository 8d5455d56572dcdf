"""What a thread's first call on a shared flin.Client costs (it opens the
thread's socket): ``python -m flin_perf.first_call ENDPOINT`` prints the median
PING of 200 new threads, first call and second."""
from __future__ import annotations

import statistics
import sys
import threading
import time

import flin


def main() -> None:
    db = flin.Client(sys.argv[1])
    db.ping()
    first: list[float] = []
    second: list[float] = []

    def one() -> None:
        for out in (first, second):
            t0 = time.perf_counter()
            db.ping()
            out.append(time.perf_counter() - t0)

    for _ in range(200):
        t = threading.Thread(target=one)
        t.start()
        t.join()
    print("a thread's first PING %.2f ms, its next %.2f ms (medians of 200 threads)"
          % (1e3 * statistics.median(first), 1e3 * statistics.median(second)))
    db.close()


if __name__ == "__main__":
    main()
