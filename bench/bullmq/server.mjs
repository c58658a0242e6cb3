// The HTTP anchor of make bench's api section: what a team would write with Fastify and BullMQ.
// POST /jobs validates a small JSON body against the route's JSON schema and adds one job with
// queue.add, answering 202 {"id"} once Redis took it (400 on a body the schema refuses);
// GET /healthz answers 200. One Node process, one Redis connection, bound to 127.0.0.1 only.
//
//   node bench/bullmq/server.mjs <redis url> <prefix> <queue> <port>
//
// SIGTERM closes the server and the queue and prints one JSON document {"added"}: the jobs this
// process added.
import Fastify from "fastify";
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [url, prefix, queueName, portArg] = process.argv.slice(2);
const connection = new IORedis(url, { maxRetriesPerRequest: null });
const queue = new Queue(queueName, { connection, prefix });
const app = Fastify({ logger: false });
let added = 0;

const schema = {
  body: {
    type: "object",
    required: ["type", "payload"],
    additionalProperties: false,
    properties: {
      type: { type: "string", minLength: 1, maxLength: 100, pattern: "^[a-z][a-z0-9_.]*$" },
      payload: { type: "object" },
    },
  },
};

app.post("/jobs", { schema }, async (request, reply) => {
  const job = await queue.add(request.body.type, request.body.payload);
  added += 1;
  reply.code(202);
  return { id: job.id };
});
app.get("/healthz", async () => ({ ok: true }));

async function stop() {
  await app.close();
  await queue.close();
  await connection.quit();
  console.log(JSON.stringify({ added }));
  process.exit(0);
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
app.listen({ host: "127.0.0.1", port: Number(portArg) }).catch((error) => {
  console.error(error);
  process.exit(1);
});
