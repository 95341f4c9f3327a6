"""Kafka producer and topic set-up. The idempotent producer is a setting: on for Apache Kafka,
off for Tansu (it has no InitProducerId)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from billing_events.topics import ALL_TOPICS, Topic
from billing_runtime.config import CommonSettings

log = logging.getLogger(__name__)


class CachedPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), with each key's
    hash remembered: the key is a buyer's billing account, repeated by every event of the account,
    and the pure-Python murmur2 was 3% of usage-ingest's CPU (bench/ingest.py). Same partition
    for a key as the default partitioner, so ordering per account is kept alongside other producers."""

    def __init__(self, size: int = 65536) -> None:
        self._hashes: dict[bytes, int] = {}
        self._size = size

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return _DEFAULT_PARTITIONER(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


_DEFAULT_PARTITIONER = DefaultPartitioner()


def make_producer(settings: CommonSettings, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        partitioner=CachedPartitioner(),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
        request_timeout_ms=30000,
    )


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_with_retry(starter: _Startable, *, attempts: int = 30, delay: float = 1.0) -> None:
    """Start a producer, consumer or admin client, waiting for the broker to come up."""
    for attempt in range(1, attempts + 1):
        try:
            await starter.start()
            return
        except KafkaConnectionError:
            if attempt == attempts:
                raise
            log.info("broker not reachable yet (attempt %d); retrying", attempt)
            await asyncio.sleep(delay)


async def ensure_topics(bootstrap_servers: str, topics: tuple[Topic, ...] = ALL_TOPICS, replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet, at their final partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="billing-topics")
    await start_with_retry(admin)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                await admin.create_topics([NewTopic(topic.name, topic.partitions, replication)])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def read_from_start(consumer: AIOKafkaConsumer, topic: Topic) -> dict[TopicPartition, int]:
    """Assign every partition of `topic` to a started `consumer` (no group) from its first offset;
    the partitions' end offsets, where the topic stands now (read up to them to have read it all)."""
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return await consumer.end_offsets(partitions)
