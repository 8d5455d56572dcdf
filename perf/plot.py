"""``--plot FILE.png``: the latency distribution of every target and phase
(percentile on a log scale, HdrHistogram style) and throughput over time.
Needs matplotlib, the optional extra ``flin[perf]``."""
from __future__ import annotations


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def unavailable() -> str | None:
    """Why ``--plot`` cannot work here, or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install 'flin[perf]'"
    return None


def plot(doc: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'flin[perf]'") from None
    fig, (lat_ax, thr_ax) = plt.subplots(1, 2, figsize=(14, 5.5))
    for r in doc["results"]:
        label = "%s %s" % (r["target"], r["phase"])
        pts = [(q, ms) for q, ms in r["latency_distribution_ms"] if q < 100]
        # x = 1 / (1 - q): 50% -> 2, 99% -> 100, 99.9% -> 1000
        lat_ax.plot([1 / (1 - q / 100) for q, _ in pts], [ms for _, ms in pts],
                    marker=".", label=label)
        tl = r["throughput_timeline"]
        if tl:
            thr_ax.plot([t for t, _ in tl], [v for _, v in tl], label=label)
    ticks = [1, 2, 10, 100, 1000, 10000]
    lat_ax.set_xscale("log")
    lat_ax.set_yscale("log")
    lat_ax.set_xticks(ticks)
    lat_ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    lat_ax.set_xlabel("percentile")
    lat_ax.set_ylabel("latency per request (ms)")
    lat_ax.set_title("Latency distribution")
    lat_ax.grid(True, which="both", alpha=0.3)
    lat_ax.legend(fontsize="small")
    thr_ax.set_xlabel("seconds into the phase")
    thr_ax.set_ylabel("ops/s (keys per second)")
    thr_ax.set_title("Throughput over time (0.1 s samples)")
    thr_ax.grid(True, alpha=0.3)
    thr_ax.legend(fontsize="small")
    c = doc["config"]
    fig.suptitle("flin bench: %d workers x %d in flight, batch %d, %d-byte values, %s"
                 % (c["workers"], c["pipeline"], c["batch"], c["value_size"],
                    doc["machine"].get("cpu_model", "")), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
