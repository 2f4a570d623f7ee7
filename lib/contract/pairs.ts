// Per-pair encryption status. Each agent reports only what it sees from its own side; a pair counts as
// encrypted only when both ends report Encrypted at the same epoch, because one side's fresh handshake can
// hide a peer that still uses the other key (the handshake it saw may be from before the peer rotated).
import type { PeerState } from '../../api/v1alpha1/nodetunnel.types.js';
import { yieldToEventLoop } from '../runtime/cooperative.js';

export interface SideReport {
  node: string;
  peers: ReadonlyArray<{ node: string; state: PeerState; epoch?: number | undefined }>;
}

export type PairState = 'Encrypted' | 'Pending' | 'Degraded';

export interface Pair {
  a: string;
  b: string;
  state: PairState;
  /** short reason, e.g. "a sees b Stale" */
  reason: string;
}

export interface PairSummary {
  total: number;
  encrypted: number;
  degraded: number;
  pairs: Pair[];
}

/**
 * With `epoch`, a pair is encrypted only when both sides report Encrypted at exactly that epoch (used while
 * a rotation is verified: encrypted at the old epoch does not count).
 */
export function computePairs(
  nodes: readonly string[],
  reports: readonly SideReport[],
  epoch?: number,
): PairSummary {
  const pairs: Pair[] = [];
  const ids = new NodeIds();
  const rows = reports.map((r) => ({ node: r.node, row: peerRow(ids, r.peers) }));
  const walk = walkPairs(ids, nodes, rows, epoch, (a, b, state, reason) =>
    pairs.push({ a, b, state, reason: reason() }),
  );
  let step = walk.next();
  while (!step.done) step = walk.next();
  return { ...step.value, pairs };
}

/**
 * Called once per pair, a < b, in order. `reason` builds the explanation of the state; it is only valid during the call (one
 * function serves the whole walk, so that 500k pairs allocate no closure each).
 */
export type PairVisitor = (a: string, b: string, state: PairState, reason: () => string) => void;

/** How many pairs visitPairs judges between two turns of the event loop. */
const PAIRS_PER_SLICE = 20_000;

// ---- compact reports: what a node reports of its peers, as numbers indexed by peer ----

const STATES: readonly PeerState[] = [
  'Encrypted',
  'Handshaking',
  'Stale',
  'KeyMismatch',
  'AwaitingPeer',
  'Stalled',
];
const STATE_CODE = new Map(STATES.map((s, i) => [s, i + 1]));

/**
 * One side's report of one peer as one number: epoch * 8 + state (1..6); 0 = not reported. Exact for epochs
 * up to 2^50 (a Float64Array holds it).
 */
function encodeSide(state: PeerState, epoch: number | undefined): number {
  const code = STATE_CODE.get(state);
  return code === undefined ? 0 : (epoch ?? 0) * 8 + code;
}

function decodeSide(code: number | undefined): Side {
  if (!code) return undefined;
  return { state: STATES[(code % 8) - 1]!, epoch: Math.floor(code / 8) };
}

/** Node names as small integers, shared by every row. Names are only ever added (a few bytes each). */
export class NodeIds {
  private readonly ids = new Map<string, number>();
  id(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.ids.size;
      this.ids.set(name, id);
    }
    return id;
  }
  /** The name's number, without giving it one. */
  get(name: string): number | undefined {
    return this.ids.get(name);
  }
  get size(): number {
    return this.ids.size;
  }
}

/** What one node reports of its peers: a code (see encodeSide) per peer id, 0 for peers it did not report. */
export type PeerRow = Float64Array;

/** Builds a row; entries with an unknown state count as not reported. */
export function peerRow(ids: NodeIds, peers: SideReport['peers']): PeerRow {
  const idx = peers.map((p) => ids.id(p.node));
  const row = new Float64Array(ids.size);
  peers.forEach((p, i) => (row[idx[i]!] = encodeSide(p.state, p.epoch)));
  return row;
}

/** Whether the row reports some peer Encrypted at `epoch`. */
export function rowHasEncryptedAt(row: PeerRow, epoch: number): boolean {
  const want = encodeSide('Encrypted', epoch);
  return row.includes(want);
}

/** A node's compact report; `row` undefined when it reported nothing. */
export interface RowReport {
  node: string;
  row: PeerRow | undefined;
}

/**
 * computePairs without the list: each pair goes to `visit` and is forgotten, and the walk yields to the event
 * loop every PAIRS_PER_SLICE pairs. At 1,000 nodes a pass has 500k pairs: kept in a list they cost tens of
 * MB, and judged in one go they hold up lease renewals, watches and /healthz.
 */
export async function visitPairs(
  nodes: readonly string[],
  reports: readonly SideReport[],
  epoch: number | undefined,
  visit: PairVisitor,
): Promise<Omit<PairSummary, 'pairs'>> {
  const ids = new NodeIds();
  return visitPairRows(
    ids,
    nodes,
    reports.map((r) => ({ node: r.node, row: peerRow(ids, r.peers) })),
    epoch,
    visit,
  );
}

/** visitPairs over compact reports (rows built with `ids`). */
export async function visitPairRows(
  ids: NodeIds,
  nodes: readonly string[],
  reports: readonly RowReport[],
  epoch: number | undefined,
  visit: PairVisitor,
): Promise<Omit<PairSummary, 'pairs'>> {
  const walk = walkPairs(ids, nodes, reports, epoch, visit);
  for (;;) {
    const step = walk.next();
    if (step.done) return step.value;
    await yieldToEventLoop();
  }
}

function* walkPairs(
  ids: NodeIds,
  nodes: readonly string[],
  reports: readonly RowReport[],
  epoch: number | undefined,
  visit: PairVisitor,
): Generator<void, Omit<PairSummary, 'pairs'>> {
  const byNode = new Map(reports.map((r) => [r.node, r.row]));
  const sorted = [...new Set(nodes)].sort();
  const id = sorted.map((n) => ids.id(n));
  const rows = sorted.map((n) => byNode.get(n));
  let total = 0;
  let encrypted = 0;
  let degraded = 0;
  let slice = 0;
  // The pair being visited, for the one reason function of the walk.
  let ca = '';
  let cb = '';
  let cab = 0;
  let cba = 0;
  const reason = (): string => judge(ca, cb, decodeSide(cab), decodeSide(cba), epoch).reason;
  for (let i = 0; i < sorted.length; i++) {
    const row = rows[i];
    for (let j = i + 1; j < sorted.length; j++) {
      const abCode = row?.[id[j]!] ?? 0;
      const baCode = rows[j]?.[id[i]!] ?? 0;
      const state = judgeCodes(abCode, baCode, epoch);
      total++;
      if (state === 'Encrypted') encrypted++;
      else if (state === 'Degraded') degraded++;
      const a = sorted[i]!;
      const b = sorted[j]!;
      ca = a;
      cb = b;
      cab = abCode;
      cba = baCode;
      visit(a, b, state, reason);
      if (++slice === PAIRS_PER_SLICE) {
        slice = 0;
        yield;
      }
    }
  }
  return { total, encrypted, degraded };
}

const STALE = STATE_CODE.get('Stale')!;
const MISMATCH = STATE_CODE.get('KeyMismatch')!;
const STALLED = STATE_CODE.get('Stalled')!;
const ENCRYPTED = STATE_CODE.get('Encrypted')!;

/** judge(...).state on codes, without building the reason. */
function judgeCodes(ab: number, ba: number, epoch?: number): PairState {
  const sa = ab % 8;
  const sb = ba % 8;
  if (sa === STALE || sa === MISMATCH || sa === STALLED || sb === STALE || sb === MISMATCH || sb === STALLED)
    return 'Degraded';
  if (sa === ENCRYPTED && sb === ENCRYPTED) {
    if (ab !== ba) return 'Degraded'; // same state, so the epochs differ
    return epoch !== undefined && Math.floor(ab / 8) !== epoch ? 'Pending' : 'Encrypted';
  }
  return 'Pending';
}

type Side = { state: PeerState; epoch?: number | undefined } | undefined;

function judge(
  a: string,
  b: string,
  ab: Side,
  ba: Side,
  epoch?: number,
): { state: PairState; reason: string } {
  for (const [from, to, side] of [
    [a, b, ab],
    [b, a, ba],
  ] as const) {
    if (side?.state === 'Stalled') {
      return {
        state: 'Degraded',
        reason: `${from} receives nothing from ${to} while sending (Stalled; ${from} re-created the peer once)`,
      };
    }
    if (side?.state === 'Stale' || side?.state === 'KeyMismatch') {
      return { state: 'Degraded', reason: `${from} sees ${to} ${side.state}` };
    }
  }
  if (ab?.state === 'Encrypted' && ba?.state === 'Encrypted') {
    if (ab.epoch === ba.epoch) {
      if (epoch !== undefined && ab.epoch !== epoch) {
        return { state: 'Pending', reason: `encrypted at epoch ${ab.epoch ?? 0}, not yet at ${epoch}` };
      }
      return { state: 'Encrypted', reason: `encrypted at epoch ${ab.epoch ?? 0}` };
    }
    return { state: 'Degraded', reason: `epochs differ: ${a} at ${ab.epoch ?? 0}, ${b} at ${ba.epoch ?? 0}` };
  }
  if (!ab) return { state: 'Pending', reason: `${a} has not reported ${b}` };
  if (!ba) return { state: 'Pending', reason: `${b} has not reported ${a}` };
  const waiting = ab.state !== 'Encrypted' ? [a, b, ab.state] : [b, a, ba.state];
  return { state: 'Pending', reason: `${waiting[0]} sees ${waiting[1]} ${waiting[2]}` };
}

function isPeerReport(p: unknown): p is SideReport['peers'][number] {
  const r = p as { node?: unknown; state?: unknown; epoch?: unknown } | null;
  return (
    typeof r?.node === 'string' &&
    STATE_CODE.has(r.state as PeerState) &&
    (r.epoch === undefined || (typeof r.epoch === 'number' && Number.isSafeInteger(r.epoch)))
  );
}

/**
 * NodeTunnels' peer lists kept as rows. As an informer transform, `strip` takes `status.peers` off each
 * cached NodeTunnel and remembers it as a row of the object: at 1,000 nodes a tunnel's peer list is ~130 KB
 * of JSON (130 MB for the overlay, all of it garbage-collected again on every change), its row 8 KB.
 * Rows live as long as the object they belong to.
 *
 * Bounded by membership (security review S7): a name gets a number only as the `spec.nodeName` of a
 * NodeTunnel (which only the operator creates) or as a member in a pair walk, never because an agent reported
 * it. A reported name without a number is kept aside with its object (at most the CRD's 4,096 entries, freed
 * with the object) and joins the row once the name becomes a member: a relist may deliver a tunnel before the
 * tunnel of a peer it reports. Random names written by an agent therefore grow neither the shared numbers nor
 * the rows.
 */
export class TunnelPeerRows {
  readonly ids = new NodeIds();
  private readonly rows = new WeakMap<object, PeerRow>();
  /** reported peers that were no member yet when the row was built: name -> code */
  private readonly aside = new WeakMap<object, Map<string, number>>();

  /** The object without status.peers (its row remembered); an object without peers is returned as is. */
  readonly strip = <T extends object>(obj: T): T => {
    const own = (obj as { spec?: { nodeName?: unknown } }).spec?.nodeName;
    if (typeof own === 'string' && own !== '') this.ids.id(own);
    const status = (obj as { status?: Record<string, unknown> }).status;
    if (!Array.isArray(status?.peers)) return obj;
    const rest = { ...status };
    delete rest.peers;
    const out = { ...obj, status: rest };
    this.remember(out, status.peers as unknown[]);
    return out;
  };

  /** The row of a tunnel object: remembered by strip, or built from its status.peers now (and remembered). */
  rowOf(obj: object): PeerRow | undefined {
    const known = this.rows.get(obj);
    if (known) return this.fold(obj, known);
    const peers = (obj as { status?: { peers?: unknown } }).status?.peers;
    if (!Array.isArray(peers)) return undefined;
    return this.remember(obj, peers);
  }

  private remember(obj: object, peers: unknown[]): PeerRow {
    const row = new Float64Array(this.ids.size);
    let aside: Map<string, number> | undefined;
    for (const p of peers) {
      if (!isPeerReport(p)) continue;
      const code = encodeSide(p.state, p.epoch);
      const id = this.ids.get(p.node);
      if (id !== undefined) row[id] = code;
      else (aside ??= new Map()).set(p.node, code);
    }
    this.rows.set(obj, row);
    if (aside) this.aside.set(obj, aside);
    return row;
  }

  /** Moves reports of names that became members since into the row (a longer row if needed). */
  private fold(obj: object, row: PeerRow): PeerRow {
    const aside = this.aside.get(obj);
    if (!aside) return row;
    let out = row;
    for (const [name, code] of aside) {
      const id = this.ids.get(name);
      if (id === undefined) continue;
      if (id >= out.length) {
        const longer = new Float64Array(this.ids.size);
        longer.set(out);
        out = longer;
      }
      out[id] = code;
      aside.delete(name);
    }
    if (aside.size === 0) this.aside.delete(obj);
    if (out !== row) this.rows.set(obj, out);
    return out;
  }
}
