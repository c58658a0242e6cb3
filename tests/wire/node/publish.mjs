// An Offload wire publisher in Node.js (amqplib), written from docs/wire-format.md alone.
//
//   node publish.mjs <amqp-url> <jobs.json>
//
// jobs.json is a list of {type, queue, payload, tenant?, options?, priority?, job_id?, user_id?}:
// `options` are the HTTP API's job options (delay, max_retries, callback_url, then, tags, metadata,
// idempotency_key...), sent in the message's options.offload block; `priority` is "low", "normal"
// or "high"; `user_id: false` leaves the AMQP user_id property out (the tests' unauthenticated case).
// Each job is published persistent, on the default exchange with the queue as routing key, with
// publisher confirms and mandatory routing. Prints the job ids, in order, as one JSON list.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import amqp from "amqplib";

const AMQP_PRIORITY = { low: 1, normal: 2, high: 3 };

function message(job) {
  const jobId = job.job_id ?? randomUUID();
  const offload = { v: 1, ...(job.options ?? {}) };
  if (job.tenant !== undefined) offload.tenant = job.tenant;
  const options = { offload };
  if (job.priority !== undefined) {
    offload.priority = job.priority;
    options.broker_priority = AMQP_PRIORITY[job.priority];
  }
  const body = {
    queue_name: job.queue,
    actor_name: job.type,
    args: [],
    kwargs: { job_id: jobId, payload: job.payload ?? {} },
    options,
    message_id: jobId,
    message_timestamp: Date.now(),
  };
  return { jobId, body };
}

async function main() {
  const [url, jobsFile] = process.argv.slice(2);
  if (!url || !jobsFile) {
    console.error("usage: node publish.mjs <amqp-url> <jobs.json>");
    process.exit(2);
  }
  const login = decodeURIComponent(new URL(url).username);
  const jobs = JSON.parse(readFileSync(jobsFile, "utf8"));
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const returned = [];
    channel.on("return", (msg) => returned.push(msg.properties.messageId));
    const ids = [];
    for (const job of jobs) {
      const { jobId, body } = message(job);
      const properties = {
        persistent: true,
        contentType: "application/json",
        messageId: jobId,
      };
      if (job.user_id !== false) properties.userId = login; // RabbitMQ checks it is our login
      if (body.options.broker_priority !== undefined) properties.priority = body.options.broker_priority;
      channel.publish("", job.queue, Buffer.from(JSON.stringify(body)), { ...properties, mandatory: true });
      ids.push(jobId);
    }
    await channel.waitForConfirms();
    if (returned.length > 0) throw new Error(`unroutable (no such queue): ${returned.join(", ")}`);
    await channel.close();
    console.log(JSON.stringify(ids));
  } finally {
    await connection.close();
  }
}

main().catch((error) => {
  console.error(`publish failed: ${error.message}`);
  process.exit(1);
});
