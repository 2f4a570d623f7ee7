import { judgeSkew, whyUnsupported, type SkewOperator } from './skew.js';

const op: SkewOperator = { release: '0.2.0', keyPayload: 2 };

test.each<[string, Parameters<typeof whyUnsupported>[0], string | undefined]>([
  ['the same release', { version: '0.2.0', keyPayloads: [2] }, undefined],
  ['a patch apart', { version: '0.2.5', keyPayloads: [2] }, undefined],
  ['one release older', { version: '0.1.0', keyPayloads: [2] }, undefined],
  ['one release newer, reading the old payload too', { version: '0.3.0', keyPayloads: [2, 3] }, undefined],
  ['no version published', undefined, 'publishes no version: older than 0.2.0'],
  ['two releases older', { version: '0.0.4', keyPayloads: [2] }, '0.0.4: 2 releases older'],
  ['two releases newer', { version: '0.4.1', keyPayloads: [2] }, '0.4.1: 2 releases newer'],
  ['another major', { version: '1.2.0', keyPayloads: [2] }, '1.2.0: another major version newer'],
  [
    'the previous key payload only',
    { version: '0.1.0', keyPayloads: [1] },
    '0.1.0: reads key payload 1, not 2',
  ],
  ['a newer key payload only', { version: '0.3.0', keyPayloads: [3] }, '0.3.0: reads key payload 3, not 2'],
  ['no key payload', { version: '0.2.0', keyPayloads: [] }, '0.2.0: reads key payload none, not 2'],
  ['not a release', { version: 'dev', keyPayloads: [2] }, 'publishes version "dev", not a release'],
])('%s', (_name, agent, want) => {
  expect(whyUnsupported(agent, op)).toBe(want);
});

test('the verdict names every unsupported agent, in order, and refuses rotations; agents not started are not judged', () => {
  const v = judgeSkew(
    [
      { node: 'c', reported: true, agent: undefined },
      { node: 'a', reported: true, agent: { version: '0.2.0', keyPayloads: [2] } },
      { node: 'b', reported: true, agent: { version: '0.0.1', keyPayloads: [1] } },
      { node: 'd', reported: false, agent: undefined },
    ],
    op,
  );
  expect(v.unsupported.map((u) => u.node)).toEqual(['b', 'c']);
  expect(v.problem).toEqual({
    reason: 'AgentVersionSkew',
    message:
      "agents outside the supported version skew (one release either side of the operator's 0.2.0, reading key " +
      'payload 2): b (0.0.1: 2 releases older), c (publishes no version: older than 0.2.0); rotations are ' +
      'refused until they are upgraded',
  });
  expect(v.refuseRotation).toBe(
    'agents cannot take part in a rotation: b (0.0.1: 2 releases older), c (publishes no version: older than 0.2.0)',
  );
});

test('all agents inside the skew: no problem, no refusal', () => {
  expect(
    judgeSkew(
      [
        { node: 'a', reported: true, agent: { version: '0.1.3', keyPayloads: [2] } },
        { node: 'b', reported: true, agent: { version: '0.3.0', keyPayloads: [2, 3] } },
      ],
      op,
    ),
  ).toEqual({ unsupported: [] });
});
