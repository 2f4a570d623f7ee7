import { forEachLimit, Turns } from './cooperative.js';

test('forEachLimit keeps at most `limit` in flight and visits every item once', async () => {
  let inFlight = 0;
  let most = 0;
  const seen: number[] = [];
  await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    most = Math.max(most, ++inFlight);
    await new Promise((r) => setTimeout(r, 5));
    seen.push(n);
    inFlight--;
  });
  expect(most).toBe(3);
  expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
});

test('forEachLimit starts nothing new after a failure, lets the others finish, then throws it', async () => {
  const started: number[] = [];
  let finished = 0;
  await expect(
    forEachLimit([1, 2, 3, 4, 5], 2, async (n) => {
      started.push(n);
      if (n === 1) throw new Error('boom');
      await new Promise((r) => setTimeout(r, 5));
      finished++;
    }),
  ).rejects.toThrow('boom');
  expect(started).toEqual([1, 2]);
  expect(finished).toBe(1);
});

test('Turns runs one function per event-loop turn, in order, and passes failures on', async () => {
  const turns = new Turns();
  const order: string[] = [];
  const ticker = setInterval(() => order.push('tick'), 0);
  const a = turns.run(() => {
    order.push('a');
    const until = Date.now() + 5;
    while (Date.now() < until); // busy
    return 1;
  });
  const b = turns.run(() => {
    throw new Error('b failed');
  });
  const c = turns.run(() => {
    order.push('c');
    return 3;
  });
  await expect(a).resolves.toBe(1);
  await expect(b).rejects.toThrow('b failed');
  await expect(c).resolves.toBe(3);
  clearInterval(ticker);
  expect(order.filter((x) => x !== 'tick')).toEqual(['a', 'c']);
});

test('Turns.steps runs each stretch of a generator in a turn of its own, between other queued work', async () => {
  const turns = new Turns();
  const order: string[] = [];
  function* work(): Generator<void, string, undefined> {
    order.push('g1');
    yield;
    order.push('g2');
    yield;
    order.push('g3');
    return 'done';
  }
  const g = turns.steps(work());
  // Queued after the generator's first stretch: it runs before the second one.
  await Promise.resolve();
  const other = turns.run(() => order.push('other'));
  await expect(g).resolves.toBe('done');
  await other;
  expect(order.indexOf('g1')).toBe(0);
  expect(order.indexOf('other')).toBeGreaterThan(0);
  expect(order.indexOf('other')).toBeLessThan(order.indexOf('g3'));
  expect(order.filter((x) => x.startsWith('g'))).toEqual(['g1', 'g2', 'g3']);
});
