import { expect, test } from '@jest/globals';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { DropTracker } from './overlaynetwork.drops.js';
import { newScope } from './overlaynetwork.scope.js';

const overlay = (mode: 'FailClosed' | 'Monitor') =>
  ({
    metadata: { name: 'mesh' },
    spec: { addressPool: '10.0.0.0/24', dataPlane: { mode } },
    status: { epoch: 1 },
  }) as unknown as OverlayNetwork;

const tunnel = (node: string, peers: Record<string, number>) =>
  ({
    spec: { nodeName: node },
    status: {
      drops: { peers: Object.entries(peers).map(([n, packets]) => ({ node: n, packets, bytes: 0 })) },
    },
  }) as unknown as NodeTunnel;

test('a rising pair: Degraded facts every pass of the episode, one Event, a pass asked for when it ends', () => {
  const tracker = new DropTracker(90_000);
  const members = new Set(['a', 'b']);
  const pass = (s: number, tunnels: NodeTunnel[], mode: 'FailClosed' | 'Monitor' = 'FailClosed') => {
    const scope = newScope(overlay(mode), overlay(mode), 'mesh', new Date(s * 1000));
    const facts = tracker.track(scope, members, tunnels);
    return {
      facts,
      events: scope.events.map((e) => `${e.type} ${e.reason}: ${e.message}`),
      requeue: scope.requeueAfterMs,
    };
  };
  expect(pass(0, [tunnel('a', { b: 3 })])).toEqual({
    facts: { mode: 'FailClosed', pairs: [] },
    events: [],
    requeue: undefined,
  });
  expect(pass(30, [tunnel('a', { b: 5 })])).toEqual({
    facts: { mode: 'FailClosed', pairs: ['a/b'] },
    events: ['Warning PlaintextDropped: plaintext dropped by the fail-closed rules between a/b'],
    requeue: 90_000,
  });
  // the other side rises too, and again: the same episode, no second Event
  expect(pass(60, [tunnel('a', { b: 9 }), tunnel('b', { a: 1 })])).toMatchObject({
    facts: { pairs: ['a/b'] },
    events: [],
    requeue: 90_000,
  });
  // counts stand still: the condition holds until a window after the last rise, then clears
  expect(pass(149, [tunnel('a', { b: 9 }), tunnel('b', { a: 1 })]).facts.pairs).toEqual(['a/b']);
  expect(pass(150, [tunnel('a', { b: 9 }), tunnel('b', { a: 1 })])).toEqual({
    facts: { mode: 'FailClosed', pairs: [] },
    events: [],
    requeue: undefined,
  });
  // a new episode: a new Event (Monitor mode: the plaintext left, counted)
  expect(pass(200, [tunnel('a', { b: 10 }), tunnel('b', { a: 1 })], 'Monitor').events).toEqual([
    'Warning PlaintextSent: plaintext sent and counted (Monitor mode) between a/b',
  ]);
  tracker.forget('mesh');
  expect(pass(210, [tunnel('a', { b: 20 })]).facts.pairs).toEqual([]); // baseline again
});
