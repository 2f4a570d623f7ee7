import {
  EVENT_NAMES,
  agentsBack,
  agentsUnreachable,
  keySecretAltered,
  keySecretReplaced,
  listNames,
  NameSample,
  nodesJoined,
  pairEvents,
  poolExhausted,
  rotationAborted,
  rotationCompleted,
  rotationStarted,
} from './events.js';

const names = (n: number) => Array.from({ length: n }, (_, i) => `n${i}`);

test.each([
  [[], ''],
  [['a', 'b'], 'a, b'],
  [names(EVENT_NAMES), names(EVENT_NAMES).join(', ')],
  [names(EVENT_NAMES + 3), `${names(EVENT_NAMES).join(', ')} (+3 more)`],
])('listNames(%j)', (list, text) => {
  expect(listNames(list)).toBe(text);
});

test('NameSample counts every pair, names the first ones, and builds a reason only for those', () => {
  const sample = new NameSample();
  let reasons = 0;
  for (let i = 0; i < EVENT_NAMES + 2; i++) sample.addPair(`a${i}`, `b${i}`, () => `r${++reasons}`);
  expect(sample.count).toBe(EVENT_NAMES + 2);
  expect(reasons).toBe(EVENT_NAMES);
  expect(sample.text()).toMatch(/^a0\/b0 \(r1\), .* \(\+2 more\)$/);
});

test('pairEvents: one per kind that has pairs', () => {
  const gained = new NameSample();
  gained.addPair('a', 'b');
  expect(pairEvents(gained, new NameSample())).toEqual([
    { type: 'Normal', reason: 'PairEncrypted', message: '1 pair(s) encrypted: a/b' },
  ]);
  expect(pairEvents(new NameSample(), new NameSample())).toEqual([]);
});

test.each([
  [
    keySecretReplaced(['a'], 3),
    'Warning KeySecretReplaced: key Secret of a was deleted or corrupted; new keys at epoch 3',
  ],
  [
    keySecretAltered(
      [
        { node: 'a', entry: 'a/b@3', problem: 'value for a does not open in its context' },
        { node: 'a', entry: 'a/c@3', problem: 'value for c does not open in its context' },
      ],
      4,
    ),
    'Warning KeySecretAltered: key Secret of a holds values the operator did not seal (a/b@3: value for a ' +
      'does not open in its context, a/c@3: value for c does not open in its context); refused, new keys at epoch 4',
  ],
  [
    agentsUnreachable([{ node: 'a', renewed: '2026-12-02T10:00:00Z' }]),
    'Warning AgentUnreachable: agent out of touch (Lease not renewed since 2026-12-02T10:00:00Z): a; its ' +
      'pairs are Unknown until it reports again (the data plane keeps its keys)',
  ],
  [agentsBack(['a', 'b']), 'Normal AgentReachable: agent back in touch: a, b'],
  [nodesJoined(['a', 'b']), 'Normal NodeJoined: joined: a, b'],
  [
    poolExhausted('10.0.0.0/30', ['c']),
    'Warning AddressPoolExhausted: address pool 10.0.0.0/30 is exhausted; no address for c',
  ],
  [
    rotationStarted({ phase: 'Staging', scope: 'Keys', targetEpoch: 2, startTime: 't', reason: 'scheduled' }),
    'Normal RotationStarted: staging epoch 2 (Keys, attempt 1): scheduled',
  ],
  [
    rotationAborted(
      { phase: 'Backoff', scope: 'Keys', targetEpoch: 2, startTime: 't', retryTime: 't9' },
      1,
      'timeout',
    ),
    'Warning RotationAborted: epoch 2 aborted, epoch 1 kept, retry at t9: timeout',
  ],
  [
    rotationCompleted(2, 'PresharedKeys', 3.14159),
    'Normal RotationCompleted: epoch 2 in effect (PresharedKeys) after 3.1s',
  ],
])('%j', (event, text) => {
  expect(`${event.type} ${event.reason}: ${event.message}`).toBe(text);
});
