"""The ClickHouse sink: the single owner of the database connection.

Flush order (why a crash at any point neither loses nor duplicates rows):
  1. record the intent: each partition's offset range in this batch (``_pulse_sink_batches``);
  2. insert each (table, partition) chunk with the dedup token ``table:topic:partition:first-last``;
  3. record the highest stored source offset per (raw topic, raw partition, table);
  4. commit the Kafka offsets.
When a partition is assigned and an intent starts at its committed offset, that batch was not known
to be committed: it is re-formed exactly (same records, same tokens) and flushed before anything
else from that partition. ClickHouse trouble pauses the sink and retries; it never commits early.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline import metrics
from pipeline.contract import DeadLetter
from pipeline.kafka_admin import ensure_topics, wait_for_broker
from pipeline.settings import Settings
from pipeline.storage.batching import Batch, BatchBuilder, Chunk, MarkKey, Record
from pipeline.storage.database import Database
from pipeline.storage.tables import SINK_BATCHES, SINK_MARKS, STORABLE

log = logging.getLogger("pulse.sink")
T = TypeVar("T")
# Dedup in dependent views too: a retried block must not reach rollups_hour/day twice either.
INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1,
                   "deduplicate_blocks_in_dependent_materialized_views": 1}
# ClickHouse error names that mean "this data is bad", not "try again later".
DATA_ERRORS = ("CANNOT_PARSE", "INCORRECT_DATA", "TYPE_MISMATCH", "CANNOT_READ", "INCORRECT_NUMBER_OF_COLUMNS",
               "CANNOT_INSERT_NULL", "VALUE_IS_OUT_OF_RANGE", "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT")


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


class _Assignments(ConsumerRebalanceListener):
    def __init__(self, sink: "ClickHouseSink") -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # aiokafka keeps fetching while this runs, so no I/O here: the main loop re-plans.
        self.sink.rebalanced = True


class ClickHouseSink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.clickhouse, settings.sink)  # write lane here; the SQL endpoint reads from it
        self.client: Any = None
        self.consumer: AIOKafkaConsumer | None = None
        self.marks: dict[MarkKey, int] = {}
        self.recovery: dict[TopicPartition, int] = {}  # partition -> last offset of the pending batch
        self.flushes = 0
        self.rows_inserted = 0
        self.last_flush_at: float | None = None
        self.rebalanced = False
        self.ready = asyncio.Event()
        self._carry: list[Any] = []  # (TopicPartition, ConsumerRecord) read but not yet batched

    # ---------------------------------------------------------------- ClickHouse (one thread)
    async def ch(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every sink call to ClickHouse goes through the database's write lane (one thread)."""
        return await self.db.write(fn, *args, **kwargs)

    async def open(self) -> None:
        from pipeline.storage.migrations import migrate

        self.client = await self.db.open()
        applied = await self.ch(migrate, self.client, self.settings)
        if applied:
            log.warning("applied migrations: %s", ", ".join(applied))
        # Marks are loaded by plan_recovery, which runs on every assignment before any flush.

    async def load_marks(self) -> None:
        rows = (await self.ch(self.client.query, f"SELECT src_topic, src_partition, table, max(offset) FROM {SINK_MARKS.name} "
                              "GROUP BY src_topic, src_partition, table")).result_rows
        self.marks = {(t, int(p), tbl): int(o) for t, p, tbl, o in rows}

    # ---------------------------------------------------------------- recovery
    async def plan_recovery(self) -> None:
        """After an assignment: rewind every partition to its committed offset and find an intent
        starting there. Whatever the loop had buffered is discarded, so nothing is read twice."""
        assert self.consumer is not None
        self.rebalanced = False
        self._carry = []  # re-read from the committed offsets below
        await self.load_marks()
        self.recovery = {}
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                committed = (await self.consumer.beginning_offsets([tp]))[tp]
            self.consumer.seek(tp, committed)
            rows = (await self.ch(self.client.query,
                                  f"SELECT last_offset FROM {SINK_BATCHES.name} WHERE topic = {{t:String}} "
                                  f"AND partition = {{p:UInt32}} AND first_offset = {{f:Int64}} "
                                  f"ORDER BY created_at DESC LIMIT 1",
                                  parameters={"t": tp.topic, "p": tp.partition, "f": committed})).result_rows
            if rows:
                self.recovery[tp] = int(rows[0][0])
                log.warning("re-forming the unconfirmed batch %s[%d] offsets %d-%d", tp.topic, tp.partition,
                            committed, rows[0][0])

    # ---------------------------------------------------------------- flush
    async def _insert_chunk(self, chunk: Chunk) -> None:
        body = chunk.body()
        started = time.perf_counter()
        try:
            await self.ch(self.client.raw_insert, chunk.table, None, insert_block=body, fmt="JSONEachRow",
                          settings={**INSERT_SETTINGS, "insert_deduplication_token": chunk.token})
        except DatabaseError as exc:
            if not any(code in str(exc) for code in DATA_ERRORS):
                raise
            await self._insert_line_by_line(chunk, str(exc))
        metrics.INSERT_SECONDS.labels(chunk.table).observe(time.perf_counter() - started)
        n = body.count(b"\n") + 1
        metrics.ROWS_INSERTED.labels(chunk.table).inc(n)
        self.rows_inserted += n

    async def _insert_line_by_line(self, chunk: Chunk, first_error: str) -> None:
        """ClickHouse rejected the block as bad data: keep the good lines, dead-letter the bad ones.

        Bisects rather than going line by line (a 50,000-row block with one bad row costs ~32
        inserts, not 50,000). Sub-block tokens derive from the chunk's token and line range, so a
        crash half-way and a re-formed batch insert nothing twice.
        """
        log.warning("ClickHouse rejected a %s block (%s); isolating the bad rows", chunk.table, first_error[:200])
        lines = [line for value in chunk.values for line in value.split(b"\n") if line.strip()]
        # (lo, hi, error): a line range not tried yet (error None), or one line ClickHouse refused.
        todo: list[tuple[int, int, str | None]] = (
            [(0, len(lines) // 2, None), (len(lines) // 2, len(lines), None)] if len(lines) > 1 else [(0, 1, first_error)])
        while todo:
            lo, hi, error = todo.pop(0)
            if hi <= lo:
                continue
            if error is None:
                try:
                    await self.ch(self.client.raw_insert, chunk.table, None, insert_block=b"\n".join(lines[lo:hi]),
                                  fmt="JSONEachRow",
                                  settings={**INSERT_SETTINGS, "insert_deduplication_token": f"{chunk.token}:{lo}-{hi}"})
                    continue
                except DatabaseError as exc:
                    if not any(code in str(exc) for code in DATA_ERRORS):
                        raise
                    mid = (lo + hi) // 2
                    todo[:0] = [(lo, mid, None), (mid, hi, None)] if hi - lo > 1 else [(lo, hi, str(exc))]
                    continue
            i = chunk.intent
            dead = DeadLetter.of(lines[lo], step="sink", source=f"{i.topic}:{i.partition}:{i.first_offset}-{i.last_offset}",
                                 reason=f"ClickHouse rejected the row for {chunk.table}: {(error or '')[:500]}")
            await self.ch(self.client.raw_insert, "dead_letters", None, insert_block=dead.to_row_json(),
                          fmt="JSONEachRow",
                          settings={**INSERT_SETTINGS, "insert_deduplication_token": f"{chunk.token}:{lo}:dl"})
            metrics.DEAD_LETTERS.labels("sink", "sink", "clickhouse_rejected").inc()

    async def flush(self, batch: Batch) -> None:
        assert self.consumer is not None
        now = _ts(datetime.now(timezone.utc))
        if batch.intents:
            rows = b"\n".join(orjson.dumps({"topic": i.topic, "partition": i.partition, "first_offset": i.first_offset,
                                            "last_offset": i.last_offset, "created_at": now}) for i in batch.intents)
            await self.ch(self.client.raw_insert, SINK_BATCHES.name, None, insert_block=rows, fmt="JSONEachRow",
                          settings=INSERT_SETTINGS)
        for chunk in batch.chunks:
            await self._insert_chunk(chunk)
        self.flushes += 1
        if self.settings.sink.crash_after_insert and self.flushes == self.settings.sink.crash_after_insert:
            log.warning("PULSE_SINK_CRASH_AFTER_INSERT=%d: killing myself before the commit", self.flushes)
            os.kill(os.getpid(), signal.SIGKILL)
        if batch.new_marks:
            rows = b"\n".join(orjson.dumps({"src_topic": k[0], "src_partition": k[1], "table": k[2], "offset": v,
                                            "created_at": now}) for k, v in batch.new_marks.items())
            await self.ch(self.client.raw_insert, SINK_MARKS.name, None, insert_block=rows, fmt="JSONEachRow",
                          settings=INSERT_SETTINGS)
            self.marks.update(batch.new_marks)
        if batch.duplicates:
            metrics.DUPLICATES_DROPPED.labels("sink", "source_mark").inc(batch.duplicates)
        try:
            await self.consumer.commit({TopicPartition(i.topic, i.partition): i.last_offset + 1 for i in batch.intents})
        except CommitFailedError as exc:
            # Partitions moved to another sink; it re-forms this batch from the intent (same tokens).
            log.warning("commit failed after a rebalance (%s); the new owner re-forms the batch", exc)
        self.last_flush_at = time.time()
        metrics.BATCH_SIZE.labels("sink").observe(batch.rows)

    async def flush_with_retry(self, batch: Batch, stop: asyncio.Event) -> None:
        """ClickHouse down or failing: pause, back off, try the same batch again (same tokens)."""
        assert self.consumer is not None
        delay = 0.5
        while True:
            try:
                await self.flush(batch)
                return
            except Exception as exc:  # noqa: BLE001 - anything ClickHouse raises is retried, never committed
                for chunk in batch.chunks:
                    metrics.INSERT_FAILURES.labels(chunk.table).inc()
                log.error("flush failed, retrying in %.1fs: %s", delay, str(exc)[:300])
                self.consumer.pause(*self.consumer.assignment())
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    raise
                except asyncio.TimeoutError:
                    pass
                finally:
                    self.consumer.resume(*self.consumer.assignment())
                delay = min(delay * 2, self.settings.sink.retry_backoff_max_s)

    # ---------------------------------------------------------------- main loop
    async def run(self, stop: asyncio.Event) -> None:
        k = self.settings.kafka
        await self.open()
        await wait_for_broker(k.bootstrap_servers, timeout_s=60)  # clear error instead of a bootstrap traceback
        await ensure_topics(k)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, group_id=self.settings.sink.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=20_000, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024, session_timeout_ms=10_000, heartbeat_interval_ms=2_000)
        self.consumer.subscribe([k.topic_storage, k.topic_dead_letter], listener=_Assignments(self))
        await self.consumer.start()
        self.ready.set()
        log.warning("sink consuming %s, %s into %s", k.topic_storage, k.topic_dead_letter,
                    "chDB " + str(self.settings.clickhouse.path) if self.settings.clickhouse.embedded else self.settings.clickhouse.url)
        try:
            while not stop.is_set():
                await self._one_batch(stop)
        finally:
            await self.consumer.stop()
            self.db.close()

    async def _one_batch(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        cfg = self.settings.sink
        if self.rebalanced:
            await self.plan_recovery()
        builder = BatchBuilder(self.marks, STORABLE)
        recovering: dict[TopicPartition, BatchBuilder] = {}
        deadline = time.monotonic() + cfg.batch_seconds
        # getmany counts messages, a batch counts rows: records fetched past the row limit wait here
        # for the next batch (in order), so batch_rows holds however many rows a message carries.
        pending, self._carry = self._carry, []
        while builder.rows < cfg.batch_rows and not stop.is_set():
            if not pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and (len(builder) or not self.recovery):
                    break
                data = await self.consumer.getmany(timeout_ms=max(int(remaining * 1000), 50),
                                                   max_records=cfg.batch_rows)
                if self.rebalanced:
                    return  # drop the buffer: plan_recovery rewinds to the committed offsets
                pending = [(tp, r) for tp, records in data.items() for r in records]
            for i, (tp, r) in enumerate(pending):
                if builder.rows >= cfg.batch_rows:
                    self._carry = pending[i:]
                    break
                rec = Record(tp.topic, tp.partition, r.offset, dict(r.headers or ()), r.value or b"")
                last = self.recovery.get(tp)
                if last is not None and r.offset <= last:
                    recovering.setdefault(tp, BatchBuilder(self.marks, STORABLE)).add(rec)
                    if r.offset == last:
                        await self.flush_with_retry(recovering.pop(tp).build(), stop)
                        del self.recovery[tp]
                else:
                    if last is not None:  # offsets skipped past the intent's end: flush what we have
                        if tp in recovering:
                            await self.flush_with_retry(recovering.pop(tp).build(), stop)
                        del self.recovery[tp]
                    builder.add(rec)
            pending = []
        if len(builder):
            started = time.perf_counter()
            await self.flush_with_retry(builder.build(), stop)
            metrics.BATCH_SECONDS.labels("sink").observe(time.perf_counter() - started)
        await self._report_lag()

    async def _report_lag(self) -> None:
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                try:
                    pos = await self.consumer.position(tp)
                except KafkaError:
                    continue
                metrics.CONSUMER_LAG.labels("sink", tp.topic, str(tp.partition)).set(max(high - pos, 0))


def run_sink(settings: Settings) -> None:
    """Blocking entry point (``pulse sink``): consumer loop + read-only SQL endpoint; SIGTERM stops cleanly."""
    from aiohttp import web

    from pipeline.runtime import run_service
    from pipeline.storage.query_server import SERVER_OPTIONS, make_query_app

    async def main(stop: asyncio.Event) -> None:
        sink = ClickHouseSink(settings)

        def status() -> dict[str, Any]:
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in sink.consumer.assignment()) if sink.consumer else []
            since = None if sink.last_flush_at is None else round(time.time() - sink.last_flush_at, 1)
            return {"kafka": {"assigned_partitions": assigned}, "flushes": sink.flushes,
                    "rows_inserted": sink.rows_inserted, "seconds_since_last_flush": since}

        runner = web.AppRunner(make_query_app(sink.db, settings, status), access_log=None, **SERVER_OPTIONS)
        consume = asyncio.create_task(sink.run(stop))
        ready = asyncio.create_task(sink.ready.wait())
        await asyncio.wait([consume, ready], return_when=asyncio.FIRST_COMPLETED)
        if consume.done():
            ready.cancel()
            consume.result()  # start-up failed: raise its error
            return
        await runner.setup()
        await web.TCPSite(runner, settings.sink.host, settings.sink.port).start()
        mode = "read-write (admin)" if settings.sink.sql_allow_writes else "read-only"
        log.warning("%s SQL on http://%s:%d/%s", mode, settings.sink.host, settings.sink.port,
                    "" if settings.sink.sql_access_key else " without an access key")
        if settings.sink.sql_access_key is None and settings.sink.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the SQL endpoint listens on %s with no PULSE_SINK_SQL_ACCESS_KEY: anyone who reaches the "
                        "port can read every table", settings.sink.host)
        try:
            await consume
        finally:
            await runner.cleanup()

    run_service(main, log_level=logging.WARNING)
