import { KubeApiError } from '../lib/kube.js';
import { retryAfterMs, retryTransient } from './retry.js';

function failing(codes: number[], headers?: Record<string, string>) {
  let calls = 0;
  const call = () => {
    const code = codes[calls++];
    if (code === undefined) return Promise.resolve('ok');
    return Promise.reject(Object.assign(new KubeApiError(`HTTP ${code}`, code), { headers }));
  };
  return { call, calls: () => calls };
}

test.each([
  ['429 then success', [429], 'ok', 2],
  ['503 twice then success', [503, 503], 'ok', 3],
])('%s: retried until it succeeds', async (_name, codes, want, calls) => {
  const slept: number[] = [];
  const f = failing(codes);
  await expect(retryTransient(f.call, { sleep: (ms) => Promise.resolve(void slept.push(ms)) })).resolves.toBe(
    want,
  );
  expect(f.calls()).toBe(calls);
  expect(slept).toEqual([250, 500].slice(0, calls - 1));
});

test.each([403, 404, 409, 500])('HTTP %i fails at once', async (code) => {
  const f = failing([code]);
  await expect(retryTransient(f.call, { sleep: () => Promise.resolve() })).rejects.toThrow(`HTTP ${code}`);
  expect(f.calls()).toBe(1);
});

test('gives up after the attempts, with the last error', async () => {
  const f = failing([429, 429, 429, 429]);
  await expect(retryTransient(f.call, { attempts: 3, sleep: () => Promise.resolve() })).rejects.toThrow(
    'HTTP 429',
  );
  expect(f.calls()).toBe(3);
});

test('waits the Retry-After the server asked for, capped', async () => {
  const slept: number[] = [];
  const f = failing([429, 429], { 'retry-after': '1' });
  await retryTransient(f.call, { maxDelayMs: 800, sleep: (ms) => Promise.resolve(void slept.push(ms)) });
  expect(slept).toEqual([800, 800]);
  expect(retryAfterMs({ headers: { 'retry-after': '2' } })).toBe(2000);
  expect(retryAfterMs({ headers: { 'retry-after': 'soon' } })).toBeUndefined();
  expect(retryAfterMs(new Error('x'))).toBeUndefined();
});
