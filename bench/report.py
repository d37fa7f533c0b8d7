"""The suite's table (stdout) and chart (PNG): each figure next to its same-run baseline."""

from __future__ import annotations

from pathlib import Path


def rows(report: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, value, baseline, ratio, goal, met) for every measured figure."""
    r = report["results"]
    out = []

    def yes(ok: bool | None) -> str:
        return "-" if ok is None else "yes" if ok else "NO"

    if "publish_single" in r:
        out.extend(_publish_single_rows(r["publish_single"], yes))
    if "publish_batch" in r:
        p = r["publish_batch"]
        out.append((f"batch publish ({p['batch_size']}/request), durable events/s",
                    f"{p['events_per_s']:,.0f} events/s (p99 {p['p99_ms']} ms/request)",
                    "goal 10,000 events/s", f"{p['ratio']:.2f}x", ">= 10,000/s", yes(p["met"])))
    labels = {"e2e_noop": "end to end, demo.ping -> noop job (batch publish)",
              "e2e_product": "end to end, product.updated -> cache invalidation (batch publish)",
              "e2e_single": "end to end, demo.ping, one POST per event"}
    for key, label in labels.items():
        if key in r:
            p = r[key]
            out.append((label, _events(p),
                        f"{p['baseline_per_s']:,.0f} tasks/s bare Celery no-op, prefork -c 2",
                        f"{p['ratio']:.2f}x", ">= 1.0x" if p["met"] is not None else "reference",
                        yes(p["met"])))
    if "e2e_solo" in r:
        p = r["e2e_solo"]
        label = "end to end, bench.solo -> one job per message (batch publish)"
        out.append((label, _events(p),
                    f"{p['baseline_per_s']:,.0f} tasks/s bare Celery no-op storing its result "
                    "(django-celery-results), prefork -c 2", f"{p['ratio']:.2f}x", ">= 1.0x",
                    yes(p["met"])))
        out.append((label, _events(p),
                    f"{p['bare_per_s']:,.0f} tasks/s bare Celery no-op, prefork -c 2",
                    f"{p['ratio_bare']:.2f}x", "reference", "-"))
    if "latency" in r:
        p = r["latency"]
        out.append((f"publish -> running at {p['rate_per_s']:.0f}/s (half the single-POST "
                    "end-to-end rate)", f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms",
                    f"{p['samples']:,} events", "-", "p99 <= 50 ms", yes(p["met"])))
    out.extend(_webhook_rows(r, yes))
    out.extend(_email_rows(r, yes))
    out.extend(_bulk_rows(r, yes))
    out.extend(_prune_rows(r))
    out.extend(_metrics_rows(r))
    if "worker_memory" in r:
        p = r["worker_memory"]
        per = p["jobs_per_message"]
        out.append((f"worker RSS after {p['jobs_large']:,} vs {p['jobs_small']:,} jobs "
                    f"({p['jobs_large'] // per:,} vs {p['jobs_small'] // per:,} tasks of {per})",
                    f"{p['rss_large_mib']} MiB", f"{p['rss_small_mib']} MiB",
                    f"{p['ratio']:.3f}x ({p['growth_pct']:+.1f}%)", "<= +10%", yes(p["met"])))
    if "web_memory" in r:
        out.extend(_web_memory_rows(r["web_memory"]))
    return out


def _publish_single_rows(p: dict, yes) -> list[tuple[str, str, str, str, str, str]]:
    """Single publish against the naive recipe (the goal) and the minimal JSON view; and with
    an Idempotency-Key against without one."""

    def rate(prefix: str, name: str = "") -> str:
        return (f"{p[prefix + 'rps']:,.0f} req/s{' ' + name if name else ''} "
                f"(p50 {p[prefix + 'p50_ms']} ms, p99 {p[prefix + 'p99_ms']} ms)")

    if "naive_rps" not in p:  # a report from before the naive recipe was measured
        return [("single publish POST /api/v1/events", rate(""),
                 rate("baseline_", "minimal JSON view"), f"{p['ratio']:.2f}x", ">= 0.5x",
                 yes(p["met"]))]
    label = "single publish POST /api/v1/events, no key"
    return [
        (label, rate(""), rate("naive_", "naive recipe, create + .delay()"),
         f"{p['ratio_naive']:.2f}x", ">= 1.0x, p99 <= naive p99", yes(p["met"])),
        (label, rate(""), rate("baseline_", "minimal JSON view"), f"{p['ratio']:.2f}x",
         ">= 0.5x (moonshot)", yes(p["baseline_met"])),
        ("single publish with an Idempotency-Key", rate("idem_"), rate("", "without a key"),
         f"{p['ratio_idem']:.2f}x", ">= 0.9x", yes(p["idem_met"])),
    ]


def _webhook_rows(r: dict, yes) -> list[tuple[str, str, str, str, str, str]]:
    """Signed deliveries/s with 1 and 2 notifications workers against bare Celery + requests,
    and publish -> received latency."""
    out = []
    for key in ("webhooks_1w", "webhooks_2w"):
        if key not in r:
            continue
        p = r[key]
        fan = p["fanout"]
        out.append((
            f"webhooks, signed deliveries/s with rows, {p['workers']} notifications worker(s), "
            f"{p['events']:,} events x {p['endpoints']} endpoints (receiver answers in 50 ms)",
            f"{p['per_s']:,.0f} deliveries/s ({p['deliveries']:,} in {p['elapsed_s']} s; rows "
            f"{p['rows_per_s']:,.0f}/s; end to end {p['end_to_end_per_s']:,.0f}/s; fan-out "
            f"{fan['deliveries_made_per_s']:,.0f} made/s)",
            f"{p['baseline_per_s']:,.0f} deliveries/s bare Celery task + requests, prefork",
            f"{p['ratio']:.2f}x", ">= 1,000/s and >= 5x", yes(p["met"])))
    if "webhooks_latency" in r:
        p = r["webhooks_latency"]
        out.append((
            f"webhooks, publish -> received at {p['deliveries_per_s']:,.0f} deliveries/s "
            f"({p['events_per_s']:g} events/s, half the best rate, {p['workers']} worker(s))",
            f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms" + _stage_waits(p.get("stages", {})),
            f"{p['samples']:,} deliveries; the receiver answers in 50 ms", "-", "none", "-"))
    return out


def _email_rows(r: dict, yes) -> list[tuple[str, str, str, str, str, str]]:
    """Emails/s with their rows, 1 and 2 notifications workers, against Django's send_mail
    once per message; in-app notifications written per second."""
    out = []
    for key in ("emails_1w", "emails_2w"):
        if key not in r:
            continue
        p = r[key]
        out.append((
            f"emails/s with delivery and attempt rows, {p['workers']} worker(s) of the "
            f"notifications profile, {p['sends']} sends x {p['recipients_per_send']:,} "
            f"recipients via the {p['via']} (aiosmtpd sink)",
            f"{p['per_s']:,.0f} emails/s ({p['emails']:,} in {p['elapsed_s']} s, send -> last "
            f"delivered row; server {p['received_per_s']:,.0f}/s; worker CPU "
            f"{p['worker_cpu_ms_per_email']} ms/email{_window(p)})",
            f"{p['baseline_per_s']:,.0f} emails/s Django send_mail, a connection per message",
            f"{p['ratio']:.2f}x", ">= 500/s", yes(p["met"])))
    if "inbox" in r:
        p = r["inbox"]
        out.append((
            f"in-app, one send to {p['recipients']:,} recipients -> inbox items written, "
            f"{p['workers']} worker(s), via the {p['via']}",
            f"{p['per_s']:,.0f} notifications/s (median; {p['elapsed_s']} s, rounds "
            f"{', '.join(f'{v:,.0f}' for v in p['rounds_per_s'])}/s)",
            "-", "-", "none", "-"))
    return out


def _bulk_rows(r: dict, yes) -> list[tuple[str, str, str, str, str, str]]:
    """Bulk runs against the raw statements on the same rows; read latency while one runs;
    where a run's time goes (in process)."""
    out = []
    if "bulk_reprice" in r:
        p = r["bulk_reprice"]
        out.append((
            f"bulk catalog.reprice +{p['percent']}%, {p['rows']:,} rows of one category (API -> "
            "bulk worker, adaptive chunks, a checkpoint each)",
            f"{p['per_s']:,.0f} rows/s ({p['rows']:,} in {p['elapsed_s']} s, {p['chunks']} "
            f"chunks, the last of {p['last_chunk_size']:,}; rounds "
            f"{_seconds(p['rounds']['run_s'])})",
            f"{p['baseline_per_s']:,.0f} rows/s one raw UPDATE of the category, same rounding "
            f"(rounds {_seconds(p['rounds']['raw_s'])})",
            f"{p['ratio']:.2f}x", ">= 0.8x", yes(p["met"])))
    if "bulk_set_prices" in r:
        p = r["bulk_set_prices"]
        out.append((
            f"bulk catalog.set_prices, a CSV of {p['rows']:,} rows POSTed to the API -> bulk "
            "worker",
            f"{p['per_s']:,.0f} rows/s ({p['elapsed_s']} s: upload, COPY and checks "
            f"{p['request_s']} s, chunks {p['running_s']} s; rounds "
            f"{_seconds(p['rounds']['run_s'])})",
            f"{p['baseline_per_s']:,.0f} rows/s COPY into a temporary table + one UPDATE … FROM "
            f"(rounds {_seconds(p['rounds']['raw_s'])})",
            f"{p['ratio']:.2f}x", ">= 0.8x", yes(p["met"])))
    if "bulk_read_latency" in r:
        p = r["bulk_read_latency"]
        busy, idle = p["busy"], p["idle"]
        out.append((
            f"GET {p['endpoint']} (a cache miss each) at {p['rate_per_s']:g}/s while a reprice "
            "runs",
            f"p50 {busy['p50_ms']} ms, p99 {busy['p99_ms']} ms ({busy['samples']:,} reads; the "
            f"run {p['run_per_s']:,.0f} rows/s, {p['overlap']:.0%} of the reads during it)",
            f"idle p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms ({idle['samples']:,} reads)",
            f"{p['ratio']:.2f}x (p99)", "p99 <= 2x idle", yes(p["met"])))
    for name, p in r.get("bulk_profile", {}).items():
        parts = ", ".join(f"{k} {v}%" for k, v in p["share_pct"].items() if v >= 0.5)
        out.append((f"bulk {name}, where the time goes (in process, {p['chunks']} chunks)",
                    f"{p['per_s']:,.0f} rows/s: {parts}", "-", "-", "none", "-"))
    return out


def _prune_rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    """The daily prune on a large jobs table: its rate, the worker's memory against idle, the
    API's reads during it against before it."""
    if "prune" not in r:
        return []
    p = r["prune"]
    seeded = p["seeded"]
    what = (f"prune of a {seeded['jobs']:,}-job table (+ an attempt each) in a solo worker, "
            f"{p['settings']['PRUNE_BATCH_SIZE']:,} keys a batch")
    busy, idle = p["busy"], p["idle"]
    return [
        (what, f"{p['rows_per_s']:,.0f} rows/s ({p['rows_deleted']:,} rows in "
               f"{p['elapsed_s']} s, {p['runs']} run(s), {p['batches']:,} batches of jobs; "
               f"every live row kept: {'yes' if p['verified'] else 'NO'})",
         "-", "-", "none", "-"),
        (f"{what}: worker peak RSS", f"{p['worker_peak_mib']} MiB",
         f"{p['worker_idle_mib']} MiB idle before it", f"{p['rss_ratio']:.2f}x", "none", "-"),
        (f"GET {p['endpoint']} at {p['rate_per_s']:g}/s while the prune runs",
         f"p50 {busy['p50_ms']} ms, p99 {busy['p99_ms']} ms ({busy['samples']:,} reads, "
         f"{p['overlap']:.0%} during the prune)",
         f"before: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms ({idle['samples']:,} reads)",
         f"{p['ratio']:.2f}x (p99)", "none", "-"),
    ]


def _metrics_rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    """What the metrics cost: per request and per job against the same without them; a
    flush; the scrape's jobs query against a count of the whole table."""
    if "metrics" not in r:
        return []
    p = r["metrics"]
    mw, job, rec, flush, g = (p[k] for k in ("middleware", "per_job", "recording", "flush",
                                              "gauges"))
    return [
        ("request metrics middleware alone, around a view answering at once",
         f"+{mw['alone_ns']} ns/request", f"{mw['alone_view_ns']} ns the view alone", "-",
         "none", "-"),
        (f"request metrics middleware, GET {mw['path']} in process (thread CPU)",
         f"{mw['with_us']} us/request ({mw['cost_us']:+} us, {mw['cost_pct']:+.1f}%; "
         f"fastest blocks {mw['fastest_cost_us']:+} us)",
         f"{mw['without_us']} us/request without it", f"{mw['ratio']:.3f}x", "none", "-"),
        (f"a {job['jobs_per_batch']}-job micro-batch (noop task, in process, thread CPU), "
         "recording on",
         f"{job['with_us']} us/job ({job['cost_us']:+} us, {job['cost_pct']:+.1f}%; fastest "
         f"rounds {job['fastest_cost_us']:+} us; its recording alone "
         f"{job['recording_ns_per_job']} ns/job; "
         f"{job['redis_commands_per_job']} Redis commands/job)",
         f"{job['without_us']} us/job recording off", f"{job['ratio']:.3f}x", "none", "-"),
        ("one count in memory: counter inc / histogram observe",
         f"{rec['counter_inc_ns']} ns / {rec['histogram_observe_ns']} ns", "-", "-", "none", "-"),
        (f"one flush to Redis, {flush['series']} label sets (at most once a second per process)",
         f"{flush['ms']} ms", "-", "-", "none", "-"),
        (f"the scrape's jobs gauges on a {g['table_rows']:,}-row jobs table "
         f"({g['open_jobs']:,} open)",
         f"{g['query_ms']} ms (a whole scrape, gauges cached: {g['scrape_cached_ms']} ms)",
         f"{g['count_all_ms']} ms SELECT count(*) of the table", f"{g['ratio']:.3f}x", "none",
         "-"),
    ]


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:g} s" for v in values)


def _window(p: dict) -> str:
    """Accepted by the server -> recorded, p50 and max: the span a worker kill sends again."""
    w = p.get("accepted_to_recorded_ms")
    return f"; accepted -> recorded p50 {w['p50']} ms, max {w['max']} ms" if w else ""


def _stage_waits(stages: dict) -> str:
    """The two queue waits of a webhook's way, p50: to its fan-out job, to its delivery job."""
    if not stages:
        return ""
    return (f" (p50 waits: publish -> fan-out {stages['publish_to_fanout_started']['p50_ms']} ms, "
            f"delivery job queued {stages['enqueued_to_claimed']['p50_ms']} ms)")


def _events(p: dict) -> str:
    return f"{p['events_per_s']:,.0f} events/s ({p['events']:,} in {p['elapsed_s']} s)"


def _web_memory_rows(p: dict) -> list[tuple[str, str, str, str, str, str]]:
    """Peak RSS per gunicorn worker under the largest batches, full then minimal answer."""
    full, minimal = p["full"], p["minimal"]
    load = (f"{p['connections']} connections x {p['events_per_batch']}-event batches of "
            f"{p['body_bytes'] / 2**20:.1f} MiB")

    def measured(v: dict) -> str:
        return (f"{v['max_peak_mib']:.0f} MiB (round peaks {_mib(v['round_peaks_mib'])}; "
                f"{v['after_mib']:.0f} a second after; answers {v['answer_mib']:.2f} MiB)")

    return [
        (f"gunicorn worker peak RSS, {load}, full answer", measured(full),
         f"{full['max_idle_mib']:.0f} MiB idle before the load",
         f"{full['max_peak_mib'] / full['max_idle_mib']:.2f}x", "none", "-"),
        (f"gunicorn worker peak RSS, {load}, Prefer: return=minimal", measured(minimal),
         f"{full['max_peak_mib']:.0f} MiB full answer, same run",
         f"{p['ratio']:.2f}x", "none", "-"),
    ]


def _mib(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def table(report: dict) -> str:
    header = ("figure", "measured", "baseline (same run)", "ratio", "goal", "met")
    body = rows(report)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    m = report["machine"]
    title = (f"Conveyor benchmarks, {report['date']} ({report['mode']}), {m['cpus']} CPUs, "
             f"Python {m['python']}, PostgreSQL {m['postgres']}, Redis {m['redis']}")
    return "\n".join([title, fmt.format(*header), line, *(fmt.format(*row) for row in body)])


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    bars = []  # (label, value, baseline, unit)
    if "publish_single" in r:
        p = r["publish_single"]
        if "naive_rps" in p:
            bars.append(("single publish\nvs naive recipe", p["rps"], p["naive_rps"],
                         "naive recipe"))
            bars.append(("single publish +key\nvs no key", p["idem_rps"], p["rps"],
                         "without a key"))
        bars.append(("single publish\nvs JSON view", p["rps"], p["baseline_rps"],
                     "minimal JSON view"))
    if "publish_batch" in r:
        p = r["publish_batch"]
        bars.append(("batch publish\nevents/s", p["events_per_s"], 10_000, "goal 10,000/s"))
    for key, label in (("e2e_noop", "end to end\nnoop (batch)"),
                       ("e2e_product", "end to end\nproduct.updated"),
                       ("e2e_single", "end to end\nnoop (1 POST/event)"),
                       ("e2e_solo", "end to end\n1 job/message\nvs stored results")):
        if key in r:
            bars.append((label, r[key]["events_per_s"], r[key]["baseline_per_s"],
                         "bare Celery no-op"))
    for key, label in (("webhooks_1w", "webhooks\n1 worker"), ("webhooks_2w",
                                                                "webhooks\n2 workers")):
        if key in r:
            bars.append((label, r[key]["per_s"], r[key]["baseline_per_s"],
                         "bare Celery + requests"))
    for key, label in (("emails_1w", "emails\n1 worker"), ("emails_2w", "emails\n2 workers")):
        if key in r:
            bars.append((label, r[key]["per_s"], r[key]["baseline_per_s"],
                         "Django send_mail"))
    for key, label, base in (("bulk_reprice", "bulk reprice\nrows/s", "one UPDATE"),
                             ("bulk_set_prices", "bulk CSV prices\nrows/s",
                              "COPY + UPDATE … FROM")):
        if key in r:
            bars.append((label, r[key]["per_s"], r[key]["baseline_per_s"], base))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    xs = range(len(bars))
    is_goal = [b[3].startswith("goal") for b in bars]
    ax.bar([x - 0.2 for x, goal in zip(xs, is_goal, strict=True) if not goal],
           [b[2] for b, goal in zip(bars, is_goal, strict=True) if not goal], width=0.4,
           color="#b0b0b0", label="baseline (same run)")
    if any(is_goal):
        ax.bar([x - 0.2 for x, goal in zip(xs, is_goal, strict=True) if goal],
               [b[2] for b, goal in zip(bars, is_goal, strict=True) if goal], width=0.4,
               color="white", edgecolor="#c53030", hatch="//", label="goal (no baseline)")
    ax.bar([x + 0.2 for x in xs], [b[1] for b in bars], width=0.4, color="#2b6cb0",
           label="Conveyor")
    for x, b in zip(xs, bars, strict=True):
        ax.text(x + 0.2, b[1], f"{b[1] / b[2]:.2f}x", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("per second (log scale)")
    ax.legend(fontsize=8)
    ax.set_title("Throughput vs same-run baseline", fontsize=10)
    ax2 = axes[1]
    if "latency" in r:
        p = r["latency"]
        ax2.bar(["p50", "p99"], [p["p50_ms"], p["p99_ms"]], color="#2b6cb0")
        ax2.axhline(50, color="#c53030", linestyle="--", label="goal p99 50 ms")
        ax2.set_ylabel("ms")
        ax2.set_title(f"publish -> running at {p['rate_per_s']:.0f}/s", fontsize=10)
        ax2.legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"Conveyor, {report['date'][:10]}, {m['cpus']} cores, {report['mode']} run",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
