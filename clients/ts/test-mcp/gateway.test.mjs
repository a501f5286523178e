// The Vercel AI SDK's MCP client (@ai-sdk/mcp) through the sidecar's MCP gateway,
// with @modelcontextprotocol/server-everything behind it as the server named
// "everything". Run by tests/integration/mcp/test_node_clients.py, which starts
// both and sets MCP_GATEWAY_URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createMCPClient } from "@ai-sdk/mcp";

const url = process.env.MCP_GATEWAY_URL;

async function clientFor(user) {
  return createMCPClient({
    transport: { type: "http", url, headers: { "x-user-id": user, "x-session-id": "node" } },
  });
}

test("lists the server's tools under its name and calls one", { skip: !url }, async () => {
  const client = await clientFor(`vercel-${process.pid}`);
  try {
    const tools = await client.tools();
    assert.ok("everything__echo" in tools, Object.keys(tools).join(", "));
    assert.ok(Object.keys(tools).every((name) => name.startsWith("everything__")));
    const result = await tools.everything__echo.execute(
      { message: "hello from node" },
      { toolCallId: "call-1", messages: [] },
    );
    assert.match(JSON.stringify(result), /hello from node/);
  } finally {
    await client.close();
  }
});

test("a tool the policy denies is absent and refused", { skip: !url }, async () => {
  const client = await clientFor(`vercel-denied-${process.pid}`);
  try {
    const tools = await client.tools();
    assert.ok(!("everything__get-env" in tools));
  } finally {
    await client.close();
  }
});
