// BullMQ's enqueue→start latency for make bench's latency section: with worker.mjs running in
// "probe" mode and idle, <probes> jobs are added one at a time, <interval ms> apart, each add
// awaited like a real client's; each job's latency is the probe worker's start time minus
// job.timestamp (taken by queue.add as it builds the job), both whole ms since the epoch.
//
//   node bench/bullmq/latency.mjs <redis url> <prefix> <queue> <probes> <interval ms> <warmup>
//
// <warmup> jobs go first, each waited for (the first waits for the workers to boot). Waits at most
// 30 s for the probes to start. Prints one JSON document: latencies_ms (one per probe started) and
// send_ms (each add call's duration).
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [url, prefix, queueName, probesArg, intervalArg, warmupArg] = process.argv.slice(2);
const probes = Number(probesArg);
const interval = Number(intervalArg);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const key = `${prefix}:probes`;

async function waitFor(connection, count, seconds) {
  const deadline = Date.now() + seconds * 1000;
  while ((await connection.llen(key)) < count && Date.now() < deadline) await sleep(10);
}

async function main() {
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection, prefix });
  for (let i = 1; i <= Number(warmupArg); i += 1) {
    await queue.add("system.noop", {});
    await waitFor(connection, i, 60);
  }
  await sleep(500);
  await connection.del(key);
  const sendMs = [];
  const began = performance.now();
  for (let i = 0; i < probes; i += 1) {
    const pause = began + i * interval - performance.now();
    if (pause > 0) await sleep(pause);
    const started = performance.now();
    await queue.add("system.noop", {});
    sendMs.push(performance.now() - started);
  }
  await waitFor(connection, probes, 30);
  const entries = await connection.lrange(key, 0, -1);
  const latencies = entries.map((entry) => {
    const [created, started] = entry.split(":").map(Number);
    return started - created;
  });
  console.log(JSON.stringify({ latencies_ms: latencies, send_ms: sendMs }));
  await queue.close();
  await connection.quit();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
