// What a BullMQ drain left (make bench's drain section), read after its workers stopped.
//
//   node bench/bullmq/drain.mjs <redis url> <prefix> <queue>
//
// Prints one JSON document: completed, failed and waiting counts, and every completed job's
// processedOn (started) and finishedOn (finished), in ms since the epoch: timestamps BullMQ's
// workers took as they moved each job to active and to completed.
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [url, prefix, queueName] = process.argv.slice(2);
const PAGE = 1000;

async function main() {
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection, prefix });
  const counts = await queue.getJobCounts("completed", "failed", "waiting", "active");
  const started = [];
  const finished = [];
  for (let start = 0; start < counts.completed; start += PAGE) {
    for (const job of await queue.getCompleted(start, start + PAGE - 1)) {
      started.push(job.processedOn);
      finished.push(job.finishedOn);
    }
  }
  console.log(JSON.stringify({ ...counts, started, finished }));
  await queue.close();
  await connection.quit();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
