// BullMQ workers for make bench's drain and latency sections, shaped like `dramatiq --processes P
// --threads C`: this process forks <processes> children, each running one BullMQ Worker with
// <concurrency>, and stays their parent, so the benchmark meters and stops them as one process group.
//
//   node bench/bullmq/worker.mjs <redis url> <prefix> <queue> <processes> <concurrency> <mode>
//
// mode "noop": each job does one INCR <prefix>:done (how the drain counts completions).
// mode "probe": each job RPUSHes "<job.timestamp>:<started>" onto <prefix>:probes, both in ms since
//   the epoch: when queue.add built the job, and when this worker started it.
// Jobs keep BullMQ's defaults (a completed job stays recorded, as Offload's records do).
// SIGTERM: each child closes its Worker (waiting for its active jobs) and exits; then the parent
// prints one JSON document {"processes", "exit_codes"} and exits.
import { fork } from "node:child_process";
import { Worker } from "bullmq";
import IORedis from "ioredis";

const [url, prefix, queueName, processesArg, concurrencyArg, mode] = process.argv.slice(2);

async function child() {
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const client = new IORedis(url);
  const processor =
    mode === "probe"
      ? async (job) => {
          const started = Date.now();
          await client.rpush(`${prefix}:probes`, `${job.timestamp}:${started}`);
        }
      : async () => {
          await client.incr(`${prefix}:done`);
        };
  const worker = new Worker(queueName, processor, { connection, prefix, concurrency: Number(concurrencyArg) });
  worker.on("error", (error) => console.error(error));
  process.on("SIGTERM", async () => {
    await worker.close();
    await client.quit();
    await connection.quit();
    process.exit(0);
  });
}

function parent() {
  const children = [];
  for (let i = 0; i < Number(processesArg); i += 1) {
    children.push(fork(process.argv[1], process.argv.slice(2), { env: { ...process.env, BENCH_BULLMQ_CHILD: "1" } }));
  }
  const exited = children.map((proc) => new Promise((resolve) => proc.on("exit", (code) => resolve(code))));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    for (const proc of children) proc.kill("SIGTERM");
    const codes = await Promise.all(exited);
    console.log(JSON.stringify({ processes: children.length, exit_codes: codes }));
    process.exit(codes.every((code) => code === 0) ? 0 : 1);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // A child that dies on its own takes the whole worker down, as a broken drain should.
  Promise.race(exited).then(stop);
}

if (process.env.BENCH_BULLMQ_CHILD) {
  child().catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  parent();
}
