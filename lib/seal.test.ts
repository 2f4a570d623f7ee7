import { newBoxKeyPair, newPresharedKey, seal, Sealer, SealError, unseal } from './seal.js';

/** The context every value here is sealed for (lib/contract/keysecret.ts pskContext). */
const C = 'psk|ovl|a|b|1';

describe('seal/unseal', () => {
  const operator = newBoxKeyPair();
  const nodeA = newBoxKeyPair();
  const nodeB = newBoxKeyPair();
  const psk = newPresharedKey();

  test('the recipient opens what the operator sealed', () => {
    expect(
      Buffer.from(unseal(seal(psk, nodeA.publicKey, operator, C), operator.publicKey, nodeA, C)),
    ).toEqual(Buffer.from(psk));
  });

  test('both ends of a pair get the same key from their own sealed copies', () => {
    const forA = seal(psk, nodeA.publicKey, operator, C);
    const forB = seal(psk, nodeB.publicKey, operator, C);
    expect(forA).not.toEqual(forB);
    expect(Buffer.from(unseal(forA, operator.publicKey, nodeA, C))).toEqual(
      Buffer.from(unseal(forB, operator.publicKey, nodeB, C)),
    );
  });

  test.each([
    ['another node', () => unseal(seal(psk, nodeA.publicKey, operator, C), operator.publicKey, nodeB, C)],
    [
      'a sender that is not the operator',
      () => unseal(seal(psk, nodeA.publicKey, newBoxKeyPair(), C), operator.publicKey, nodeA, C),
    ],
    [
      'a tampered value',
      () => {
        const raw = Buffer.from(seal(psk, nodeA.publicKey, operator, C), 'base64');
        raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1);
        return unseal(raw.toString('base64'), operator.publicKey, nodeA, C);
      },
    ],
    ['a truncated value', () => unseal('AAAA', operator.publicKey, nodeA, C)],
  ])('refuses %s', (_what, open) => {
    expect(open).toThrow(SealError);
  });

  test('a fresh nonce every time', () => {
    expect(seal(psk, nodeA.publicKey, operator, C)).not.toEqual(seal(psk, nodeA.publicKey, operator, C));
  });

  test('an all-zero random source is refused for PSKs', () => {
    expect(() => newPresharedKey((n) => new Uint8Array(n))).toThrow(SealError);
  });
});

describe('Sealer', () => {
  const operator = newBoxKeyPair();
  const node = newBoxKeyPair();
  const sealer = new Sealer(operator);
  const psk = newPresharedKey();

  test('what it seals opens with plain unseal at the recipient', () => {
    expect(Buffer.from(unseal(sealer.seal(psk, node.publicKey, C), operator.publicKey, node, C))).toEqual(
      Buffer.from(psk),
    );
  });

  test('the sender can open its own sealed values, others cannot', () => {
    const sealed = sealer.seal(psk, node.publicKey, C);
    expect(Buffer.from(sealer.open(sealed, node.publicKey, C))).toEqual(Buffer.from(psk));
    expect(() => new Sealer(newBoxKeyPair()).open(sealed, node.publicKey, C)).toThrow(SealError);
  });
});

test('Sealer.prepare derives a shared key once and says whether it had to', () => {
  const sealer = new Sealer(newBoxKeyPair());
  const recipient = newBoxKeyPair();
  expect(sealer.prepare(recipient.publicKey)).toBe(true);
  expect(sealer.prepare(recipient.publicKey)).toBe(false);
  expect(() => sealer.prepare(new Uint8Array(31))).toThrow(/32 bytes/);
});

test('nothing is sealed to, or opened from, a small-order envelope key (the shared secret would be zero)', () => {
  const order8 = new Uint8Array(
    Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'),
  );
  const me = newBoxKeyPair();
  expect(() => seal(newPresharedKey(), order8, me, C)).toThrow(SealError);
  expect(() => seal(newPresharedKey(), order8, me, C)).toThrow(
    'recipient envelope key is a small-order point',
  );
  expect(() => new Sealer(me).prepare(order8)).toThrow('small-order point');
  const sealed = seal(newPresharedKey(), newBoxKeyPair().publicKey, me, C);
  expect(() => unseal(sealed, order8, me, C)).toThrow('sender envelope key is a small-order point');
});

test('a value opens only in the context it was sealed for: another pair, epoch, overlay or kind is refused', () => {
  const operator = newBoxKeyPair();
  const node = newBoxKeyPair();
  const psk = newPresharedKey();
  const sealed = seal(psk, node.publicKey, operator, 'psk|ovl|a|b|3');
  expect(Buffer.from(unseal(sealed, operator.publicKey, node, 'psk|ovl|a|b|3'))).toEqual(Buffer.from(psk));
  for (const other of ['psk|ovl|a|c|3', 'psk|ovl|a|b|2', 'psk|other|a|b|3', 'wg|ovl|a|3']) {
    expect(() => unseal(sealed, operator.publicKey, node, other)).toThrow(
      `sealed value belongs to another context than ${other}`,
    );
    expect(() => new Sealer(operator).open(sealed, node.publicKey, other)).toThrow(SealError);
  }
});
