// kafkajs consumer groups end to end (run with `node --test integration/js`): two members
// share a topic, commit what they consumed, leave; the broker is SIGKILLed and restarted; a
// new member of the same group resumes from the committed offsets.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import kafkajs from 'kafkajs';

import { withBroker } from './broker.mjs';

const { Kafka, Partitioners, logLevel } = kafkajs;

const TEST_TIMEOUT_MS = 120_000;
const PARTITIONS = 4;
const SETS = {
  'group.initial.rebalance.delay.ms': '200',
  'group.min.session.timeout.ms': '1000',
};

setTimeout(() => {
  console.error('groups.test.mjs: file watchdog fired, exiting');
  process.exit(1);
}, TEST_TIMEOUT_MS + 60_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(broker) {
  return new Kafka({
    clientId: 'sluice-it-kafkajs-groups',
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
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(200);
  }
}

async function produce(kafka, topic, from, count) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const messages = [];
    for (let i = from; i < from + count; i++) messages.push({ partition: i % PARTITIONS, value: `js-${i}` });
    await producer.send({ topic, acks: -1, messages });
    return messages.map((m) => m.value);
  } finally {
    await producer.disconnect();
  }
}

/** A group member that commits each record after handling it. */
async function member(kafka, groupId, topic, seen) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 4000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      seen.push(message.value.toString());
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  });
  return consumer;
}

test('kafkajs consumer group: share, commit, survive a broker crash, resume', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker({ sets: SETS }, async (broker) => {
    const kafka = client(broker);
    const topic = `it-js-groups-${randomBytes(3).toString('hex')}`;
    const groupId = `js-group-${randomBytes(3).toString('hex')}`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true }), true);
      const first = await produce(kafka, topic, 0, 200);
      const seen = [];
      const members = [await member(kafka, groupId, topic, seen), await member(kafka, groupId, topic, seen)];
      try {
        await waitUntil(() => first.every((v) => seen.includes(v)), 60_000, 'both members to read everything');
        // The broker sees two members that split the partitions.
        const described = await waitUntil(async () => {
          const { groups } = await admin.describeGroups([groupId]);
          return groups[0].state === 'Stable' && groups[0].members.length === 2 ? groups[0] : null;
        }, 30_000, 'a stable group of two');
        assert.equal(described.protocolType, 'consumer');
        await waitUntil(async () => {
          const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
          return offsets.partitions.every((p) => p.offset === '50');
        }, 20_000, 'every partition committed at 50');
      } finally {
        for (const m of members) await m.disconnect();
      }
      assert.equal(new Set(seen).size, first.length, 'each record read once: every commit was acknowledged');
      const { groups } = await admin.listGroups();
      assert.ok(groups.some((g) => g.groupId === groupId), JSON.stringify(groups));
    } finally {
      await admin.disconnect();
    }

    await broker.restart({ clean: false });
    const after = client(broker);
    const more = await produce(after, topic, 200, 40);
    const resumed = [];
    const consumer = await member(after, groupId, topic, resumed);
    try {
      await waitUntil(() => resumed.length >= more.length, 30_000, 'the new member to read the new records');
      await sleep(1000);
      assert.deepEqual([...resumed].sort(), [...more].sort(), 'resumed from the committed offsets');
    } finally {
      await consumer.disconnect();
    }
  });
});
