// The SDK against a launched studio (tests/test_sdk_typescript.py starts one on the tiny model and
// runs `node --test` with ECHOEL_URL, ECHOEL_KEY and ECHOEL_WEBHOOK set).
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";

import {
  AuthenticationError, BadRequestError, ConflictError, EchoelClient, GenerationFailed, NotFoundError,
  RateLimitError, verifyWebhook,
} from "../dist/index.js";

const baseUrl = process.env.ECHOEL_URL;
const apiKey = process.env.ECHOEL_KEY;
const client = new EchoelClient({ apiKey, baseUrl, WebSocket });
const SMALL = { durationSeconds: 1, fps: 12, resolution: "480p", numInferenceSteps: 10, model: "tiny" };

test("the seed's snippet: generate returns the video's URL", async () => {
  const result = await client.generate({ prompt: "A serene lake at sunset", ...SMALL }, { pollIntervalMs: 200 });
  assert.equal(result.status, "completed");
  assert.match(result.videoUrl, new RegExp(`^${baseUrl}/v1/videos/[0-9a-f-]{36}\\.mp4$`));
  assert.equal(result.metadata.model, "tiny");
  assert.equal(result.durationSeconds, 1);
  const video = await client.download(result.videoUrl);
  assert.equal(new TextDecoder().decode(video.slice(4, 8)), "ftyp");
  const page = await client.tasks({ limit: 5 });
  assert.ok(page.tasks.some((t) => t.taskId === result.taskId && t.videoUrl === result.videoUrl));
});

test("submit, then the websocket's events end with complete", async () => {
  const submitted = await client.submit({ prompt: "a red kite over a beach", ...SMALL });
  assert.match(submitted.taskId, /^[0-9a-f-]{36}$/);
  assert.ok(submitted.queuePosition >= 0 && submitted.estimatedTimeSeconds > 0);
  const seen = [];
  for await (const event of client.events(submitted.taskId)) seen.push(event.type);
  assert.equal(seen.at(-1), "complete");
  assert.ok(seen.includes("progress"), seen.join());
  assert.equal((await client.status(submitted.taskId)).status, "completed");
});

test("errors are typed from {error, detail, type}", async () => {
  await assert.rejects(client.submit({ prompt: "x", durationSeconds: 99 }), (error) =>
    error instanceof BadRequestError && error.status === 400 && /duration_seconds/.test(error.detail));
  await assert.rejects(client.status("00000000-0000-0000-0000-000000000000"), NotFoundError);
  await assert.rejects(new EchoelClient({ apiKey: "wrong", baseUrl }).models(), AuthenticationError);
  const running = await client.submit({ prompt: "a slow one", ...SMALL, numInferenceSteps: 150 });
  await assert.rejects(client.result(running.taskId), ConflictError);
  await client.cancel(running.taskId);
  await assert.rejects(client.wait(running.taskId, { pollIntervalMs: 100 }), (error) => error.name === "TaskCancelled");
});

test("a task that fails ends the wait with GenerationFailed and the server's reason", async () => {
  // a model this CPU server cannot load: the task is queued, then fails naming why
  await assert.rejects(client.generate({ prompt: "x", ...SMALL, model: "wan2.1-t2v-14b" }, { pollIntervalMs: 100 }),
    (error) => error instanceof GenerationFailed && error.type === "ModelUnavailable" && /CUDA/.test(error.detail));
});

test("429 carries retryAfter from the server", async () => {
  const limited = new EchoelClient({ apiKey, baseUrl, maxRetries: 0 });
  let error;
  for (let i = 0; i < 12 && !error; i++) {
    await limited.submit({ prompt: `burst ${i}`, ...SMALL }).catch((e) => { error = e; });
  }
  assert.ok(error instanceof RateLimitError, String(error));
  assert.ok(error.retryAfter > 0 && error.retryAfter <= 60, String(error.retryAfter));
});

test("a genius route, typed from the OpenAPI document", async () => {
  const reply = await client.genius("/v1/genius/orchestrator/select-model",
    { prompt: "a dragon over mountains", duration_seconds: 4, target_resolution: "480p" });
  assert.equal(typeof reply.recommended_model, "string");
  const transitions = await client.geniusGet("/v1/genius/scene/transitions");
  assert.ok(Array.isArray(transitions) || typeof transitions === "object");
});

test("webhook signatures: the server's verify, a tampered body does not", async () => {
  const sample = JSON.parse(process.env.ECHOEL_WEBHOOK);
  assert.equal(await verifyWebhook(sample.secret, sample.headers, sample.body), true);
  assert.equal(await verifyWebhook(sample.secret, sample.headers, sample.body.replace("completed", "failed")), false);
  assert.equal(await verifyWebhook("whsec_" + btoa("another secret"), sample.headers, sample.body), false);
});
