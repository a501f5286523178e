// Drives a running sidecar over real gRPC from Node.js with the generated
// TypeScript stubs (protobuf-es) and Connect's gRPC transport.
// `npm test --prefix clients/ts` talks to `make run` (127.0.0.1:50051);
// SIDECAR_ADDR=host:port picks another sidecar. Any configured provider will do.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { LLMManagerService } from "../gen/llm_manager/v1/llm_manager_pb.js";

const address = process.env.SIDECAR_ADDR || "127.0.0.1:50051";
const transport = createGrpcTransport({ baseUrl: `http://${address}` });
const client = createClient(LLMManagerService, transport);
const user = `node-${process.pid}`;
const headers = { "x-user-id": user, "x-session-id": "s1", "x-request-id": "node-req-1" };

test("Ask, AskFull, AskStream and GetUsage with the user context in metadata", async () => {
  const asked = await client.ask({ prompt: "hello from node" }, { headers });
  assert.ok(asked.text.length > 0);

  const full = await client.askFull({ prompt: "and more", params: { temperature: 0.2 } }, { headers });
  assert.ok(full.text.length > 0);
  assert.ok(full.metadata?.provider);
  assert.equal(full.metadata?.requestId, "node-req-1");
  assert.ok((full.metadata?.usage?.totalTokens ?? 0n) > 0n);

  const deltas = [];
  let last;
  for await (const chunk of client.askStream({ prompt: "stream please" }, { headers })) {
    deltas.push(chunk.delta);
    last = chunk;
  }
  assert.ok(deltas.join("").length > 0);
  assert.equal(last.metadata?.provider, full.metadata?.provider);

  const usage = await client.getUsage({}, { headers });
  assert.equal(usage.total?.requests, 3n);
  assert.equal(usage.rows.length, 1);
  assert.equal(usage.rows[0].sessionId, "s1");
});

test("a call without x-user-id is UNAUTHENTICATED, naming the key", async () => {
  await assert.rejects(
    client.ask({ prompt: "who am i" }, { headers: { "x-session-id": "s1" } }),
    (error) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.Unauthenticated);
      assert.match(error.rawMessage, /x-user-id/);
      return true;
    },
  );
});
