// The plugin retries what kubectl retries: a request the API server turned away for now (429 Too Many
// Requests, e.g. from API priority and fairness on a busy or just-started server; 503 while it is not ready),
// after the Retry-After it asked for, capped, a bounded number of times. Anything else fails at once.
import { statusCodeOf } from '../lib/kube.js';

export interface RetryOptions {
  attempts?: number;
  /** the wait when the server names none, doubled each attempt; default 250 ms */
  baseDelayMs?: number;
  /** no single wait is longer; default 5 s */
  maxDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const transient = (code: number | undefined) => code === 429 || code === 503;

/** The Retry-After the server sent with an error from client-node, in ms, if any. */
export function retryAfterMs(err: unknown): number | undefined {
  const headers = (err as { headers?: Record<string, string | undefined> } | null)?.headers;
  const value = headers?.['retry-after'] ?? headers?.['Retry-After'];
  const seconds = value === undefined ? NaN : Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

export async function retryTransient<T>(call: () => Promise<T>, o: RetryOptions = {}): Promise<T> {
  const attempts = o.attempts ?? 5;
  const base = o.baseDelayMs ?? 250;
  const max = o.maxDelayMs ?? 5_000;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= attempts || !transient(statusCodeOf(err))) throw err;
      await sleep(Math.min(max, retryAfterMs(err) ?? base * 2 ** (attempt - 1)));
    }
  }
}
