import { newBoxKeyPair, newPresharedKey, seal, Sealer, SealError, unseal } from './seal.js';

describe('seal/unseal', () => {
  const operator = newBoxKeyPair();
  const nodeA = newBoxKeyPair();
  const nodeB = newBoxKeyPair();
  const psk = newPresharedKey();

  test('the recipient opens what the operator sealed', () => {
    expect(Buffer.from(unseal(seal(psk, nodeA.publicKey, operator), operator.publicKey, nodeA))).toEqual(
      Buffer.from(psk),
    );
  });

  test('both ends of a pair get the same key from their own sealed copies', () => {
    const forA = seal(psk, nodeA.publicKey, operator);
    const forB = seal(psk, nodeB.publicKey, operator);
    expect(forA).not.toEqual(forB);
    expect(Buffer.from(unseal(forA, operator.publicKey, nodeA))).toEqual(
      Buffer.from(unseal(forB, operator.publicKey, nodeB)),
    );
  });

  test.each([
    ['another node', () => unseal(seal(psk, nodeA.publicKey, operator), operator.publicKey, nodeB)],
    [
      'a sender that is not the operator',
      () => unseal(seal(psk, nodeA.publicKey, newBoxKeyPair()), operator.publicKey, nodeA),
    ],
    [
      'a tampered value',
      () => {
        const raw = Buffer.from(seal(psk, nodeA.publicKey, operator), 'base64');
        raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1);
        return unseal(raw.toString('base64'), operator.publicKey, nodeA);
      },
    ],
    ['a truncated value', () => unseal('AAAA', operator.publicKey, nodeA)],
  ])('refuses %s', (_what, open) => {
    expect(open).toThrow(SealError);
  });

  test('a fresh nonce every time', () => {
    expect(seal(psk, nodeA.publicKey, operator)).not.toEqual(seal(psk, nodeA.publicKey, operator));
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
    expect(Buffer.from(unseal(sealer.seal(psk, node.publicKey), operator.publicKey, node))).toEqual(
      Buffer.from(psk),
    );
  });

  test('the sender can open its own sealed values, others cannot', () => {
    const sealed = sealer.seal(psk, node.publicKey);
    expect(Buffer.from(sealer.open(sealed, node.publicKey))).toEqual(Buffer.from(psk));
    expect(() => new Sealer(newBoxKeyPair()).open(sealed, node.publicKey)).toThrow(SealError);
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
  expect(() => seal(newPresharedKey(), order8, me)).toThrow(SealError);
  expect(() => seal(newPresharedKey(), order8, me)).toThrow('recipient envelope key is a small-order point');
  expect(() => new Sealer(me).prepare(order8)).toThrow('small-order point');
  const sealed = seal(newPresharedKey(), newBoxKeyPair().publicKey, me);
  expect(() => unseal(sealed, order8, me)).toThrow('sender envelope key is a small-order point');
});
