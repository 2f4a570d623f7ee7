import { ConflictEvents } from './overlaynetwork.conflicts.js';

test('ConflictEvents: one Warning per problem when it appears, none while it stays, again when it returns', () => {
  const e = new ConflictEvents();
  const port = { reason: 'PortConflict' as const, message: 'overlay b also listens on port 51890 on n1' };
  const key = { reason: 'KeyConflict' as const, message: 'nodes n1, n2 publish the same public key (x)' };
  expect(e.events('a', [port])).toEqual([{ type: 'Warning', ...port }]);
  expect(e.events('a', [port])).toEqual([]);
  expect(e.events('a', [port, key])).toEqual([{ type: 'Warning', ...key }]);
  expect(e.events('b', [port])).toEqual([{ type: 'Warning', ...port }]); // per overlay
  expect(e.events('a', [])).toEqual([]);
  expect(e.events('a', [port])).toEqual([{ type: 'Warning', ...port }]);
  e.forget('a');
  expect(e.events('a', [port])).toEqual([{ type: 'Warning', ...port }]);
});
