// BullMQ's enqueue for make bench (the enqueue and drain sections): <jobs> no-op jobs added from
// this one process, after <warmup> adds (default 50) that are not timed.
//
//   node bench/bullmq/enqueue.mjs <redis url> <prefix> <queue> <mode> <jobs> [warmup]
//
// mode "add": `await queue.add(...)` one job at a time. mode "bulk": `await queue.addBulk(...)` in
// chunks of 1,000. Jobs keep BullMQ's defaults. Prints one JSON document: jobs, seconds (the timed
// adds only), cpu_s (this process's CPU over them), waiting (jobs waiting afterwards, warm-up's included).
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [url, prefix, queueName, mode, jobsArg, warmupArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const warmup = Number(warmupArg ?? 50);
const CHUNK = 1000;

async function main() {
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection, prefix });
  for (let i = 0; i < warmup; i += 1) await queue.add("system.noop", {});
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  if (mode === "add") {
    for (let i = 0; i < jobs; i += 1) await queue.add("system.noop", {});
  } else if (mode === "bulk") {
    for (let i = 0; i < jobs; i += CHUNK) {
      const chunk = [];
      for (let j = i; j < Math.min(jobs, i + CHUNK); j += 1) chunk.push({ name: "system.noop", data: {} });
      await queue.addBulk(chunk);
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  const waiting = await queue.getWaitingCount();
  console.log(JSON.stringify({ mode, jobs, seconds, cpu_s: (used.user + used.system) / 1e6, waiting }));
  await queue.close();
  await connection.quit();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
