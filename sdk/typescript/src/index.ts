/**
 * @echoelmusic/sdk: a TypeScript client for the Echoelmusic Video Studio REST API.
 *
 *     import { EchoelClient } from "@echoelmusic/sdk";
 *     const client = new EchoelClient({ apiKey: "ek_...", baseUrl: "http://127.0.0.1:7860" });
 *     const result = await client.generate({ prompt: "A serene lake at sunset", durationSeconds: 8, resolution: "1080p" });
 *     console.log(`Video URL: ${result.videoUrl}`);
 *
 * The SDK speaks camelCase (`durationSeconds`, `videoUrl`); the wire format is the API's
 * snake_case. Request and response types are generated from the server's OpenAPI document
 * (`src/schema.ts`, `npm run generate`), so they cannot drift from it (a test compares them).
 * It needs only the platform's `fetch`, `WebSocket` (for `events`; pass one in options where the
 * platform has none, e.g. the `ws` package on Node < 22) and Web Crypto (webhook verification).
 */

import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

// -- camelCase <-> snake_case -----------------------------------------------------------------------

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/** A wire type with its keys (deeply) in camelCase. */
export type Camelize<T> = T extends readonly (infer U)[]
  ? Camelize<U>[]
  : T extends object
    ? { [K in keyof T as K extends string ? CamelCase<K> : K]: Camelize<T[K]> }
    : T;

const toSnakeKey = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const toCamelKey = (key: string) => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function convertKeys(value: unknown, convert: (key: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => convertKeys(v, convert));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [convert(k), convertKeys(v, convert)]));
  }
  return value;
}

/** `value` with its keys (deeply) in snake_case: what the API takes. */
export const toSnake = <T>(value: unknown) => convertKeys(value, toSnakeKey) as T;
/** `value` with its keys (deeply) in camelCase: what the SDK returns. */
export const toCamel = <T>(value: unknown) => convertKeys(value, toCamelKey) as T;

// -- the API's shapes, in camelCase -----------------------------------------------------------------

export type GenerateOptions = Camelize<Schemas["GenerationRequest"]>;
export type Submission = Camelize<Schemas["SubmitResponse"]>;
export type TaskStatus = Camelize<Schemas["TaskStatus"]>;
export type VideoResult = Camelize<Schemas["TaskResult"]>;
export type ModelInfo = Camelize<Schemas["ModelInfo"]>;
export type GenreInfo = Camelize<Schemas["GenreInfo"]>;
export type TaskPage = Camelize<Schemas["TaskPage"]>;
export type TaskEvent = { type: string; [field: string]: unknown };

/** The genius routes that take a JSON body (POST), and what each takes and returns (snake_case, as on the wire). */
type JsonPost<P> = P extends { post: { requestBody?: { content: { "application/json": infer B } } } } ? B : never;
type JsonReply<M> = M extends { responses: infer R }
  ? R extends { 200: { content: { "application/json": infer J } } } ? J
    : R extends { 202: { content: { "application/json": infer J } } } ? J : unknown
  : unknown;
export type GeniusPostPath = {
  [P in keyof paths]: P extends `/v1/genius/${string}` ? (JsonPost<paths[P]> extends never ? never : P) : never;
}[keyof paths];
export type GeniusGetPath = {
  [P in keyof paths]: P extends `/v1/genius/${string}` ? (paths[P] extends { get: object } ? P : never) : never;
}[keyof paths];

// -- errors -----------------------------------------------------------------------------------------

/** Any failure: `status` (HTTP, when there was a response) and the API's `{error, detail, type}`. */
export class EchoelError extends Error {
  readonly status?: number;
  readonly error?: string;
  readonly detail?: string;
  readonly type?: string;
  readonly headers?: Headers;

  constructor(message: string, init: { status?: number; error?: string; detail?: string; type?: string; headers?: Headers } = {}) {
    super(message);
    this.name = new.target.name;
    Object.assign(this, init);
  }
}
/** The server could not be reached, or the connection broke. */
export class APIConnectionError extends EchoelError {}
/** 400, 413, 422: invalid parameters; `detail` names the field and its bound. */
export class BadRequestError extends EchoelError {}
/** 401: missing or invalid API key. */
export class AuthenticationError extends EchoelError {}
/** 403: the key may not do this. */
export class PermissionDeniedError extends EchoelError {}
/** 404: no such task, file or route (another key's task too). */
export class NotFoundError extends EchoelError {}
/** 409: e.g. the result of a task that has not completed (`type` "TaskNotReady"). */
export class ConflictError extends EchoelError {}
/** 5xx: the server failed. */
export class ServerError extends EchoelError {}

/** Reads `Retry-After` (seconds, or an HTTP date) of a 429 or 503. */
function retryAfterSeconds(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

/** 429: too many requests; `retryAfter` is the server's wait in seconds. */
export class RateLimitError extends EchoelError {
  readonly retryAfter?: number;
  constructor(message: string, init: ConstructorParameters<typeof EchoelError>[1] = {}) {
    super(message, init);
    this.retryAfter = init.headers ? retryAfterSeconds(init.headers) : undefined;
  }
}
/** 503: maintenance, overload, or a model this server cannot run; `retryAfter` when the server gave one. */
export class ServiceUnavailableError extends ServerError {
  readonly retryAfter?: number;
  constructor(message: string, init: ConstructorParameters<typeof EchoelError>[1] = {}) {
    super(message, init);
    this.retryAfter = init.headers ? retryAfterSeconds(init.headers) : undefined;
  }
}
/** A task ended `failed`: `type` is the server's error type (e.g. "VramExceeded"). */
export class GenerationFailed extends EchoelError {
  constructor(readonly taskId: string, init: { error?: string; detail?: string; type?: string } = {}) {
    super(`task ${taskId} failed: ${init.detail ?? init.error ?? "unknown error"}${init.type ? ` (${init.type})` : ""}`, init);
  }
}
/** A task ended `cancelled`. */
export class TaskCancelled extends EchoelError {
  constructor(readonly taskId: string, detail?: string) {
    super(`task ${taskId} was cancelled${detail ? `: ${detail}` : ""}`, { detail });
  }
}

function errorFor(status: number, body: unknown, headers: Headers): EchoelError {
  const fields = (body && typeof body === "object" ? body : {}) as { error?: string; detail?: string; type?: string };
  const init = { status, error: fields.error, detail: fields.detail, type: fields.type, headers };
  const message = `${status} ${fields.error ?? "error"}${fields.detail ? `: ${fields.detail}` : typeof body === "string" && body ? `: ${body.slice(0, 200)}` : ""}`;
  if (status === 429) return new RateLimitError(message, init);
  if (status === 503) return new ServiceUnavailableError(message, init);
  if (status >= 500) return new ServerError(message, init);
  const byStatus: Record<number, typeof EchoelError> = {
    400: BadRequestError, 413: BadRequestError, 422: BadRequestError, 401: AuthenticationError,
    403: PermissionDeniedError, 404: NotFoundError, 409: ConflictError,
  };
  return new (byStatus[status] ?? EchoelError)(message, init);
}

// -- the client -------------------------------------------------------------------------------------

export interface EchoelClientOptions {
  /** An API key (`python -m studio keys create`). */
  apiKey: string;
  /** The server, e.g. "http://127.0.0.1:7860" (default: https://api.echoelmusic.com). */
  baseUrl?: string;
  /** A fetch implementation (default: the platform's). */
  fetch?: typeof fetch;
  /** A WebSocket constructor for `events` (default: the platform's; on Node < 22 pass `ws`'s). */
  WebSocket?: unknown;
  /** Retries of GET requests on 429, 503 and connection errors, honouring Retry-After (default 3). */
  maxRetries?: number;
}

export interface WaitOptions {
  /** Called with each new progress (0-1) and step text while the task runs. */
  onProgress?: (progress: number, step: string) => void;
  /** How often to poll the status (default 1000 ms). */
  pollIntervalMs?: number;
  /** Give up (and leave the task running) after this long (default: never). */
  timeoutMs?: number;
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class EchoelClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetchImpl: typeof fetch;
  private readonly WebSocketImpl: unknown;
  private readonly maxRetries: number;

  constructor(options: EchoelClientOptions) {
    if (!options?.apiKey) throw new EchoelError("apiKey is required");
    this.apiKey = options.apiKey;
    this.baseUrl = (options.baseUrl ?? "https://api.echoelmusic.com").replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket;
    this.maxRetries = options.maxRetries ?? 3;
  }

  /** Submit a generation and wait for its video: the seed's one-call form. */
  async generate(options: GenerateOptions, wait: WaitOptions = {}): Promise<VideoResult> {
    const submitted = await this.submit(options);
    return this.wait(submitted.taskId, wait);
  }

  /** Queue a generation; returns at once with the task id, queue position and an estimate. */
  async submit(options: GenerateOptions, idempotencyKey?: string): Promise<Submission> {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : undefined;
    return toCamel(await this.request("POST", "/v1/generate", toSnake(options), headers));
  }

  async status(taskId: string): Promise<TaskStatus> {
    return toCamel(await this.request("GET", `/v1/status/${encodeURIComponent(taskId)}`));
  }

  /** The finished task's result; `videoUrl` and `thumbnailUrl` are absolute URLs on `baseUrl`. */
  async result(taskId: string): Promise<VideoResult> {
    const result = toCamel<VideoResult>(await this.request("GET", `/v1/result/${encodeURIComponent(taskId)}`));
    return { ...result, videoUrl: this.absolute(result.videoUrl), thumbnailUrl: this.absolute(result.thumbnailUrl) };
  }

  async cancel(taskId: string): Promise<TaskStatus> {
    return toCamel(await this.request("POST", `/v1/cancel/${encodeURIComponent(taskId)}`));
  }

  /** Poll until the task ends: its result, or `GenerationFailed` / `TaskCancelled`. */
  async wait(taskId: string, options: WaitOptions = {}): Promise<VideoResult> {
    const started = Date.now();
    let last = "";
    for (;;) {
      const status = await this.status(taskId);
      const seen = `${status.progress} ${status.currentStep}`;
      if (options.onProgress && seen !== last) options.onProgress(status.progress, status.currentStep);
      last = seen;
      if (status.status === "completed") return this.result(taskId);
      if (status.status === "failed") {
        throw new GenerationFailed(taskId, { error: "Task failed", detail: status.error ?? undefined, type: status.errorType ?? undefined });
      }
      if (status.status === "cancelled") throw new TaskCancelled(taskId, status.error ?? undefined);
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs) {
        throw new EchoelError(`task ${taskId} is still ${status.status} after ${options.timeoutMs} ms`);
      }
      await sleep(options.pollIntervalMs ?? 1000);
    }
  }

  /** The task's video (or any media URL of this server) as bytes. */
  async download(videoUrlOrTaskId: string): Promise<Uint8Array> {
    const url = videoUrlOrTaskId.includes("/") ? videoUrlOrTaskId : `/v1/videos/${videoUrlOrTaskId}.mp4`;
    const response = await this.send("GET", this.absolute(url));
    return new Uint8Array(await response.arrayBuffer());
  }

  /** The task's live events (`progress`, `frame_available`, then `complete`, `error` or `cancelled`). */
  async *events(taskId: string): AsyncGenerator<TaskEvent> {
    const Socket = this.WebSocketImpl as (new (url: string) => WebSocketLike) | undefined;
    if (!Socket) throw new EchoelError("no WebSocket on this platform: pass one in the options (e.g. the ws package)");
    const url = new URL(`/v1/ws/${encodeURIComponent(taskId)}`, this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("api_key", this.apiKey);
    const socket = new Socket(url.toString());
    const queue: (TaskEvent | Error | null)[] = [];
    let wake: (() => void) | undefined;
    const push = (item: TaskEvent | Error | null) => { queue.push(item); wake?.(); };
    socket.onmessage = (message) => {
      try { push(JSON.parse(String(message.data)) as TaskEvent); } catch { push(new EchoelError("a websocket message that is not JSON")); }
    };
    socket.onerror = () => push(new APIConnectionError("the websocket failed"));
    socket.onclose = (event) => push(event.code >= 4000 && event.code < 5000 ? errorFor(event.code - 4000, { detail: event.reason }, new Headers()) : null);
    try {
      for (;;) {
        if (!queue.length) await new Promise<void>((resolve) => { wake = resolve; });
        const item = queue.shift();
        if (item === undefined) continue;
        if (item === null) return;
        if (item instanceof Error) throw item;
        yield item;
        if (TERMINAL_EVENTS.has(item.type)) return;
      }
    } finally {
      socket.close();
    }
  }

  async models(): Promise<ModelInfo[]> {
    return toCamel(await this.request("GET", "/v1/models"));
  }

  async genres(): Promise<GenreInfo[]> {
    return toCamel(await this.request("GET", "/v1/genres"));
  }

  async health(): Promise<Record<string, unknown>> {
    return toCamel(await this.request("GET", "/v1/health"));
  }

  /** Your library: your tasks newest first; pass a page's `nextCursor` as `cursor` for the next. */
  async tasks(query: { limit?: number; cursor?: string; status?: string; kind?: string } = {}): Promise<TaskPage> {
    const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    const page = toCamel<TaskPage>(await this.request("GET", `/v1/tasks${params.toString() ? `?${params}` : ""}`));
    return { ...page, tasks: page.tasks.map((t) => ({ ...t, videoUrl: t.videoUrl && this.absolute(t.videoUrl), thumbnailUrl: t.thumbnailUrl && this.absolute(t.thumbnailUrl) })) };
  }

  /** Delete a finished task of yours and its files. */
  async deleteTask(taskId: string): Promise<void> {
    await this.request("DELETE", `/v1/tasks/${encodeURIComponent(taskId)}`);
  }

  /** A genius feature's POST route, e.g. `genius("/v1/genius/orchestrator/select-model", {...})`; body and reply in the API's snake_case. */
  async genius<P extends GeniusPostPath>(path: P, body: JsonPost<paths[P]>): Promise<JsonReply<paths[P] extends { post: infer M } ? M : never>> {
    return (await this.request("POST", path, body)) as never;
  }

  /** A genius feature's GET route (fill the `{...}` parameters of the path yourself). */
  async geniusGet(path: GeniusGetPath | string): Promise<unknown> {
    return this.request("GET", path);
  }

  // -- transport ------------------------------------------------------------------------------------

  private absolute(url: string): string {
    return new URL(url, `${this.baseUrl}/`).toString();
  }

  private async request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<unknown> {
    const response = await this.send(method, `${this.baseUrl}${path}`, body, headers);
    if (response.status === 204) return undefined;
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      throw new EchoelError(`expected JSON from ${method} ${path}, got ${response.headers.get("content-type") ?? "no content type"}`, { status: response.status });
    }
  }

  private async send(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    const retries = method === "GET" || headers["Idempotency-Key"] ? this.maxRetries : 0;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers: { Authorization: `Bearer ${this.apiKey}`, Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (cause) {
        if (attempt < retries) { await sleep(backoff(attempt)); continue; }
        throw new APIConnectionError(`could not reach ${url}: ${(cause as Error).message}`);
      }
      if (response.ok) return response;
      const text = await response.text();
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON: keep the text */ }
      const error = errorFor(response.status, parsed, response.headers);
      if (attempt < retries && (error instanceof RateLimitError || error instanceof ServiceUnavailableError)) {
        await sleep(Math.min(30, error.retryAfter ?? backoff(attempt) / 1000) * 1000);
        continue;
      }
      throw error;
    }
  }
}

const TERMINAL_EVENTS = new Set(["complete", "error", "cancelled"]);
const backoff = (attempt: number) => Math.min(8000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);

interface WebSocketLike {
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  close(): void;
}

// -- webhooks ---------------------------------------------------------------------------------------

/**
 * Whether a webhook the studio sent is genuine: its Standard Webhooks signature (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature` headers; HMAC-SHA256 of `id.timestamp.body` with your
 * key's webhook secret, `whsec_...`) matches the raw body, and it is at most `toleranceSeconds`
 * old (default 300). Pass the body exactly as received (a string), not re-serialised JSON.
 */
export async function verifyWebhook(secret: string, headers: Headers | Record<string, string>, body: string,
                                    toleranceSeconds = 300): Promise<boolean> {
  const get = (name: string) => headers instanceof Headers ? headers.get(name) : headers[name] ?? headers[name.toLowerCase()];
  const id = get("webhook-id");
  const timestamp = get("webhook-timestamp");
  const signatures = get("webhook-signature");
  if (!id || !timestamp || !signatures) return false;
  const sent = Number(timestamp);
  if (!Number.isFinite(sent) || Math.abs(Date.now() / 1000 - sent) > toleranceSeconds) return false;
  const key = Uint8Array.from(atob(secret.replace(/^whsec_/, "")), (c) => c.charCodeAt(0));
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(`${id}.${timestamp}.${body}`)));
  const expected = btoa(String.fromCharCode(...mac));
  return signatures.split(" ").some((entry) => {
    const [version, signature] = entry.split(",", 2);
    return version === "v1" && signature !== undefined && constantTimeEqual(signature, expected);
  });
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
