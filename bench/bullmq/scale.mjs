// BullMQ beside Offload's status store (make bench --only scale): what a retained job costs Redis
// and how fast one job and the first page of a list are read back, at a given size.
//
//   node bench/bullmq/scale.mjs <redis url> <mode> <jobs> [probes]
//
// mode "bytes": <jobs> no-op jobs added with addBulk and processed by a Worker (concurrency 8),
//   kept (removeOnComplete/removeOnFail false), half succeeding and half failing; prints the Redis
//   memory per completed and per failed job (used_memory before and after, as for Offload).
// mode "fill": grows the completed set to <jobs> jobs (cumulative over calls), then times
//   getJob of random ids and getJobs(['completed'], 0, 49) <probes> times each.
// Prints one JSON object on stdout. The queue is "scale" under BullMQ's default "bull" prefix;
// the caller flushes the database between runs.
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const [url, mode, jobsArg, probesArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const probes = Number(probesArg || 200);
const connection = new IORedis(url, { maxRetriesPerRequest: null });

async function usedMemory() {
  const info = await connection.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)[1]);
}

async function run(queue, count, fails) {
  let done = 0;
  let resolveFinished;
  const finished = new Promise((resolve) => {
    resolveFinished = resolve;
  });
  const tick = () => {
    done += 1;
    if (done >= count) resolveFinished();
  };
  const worker = new Worker(
    "scale",
    async (job) => {
      if (fails && job.data.fail) throw new Error("it failed, as asked");
      return {};
    },
    { connection, concurrency: 8 },
  );
  worker.on("completed", tick);
  worker.on("failed", tick);
  for (let i = 0; i < count; i += 1000) {
    const bulk = [];
    for (let j = i; j < Math.min(count, i + 1000); j += 1) {
      bulk.push({ name: "noop", data: { echo: null, fail: fails && j % 2 === 1 }, opts: { removeOnComplete: false, removeOnFail: false } });
    }
    await queue.addBulk(bulk);
  }
  await finished;
  await worker.close();
}

function p99(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)];
}

async function main() {
  const queue = new Queue("scale", { connection });
  if (mode === "bytes") {
    const before = await usedMemory();
    await run(queue, jobs, true);
    const after = await usedMemory();
    const completed = await queue.getCompletedCount();
    const failed = await queue.getFailedCount();
    // Half each: the per-kind split comes from a second run with successes only.
    const mixed = (after - before) / jobs;
    await connection.flushdb();
    const before2 = await usedMemory();
    await run(queue, jobs, false);
    const after2 = await usedMemory();
    const perCompleted = (after2 - before2) / jobs;
    const perFailed = 2 * mixed - perCompleted;
    console.log(JSON.stringify({ completed, failed, bytes_per_completed: perCompleted, bytes_per_failed: perFailed }));
  } else if (mode === "fill") {
    const have = await queue.getCompletedCount();
    if (jobs > have) await run(queue, jobs - have, false);
    const completed = await queue.getCompletedCount();
    const sample = [];
    for (let i = 0; i < probes; i += 1) sample.push(String(1 + Math.floor(Math.random() * completed)));
    const getTimes = [];
    for (const id of sample) {
      const started = process.hrtime.bigint();
      await queue.getJob(id);
      getTimes.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    const listTimes = [];
    for (let i = 0; i < probes; i += 1) {
      const started = process.hrtime.bigint();
      await queue.getJobs(["completed"], 0, 49);
      listTimes.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    console.log(JSON.stringify({ completed, get_p99_ms: p99(getTimes), list_p99_ms: p99(listTimes) }));
  }
  await queue.close();
  await connection.quit();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
