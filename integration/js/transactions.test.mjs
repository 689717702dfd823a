// kafkajs transactions end to end (run with `node --test integration/js`): a transactional
// producer commits and aborts transactions over two partitions, commits consumer offsets
// inside them (sendOffsets); read_committed and read_uncommitted consumer groups read back
// what they must, and admin.fetchOffsets shows only the committed transactions' offsets.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import kafkajs from 'kafkajs';

import { withBroker } from './broker.mjs';

const { Kafka, logLevel } = kafkajs;

const TEST_TIMEOUT_MS = 150_000;
const PARTITIONS = 2;
const SETS = {
  'group.initial.rebalance.delay.ms': '200',
  'group.min.session.timeout.ms': '1000',
};

setTimeout(() => {
  console.error('transactions.test.mjs: file watchdog fired, exiting');
  process.exit(1);
}, TEST_TIMEOUT_MS + 60_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const suffix = () => randomBytes(3).toString('hex');

function client(broker) {
  return new Kafka({
    clientId: 'sluice-it-kafkajs-txn',
    brokers: [broker.bootstrap],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    enforceRequestTimeout: true,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 10 },
  });
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

/** `count` records per partition, values `${tag}-p${partition}-${i}`. */
function records(tag, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    for (let partition = 0; partition < PARTITIONS; partition++) {
      out.push({ partition, key: `${tag}-${i}`, value: `${tag}-p${partition}-${i}` });
    }
  }
  return out;
}

const byPartition = (msgs) => {
  const out = {};
  for (let p = 0; p < PARTITIONS; p++) out[p] = msgs.filter((m) => m.partition === p).map((m) => m.value);
  return out;
};

/** A group member reading `topic` from the beginning until it has `want` records, then
 * (bounded) a bit longer to catch anything it must not see. */
async function readGroup(kafka, topic, want, { readUncommitted }) {
  const consumer = kafka.consumer({
    groupId: `js-txn-reader-${suffix()}`,
    readUncommitted,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 200,
  });
  const seen = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    await waitUntil(() => seen.length >= want, 60_000, `${want} records (readUncommitted=${readUncommitted})`);
    await sleep(1500);
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

async function groupOffsets(admin, groupId, topic) {
  const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const out = {};
  for (const p of res.partitions) out[p.partition] = p.offset;
  return out;
}

test('kafkajs transactions: commit / abort over 2 partitions, sendOffsets, read_committed', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker({ sets: SETS }, async (broker) => {
    const kafka = client(broker);
    const out = `it-js-txn-out-${suffix()}`;
    const input = `it-js-txn-in-${suffix()}`;
    const appGroup = `js-txn-app-${suffix()}`;
    const admin = kafka.admin();
    await admin.connect();
    const producer = kafka.producer({
      transactionalId: `js-txn-${suffix()}`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    try {
      assert.equal(
        await admin.createTopics({
          topics: [out, input].map((topic) => ({ topic, numPartitions: PARTITIONS, replicationFactor: 1 })),
          waitForLeaders: true,
        }),
        true,
      );
      // Input the offsets refer to (plain, non-transactional).
      const plain = kafka.producer();
      await plain.connect();
      await plain.send({ topic: input, acks: -1, messages: records('in', 10) });
      await plain.disconnect();

      await producer.connect();
      // t1: committed, with the app's input offsets.
      const t1 = await producer.transaction();
      await t1.send({ topic: out, messages: records('c1', 5) });
      await t1.sendOffsets({
        consumerGroupId: appGroup,
        topics: [{ topic: input, partitions: [{ partition: 0, offset: '4' }, { partition: 1, offset: '3' }] }],
      });
      await t1.commit();
      // t2: aborted; its records are written first, so they are in the log.
      const t2 = await producer.transaction();
      await t2.send({ topic: out, messages: records('a2', 5) });
      await t2.sendOffsets({
        consumerGroupId: appGroup,
        topics: [{ topic: input, partitions: [{ partition: 0, offset: '9' }, { partition: 1, offset: '9' }] }],
      });
      await t2.abort();
      // t3: committed, moves only partition 0's offset. Once it shows, t2 is resolved, so
      // partition 1 still at 3 proves t2's offsets were discarded.
      const t3 = await producer.transaction();
      await t3.send({ topic: out, messages: records('c3', 3) });
      await t3.sendOffsets({
        consumerGroupId: appGroup,
        topics: [{ topic: input, partitions: [{ partition: 0, offset: '6' }] }],
      });
      await t3.commit();

      const offsets = await waitUntil(async () => {
        const o = await groupOffsets(admin, appGroup, input);
        return o[0] === '6' ? o : null;
      }, 30_000, "t3's offset (6) on partition 0");
      assert.deepEqual(offsets, { 0: '6', 1: '3' });

      const committed = await readGroup(kafka, out, 2 * (5 + 3), { readUncommitted: false });
      const want = {};
      for (let p = 0; p < PARTITIONS; p++) {
        want[p] = [
          ...Array.from({ length: 5 }, (_, i) => `c1-p${p}-${i}`),
          ...Array.from({ length: 3 }, (_, i) => `c3-p${p}-${i}`),
        ];
      }
      assert.deepEqual(byPartition(committed), want, 'read_committed: exactly the committed records, in order');

      const all = await readGroup(kafka, out, 2 * (5 + 5 + 3), { readUncommitted: true });
      const wantAll = {};
      for (let p = 0; p < PARTITIONS; p++) {
        wantAll[p] = [
          ...Array.from({ length: 5 }, (_, i) => `c1-p${p}-${i}`),
          ...Array.from({ length: 5 }, (_, i) => `a2-p${p}-${i}`),
          ...Array.from({ length: 3 }, (_, i) => `c3-p${p}-${i}`),
        ];
      }
      assert.deepEqual(byPartition(all), wantAll, 'read_uncommitted: every record, aborted ones too');
      // Control markers take offsets: 5 records, marker, 5 records, marker, 3 records, marker.
      for (let p = 0; p < PARTITIONS; p++) {
        assert.deepEqual(
          all.filter((m) => m.partition === p).map((m) => m.offset),
          [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14],
        );
      }
      const ends = (await admin.fetchTopicOffsets(out)).sort((x, y) => x.partition - y.partition);
      assert.deepEqual(ends.map((e) => e.high), ['16', '16']);
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
  });
});
