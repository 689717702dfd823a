// kafkajs end-to-end tests (run with `node --test integration/js`).
//
// NOTE: kafkajs consumers require consumer groups (FindCoordinator/JoinGroup),
// which Sluice may not implement yet. So kafkajs is used ONLY for the admin
// API (createTopics, fetchTopicMetadata, fetchTopicOffsets,
// fetchTopicOffsetsByTimestamp, deleteTopics) and the producer (acks=-1).
// The produced records are read back with `kcat -C -J` (simple consumer,
// no group), and compared exactly.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import kafkajs from 'kafkajs';

import { findKcat, kcat, withBroker } from './broker.mjs';

const { Kafka, CompressionTypes, Partitioners, logLevel } = kafkajs;

const TEST_TIMEOUT_MS = 180_000;

// File-level watchdog: if a timed-out test leaves something keeping the event
// loop alive (a kafkajs socket, the broker child), exit instead of hanging.
// The 'exit' handler in broker.mjs SIGKILLs any broker still running.
setTimeout(() => {
  console.error('kafkajs.test.mjs: file watchdog fired, exiting');
  process.exit(1);
}, 2 * TEST_TIMEOUT_MS + 60_000).unref();
const PARTITIONS = 3;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(broker) {
  return new Kafka({
    clientId: 'sluice-it-kafkajs',
    brokers: [broker.bootstrap],
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    enforceRequestTimeout: true,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 5 },
  });
}

function uniqueTopic(name) {
  return `it-js-${name}-${randomBytes(3).toString('hex')}`;
}

async function waitUntil(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await pred();
    if (last) return last;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(200);
  }
}

/** Deterministic records; timestamps strictly increase (1 ms) in produce order. */
function makeMessages(tag, partition, count, clock) {
  const out = [];
  for (let i = 0; i < count; i++) {
    const headers = { tag, i: String(i) };
    if (i % 3 === 0) headers.dup = ['a', 'b'];
    if (i % 4 === 0) headers.utf8 = 'ünïcödé ✓';
    out.push({
      partition,
      key: `${tag}-p${partition}-k${String(i).padStart(3, '0')}`,
      value: `${tag}|p${partition}|${i}|` + 'y'.repeat((i * 53) % 900),
      headers,
      timestamp: String(clock.next++),
    });
  }
  return out;
}

/** kafkajs headers object -> the flat [k, v, k, v, ...] array kcat -J prints (wire order). */
function flatHeaders(headers) {
  const flat = [];
  for (const [k, v] of Object.entries(headers)) {
    for (const one of Array.isArray(v) ? v : [v]) flat.push(k, String(one));
  }
  return flat;
}

function kcatBase(broker) {
  return ['-b', broker.bootstrap, '-X', 'broker.address.family=v4', '-m', '15'];
}

function kcatConsume(broker, topic, partition) {
  const out = kcat([...kcatBase(broker), '-C', '-t', topic, '-p', String(partition), '-o', 'beginning', '-e', '-q', '-J']);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

test('kafkajs admin: createTopics / metadata / offsets / deleteTopics', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker({}, async (broker) => {
    const admin = client(broker).admin();
    await admin.connect();
    try {
      const topic = uniqueTopic('admin');
      const keep = uniqueTopic('keep');
      assert.equal(
        await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true, timeout: 10000 }),
        true,
      );
      assert.equal(await admin.createTopics({ topics: [{ topic: keep, numPartitions: 1, replicationFactor: 1 }], timeout: 10000 }), true);
      // Already exists -> kafkajs reports false (TOPIC_ALREADY_EXISTS).
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], timeout: 10000 }), false);

      const cluster = await admin.describeCluster();
      assert.equal(cluster.brokers.length, 1);
      const [b] = cluster.brokers;
      assert.deepEqual([b.host, b.port], [broker.host, broker.port]);
      assert.equal(cluster.controller, b.nodeId);

      const listed = await admin.listTopics();
      assert.ok(listed.includes(topic) && listed.includes(keep), JSON.stringify(listed));

      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(md.topics.length, 1);
      const parts = [...md.topics[0].partitions].sort((x, y) => x.partitionId - y.partitionId);
      assert.deepEqual(parts.map((p) => p.partitionId), [0, 1, 2]);
      for (const p of parts) {
        assert.equal(p.partitionErrorCode, 0);
        assert.equal(p.leader, b.nodeId);
        assert.deepEqual(p.replicas, [b.nodeId]);
        assert.deepEqual(p.isr, [b.nodeId]);
      }

      const offsets = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition);
      assert.deepEqual(offsets, [0, 1, 2].map((partition) => ({ partition, offset: '0', high: '0', low: '0' })));

      await admin.deleteTopics({ topics: [topic], timeout: 10000 });
      await waitUntil(async () => !(await admin.listTopics()).includes(topic), 20000, `${topic} to disappear`);
      assert.ok((await admin.listTopics()).includes(keep));
    } finally {
      await admin.disconnect();
    }
  });
});

test('kafkajs producer acks=-1 (gzip + none), offsets by timestamp, read back with kcat', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  if (findKcat() === null) {
    t.skip('kcat missing and SLUICE_ALLOW_MISSING_PEERS=1');
    return;
  }
  await withBroker({}, async (broker) => {
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: false,
      createPartitioner: Partitioners.DefaultPartitioner, // explicit partitions anyway; silences the v2 warning
    });
    await admin.connect();
    await producer.connect();
    try {
      const topic = uniqueTopic('produce');
      assert.equal(
        await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true, timeout: 10000 }),
        true,
      );

      const clock = { next: Date.now() - 120_000 };
      const expected = { 0: [], 1: [], 2: [] };
      for (const [tag, compression] of [['gzip', CompressionTypes.GZIP], ['none', CompressionTypes.None], ['gzip2', CompressionTypes.GZIP]]) {
        const messages = [];
        for (let i = 0; i < 25; i++) {
          // Interleave partitions so each request carries all three.
          for (let p = 0; p < PARTITIONS; p++) messages.push(...makeMessages(`${tag}-${i}`, p, 1, clock));
        }
        const meta = await producer.send({ topic, acks: -1, timeout: 10000, compression, messages });
        const byPart = new Map(meta.map((m) => [m.partition, m]));
        assert.equal(byPart.size, PARTITIONS, JSON.stringify(meta));
        for (let p = 0; p < PARTITIONS; p++) {
          const m = byPart.get(p);
          assert.equal(m.topicName, topic);
          assert.equal(m.errorCode, 0);
          assert.equal(m.baseOffset, String(expected[p].length), `base offset of ${tag} batch on partition ${p}`);
        }
        for (const msg of messages) expected[msg.partition].push(msg);
      }

      const offsets = (await admin.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition);
      assert.deepEqual(
        offsets,
        [0, 1, 2].map((partition) => ({ partition, offset: String(expected[partition].length), high: String(expected[partition].length), low: '0' })),
      );

      // By timestamp. Within a partition consecutive records are 3 ms apart.
      const probe = async (ts) =>
        Object.fromEntries((await admin.fetchTopicOffsetsByTimestamp(topic, ts)).map(({ partition, offset }) => [partition, offset]));
      for (const k of [0, 10, 74]) {
        const ts = Number(expected[0][k].timestamp);
        const got = await probe(ts);
        assert.equal(got[0], String(k), `partition 0 @ ts ${ts}`);
        assert.equal(got[1], String(k), `partition 1 after ts ${ts}`); // p1 record k is 1 ms later
        assert.equal(got[2], String(k), `partition 2 after ts ${ts}`);
      }
      const mid = Number(expected[1][30].timestamp) + 1; // between p1 rec 30 and 31
      assert.deepEqual(await probe(mid), { 0: '31', 1: '31', 2: '30' });
      // Past the end: ListOffsets answers -1 and kafkajs substitutes the high watermark.
      const after = Number(expected[2][74].timestamp) + 1;
      assert.deepEqual(await probe(after), { 0: '75', 1: '75', 2: '75' });

      // Read everything back with kcat (no consumer group) and compare exactly.
      for (let p = 0; p < PARTITIONS; p++) {
        const got = kcatConsume(broker, topic, p);
        const want = expected[p].map((m, offset) => ({
          topic,
          partition: p,
          offset,
          tstype: 'create',
          ts: Number(m.timestamp),
          headers: flatHeaders(m.headers),
          key: m.key,
          payload: m.value,
        }));
        const strip = ({ broker: _b, ...rest }) => rest;
        assert.deepEqual(got.map(strip), want, `partition ${p}`);
      }

      await admin.deleteTopics({ topics: [topic], timeout: 10000 });
      await waitUntil(async () => !(await admin.listTopics()).includes(topic), 20000, `${topic} to disappear`);
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
  });
});
