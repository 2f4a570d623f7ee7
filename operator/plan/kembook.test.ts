// Hybrid plans (issue #17): what the operator seals to nodes that publish an ML-KEM key, opened as the node
// opens it (lib/hybrid.ts, as agent/hybridopen.ts does), across restarts and upgrades.
import {
  pskContext,
  privateKeyContext,
  type KemEntry,
  type KeySecretPayload,
} from '../../lib/contract/keysecret.js';
import {
  decapsulateWith,
  hybridKemId,
  hybridNodeKey,
  isHybridValue,
  newKemKeyPair,
  openHybridValue,
  x25519Shared,
  type KemKeyPair,
} from '../../lib/hybrid.js';
import { encodeKey, fingerprint, publicKeyOf } from '../../lib/keys.js';
import { newBoxKeyPair, Sealer, unseal, type BoxKeyPair } from '../../lib/seal.js';
import { KemBook } from './kembook.js';
import { planDigests, planKeySecret, type KeyPlanInput, type Member, type Sealing } from './keysecret.js';
import { forgedEntries } from './keyverify.js';

const operator = newBoxKeyPair();
const names = ['a', 'b', 'c', 'd'];
const box = new Map<string, BoxKeyPair>(names.map((n) => [n, newBoxKeyPair()]));
const kem = new Map<string, KemKeyPair>(names.map((n) => [n, newKemKeyPair()]));
const t = (day: number) => `2026-01-0${day}T00:00:00Z`;

function member(name: string, day: number, hybrid = true): Member {
  return {
    name,
    createdAt: t(day),
    envelopePublicKey: encodeKey(box.get(name)!.publicKey),
    envelopeKemPublicKey: hybrid ? Buffer.from(kem.get(name)!.publicKey).toString('base64') : undefined,
  };
}

const sealing = (): Sealing => ({ sealer: new Sealer(operator), kems: new KemBook(operator) });
const input = (node: string, members: Member[], extra: Partial<KeyPlanInput> = {}): KeyPlanInput => ({
  overlay: 'o',
  node,
  epoch: 1,
  presharedKeys: 'PerPair',
  custody: 'Node',
  members,
  ...extra,
});

/** Opens a value as node `name` does: hybrid with the exchange it names from `kems`, classical otherwise. */
function openAs(name: string, sealed: string, context: string, kems: KemEntry[]): Uint8Array {
  const env = box.get(name)!;
  if (!isHybridValue(sealed)) return unseal(sealed, operator.publicKey, env, context);
  const entry = kems.find((k) => k.id === hybridKemId(sealed) && k.node === name);
  if (!entry) throw new Error(`no key exchange ${hybridKemId(sealed)} for ${name}`);
  const ciphertext = new Uint8Array(Buffer.from(entry.ciphertext, 'base64'));
  const nodeKey = hybridNodeKey(
    x25519Shared(env.secretKey, operator.publicKey),
    decapsulateWith(kem.get(name)!.privateKey, ciphertext),
    {
      operatorPublicKey: operator.publicKey,
      nodePublicKey: env.publicKey,
      nodeKemPublicKey: kem.get(name)!.publicKey,
      ciphertext,
    },
  );
  return openHybridValue(sealed, nodeKey, context);
}

/** Plans every member's Secret, recording the exchanges as KeySecrets does after a write. */
function planAll(s: Sealing, members: Member[], existing = new Map<string, KeySecretPayload>()) {
  const out = new Map<string, KeySecretPayload>();
  for (const m of members) {
    const plan = planKeySecret(input(m.name, members, { existing: existing.get(m.name) }), s);
    if (plan.kemRecorded) s.kems!.recorded('o', m.name, plan.kemRecorded);
    out.set(m.name, plan.payload);
  }
  return out;
}

/** Every pair's PSK as each end opens it, from its own Secret's KEM entries and the owner's. */
function opened(secrets: Map<string, KeySecretPayload>) {
  const out: Array<{ pair: string; ends: string[] }> = [];
  for (const [owner, payload] of secrets) {
    for (const p of payload.pairs) {
      const ends = [p.a, p.b].map((end) => {
        const kems = [...payload.kems, ...(secrets.get(end)?.kems ?? [])];
        return Buffer.from(openAs(end, p.sealed[end]!, pskContext('o', p.a, p.b, p.epoch), kems)).toString(
          'hex',
        );
      });
      expect(fingerprint(Buffer.from(ends[0]!, 'hex'))).toBe(p.fingerprint);
      out.push({ pair: `${p.a}/${p.b} in ${owner}`, ends });
    }
  }
  return out;
}

test('every value to a hybrid node is sealed hybrid; one encapsulation per node and epoch, not per pair', () => {
  const members = names.map((n, i) => member(n, i + 1));
  const s = sealing();
  const secrets = planAll(s, members);
  const pairs = opened(secrets);
  expect(pairs).toHaveLength(6);
  for (const p of pairs) expect(p.ends[0]).toBe(p.ends[1]);
  for (const payload of secrets.values()) {
    for (const p of payload.pairs)
      for (const v of Object.values(p.sealed)) expect(isHybridValue(v)).toBe(true);
    // Only the node's own exchange is in its Secret: one 1,088-byte ciphertext per node and epoch.
    expect(payload.kems.map((k) => k.node)).toEqual([payload.node]);
  }
  expect(s.kems!.encapsulations).toBe(4);
  expect(s.kems!.unrecordedNodes('o', 1)).toEqual([]);
  // Nothing in a Secret is a PSK or a shared secret.
  const text = JSON.stringify([...secrets.values()]);
  for (const p of pairs) expect(text).not.toContain(Buffer.from(p.ends[0]!, 'hex').toString('base64'));
});

test('an unchanged world plans no change, and makes no new exchange', () => {
  const members = names.map((n, i) => member(n, i + 1));
  const s = sealing();
  const first = planAll(s, members);
  for (const m of members) {
    expect(planKeySecret(input(m.name, members, { existing: first.get(m.name) }), s).changed).toBe(false);
  }
  expect(s.kems!.encapsulations).toBe(4);
});

test('a node without an ML-KEM key is sealed to classically, its peers hybrid, in the same Secret', () => {
  const members = [member('a', 1, false), member('b', 2)];
  const secrets = planAll(sealing(), members);
  const pair = secrets.get('b')!.pairs[0]!;
  expect(isHybridValue(pair.sealed.a!)).toBe(false);
  expect(isHybridValue(pair.sealed.b!)).toBe(true);
  expect(secrets.get('a')!.kems).toEqual([]);
  const [p] = opened(secrets);
  expect(p!.ends[0]).toBe(p!.ends[1]);
});

test('a node that starts to publish an ML-KEM key gets its pairs sealed again, hybrid', () => {
  const before = [member('a', 1, false), member('b', 2, false)];
  const s = sealing();
  const classical = planAll(s, before);
  expect(isHybridValue(classical.get('b')!.pairs[0]!.sealed.b!)).toBe(false);
  const after = [member('a', 1, false), member('b', 2)];
  const digests = [planDigests({ ...input('b', before) }), planDigests({ ...input('b', after) })];
  expect(digests[0]!.get('b')).not.toBe(digests[1]!.get('b')); // the operator re-plans b's Secret
  expect(digests[0]!.get('a')).toBe(digests[1]!.get('a')); // a's Secret does not depend on b
  const upgraded = planAll(s, after, classical);
  expect(isHybridValue(upgraded.get('b')!.pairs[0]!.sealed.b!)).toBe(true);
  expect(upgraded.get('b')!.pairs[0]!.fingerprint).not.toBe(classical.get('b')!.pairs[0]!.fingerprint);
});

test('after an operator restart a join makes new exchanges; the others own Secrets must record them', () => {
  const members = names.slice(0, 3).map((n, i) => member(n, i + 1));
  const before = planAll(sealing(), members);
  // Restart: a new book. d joins; its plan seals to a, b and c with exchanges their Secrets do not hold.
  const s = sealing();
  const all = [...members, member('d', 4)];
  const d = planKeySecret(input('d', all), s);
  if (d.kemRecorded) s.kems!.recorded('o', 'd', d.kemRecorded);
  expect(s.kems!.unrecordedNodes('o', 1).sort()).toEqual(['a', 'b', 'c']);
  expect(() => opened(new Map([...before, ['d', d.payload]]))).toThrow(/no key exchange/);
  // The rewrite of each one's own Secret keeps its earlier exchange (the values in others' Secrets name it).
  const after = new Map([...before, ['d', d.payload]]);
  for (const n of ['a', 'b', 'c']) {
    const plan = planKeySecret(input(n, all, { existing: before.get(n) }), s);
    expect(plan.changed).toBe(true);
    expect(plan.payload.kems.map((k) => k.id)).toEqual([before.get(n)!.kems[0]!.id, plan.kemRecorded]);
    s.kems!.recorded('o', n, plan.kemRecorded!);
    after.set(n, plan.payload);
  }
  expect(s.kems!.unrecordedNodes('o', 1)).toEqual([]);
  const pairs = opened(after);
  expect(pairs).toHaveLength(6);
  for (const p of pairs) expect(p.ends[0]).toBe(p.ends[1]);
});

test('a hybrid value copied into another pair is reported; one sealed before a restart is not checkable', () => {
  const members = names.slice(0, 3).map((n, i) => member(n, i + 1));
  const s = sealing();
  const secrets = planAll(s, members);
  const c = structuredClone(secrets.get('c')!);
  const [ac, bc] = [c.pairs.find((p) => p.a === 'a')!, c.pairs.find((p) => p.a === 'b')!];
  ac.sealed.c = bc.sealed.c!;
  const verify = { overlay: 'o', node: 'c', epoch: 1, members };
  expect(forgedEntries(c, verify, s.sealer, s.kems).map((f) => f.entry)).toEqual(['a/c@1']);
  // A restarted operator holds no node key for it: skipped here; the agent still refuses it.
  expect(forgedEntries(c, verify, s.sealer, new KemBook(operator))).toEqual([]);
  expect(() => openAs('c', ac.sealed.c!, pskContext('o', 'a', 'c', 1), c.kems)).toThrow(/does not open/);
});

test('Operator custody: a PSK-only rotation carries the private key and the exchange it was sealed with', () => {
  const members = [member('a', 1)];
  const s = sealing();
  const e1 = planKeySecret(input('a', members, { custody: 'Operator' }), s);
  const key = e1.payload.privateKeys[0]!;
  expect(isHybridValue(key.sealed)).toBe(true);
  const e2 = planKeySecret(
    input('a', members, { custody: 'Operator', epoch: 2, carried: key, carriedKem: e1.payload.kems[0] }),
    new Sealer(operator), // whatever the book holds: nothing is sealed anew
  );
  expect(e2.payload.privateKeys).toEqual([key]);
  expect(e2.payload.kems).toEqual(e1.payload.kems);
  const opened = openAs('a', key.sealed, privateKeyContext('o', 'a', key.epoch), e2.payload.kems);
  expect(publicKeyOf(opened)).toBe(key.publicKey);
});
