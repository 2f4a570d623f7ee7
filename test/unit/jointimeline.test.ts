import { agentSteps, describeTimeline, joinTimeline } from '../bench/jointimeline.js';

const line = (o: object) => JSON.stringify({ level: 30, ...o });
const OVL = 'ovl';

test("the agents' steps of a join come from their logs, only from lines after the join began", () => {
  const logs = {
    j: [
      line({ time: 900, msg: 'agent running' }), // an earlier life of the node: before the join
      line({ time: 1_500, msg: 'agent running' }),
      line({ time: 1_600, msg: 'peer configured', overlay: OVL, peer: 'a' }),
      line({ time: 1_650, msg: 'peer configured', overlay: OVL, peer: 'b' }),
      line({ time: 1_700, msg: 'status updated', overlay: OVL, peers: '0/2' }),
      line({ time: 2_400, msg: 'status updated', overlay: OVL, peers: '2/2' }),
      'not json',
    ].join('\n'),
    a: [
      line({ time: 1_800, msg: 'peer configured', overlay: OVL, peer: 'j' }),
      line({ time: 1_900, msg: 'peer configured', overlay: 'other', peer: 'j' }),
      line({ time: 2_500, msg: 'status updated', overlay: OVL, peers: '2/2' }),
    ].join('\n'),
    b: [
      line({ time: 2_000, msg: 'peer configured', overlay: OVL, peer: 'j' }),
      line({ time: 2_600, msg: 'status updated', overlay: OVL, peers: '2/2' }),
    ].join('\n'),
  };
  expect(agentSteps(logs, 'j', ['a', 'b'], OVL, 1_000)).toEqual({
    joinerRunning: 1_500,
    joinerDevice: 1_650,
    joinerReported: 2_400,
    peersDevice: 2_000,
    peersReported: 2_600,
  });
  // b never configured the joiner: no time for the step that needs every node
  const partial = agentSteps({ ...logs, b: '' }, 'j', ['a', 'b'], OVL, 1_000);
  expect(partial.peersDevice).toBeUndefined();
  expect(partial.peersReported).toBeUndefined();
});

test('the timeline is in seconds after the Node, and names the longest stretch', () => {
  const t = joinTimeline(1_000, {
    tunnelCreated: 1_200,
    secretWritten: 1_300,
    joinerRunning: 4_000,
    counted: 5_000,
  });
  expect(t).toEqual({ tunnelCreated: 0.2, secretWritten: 0.3, joinerRunning: 3, counted: 4 });
  expect(describeTimeline(t)).toBe(
    'tunnelCreated 0.20s, secretWritten 0.30s, joinerRunning 3.00s, joinerDevice -, peersDevice -, ' +
      'joinerReported -, peersReported -, counted 4.00s; longest: secretWritten -> joinerRunning 2.70s',
  );
});
