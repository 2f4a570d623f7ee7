import { createHash } from 'node:crypto';
import {
  decapsulateWith,
  encapsulateTo,
  hkdfExpand32,
  hybridKemId,
  hybridNodeKey,
  isHybridValue,
  kemKeyPairFromSeed,
  kemPublicKey,
  newKemKeyPair,
  openHybridValue,
  sealHybridValue,
  valueKey,
  x25519Shared,
  type NodeKeyBinding,
} from './hybrid.js';
import { newBoxKeyPair, newPresharedKey, SealError } from './seal.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fill = (n: number, b: number) => new Uint8Array(n).fill(b);
/** The context every value here is sealed for (lib/contract/keysecret.ts pskContext). */
const C = 'psk|ovl|a|b|7';

describe('known-answer vectors', () => {
  test('HKDF-Expand is RFC 5869 (test case 1, first 32 bytes of the OKM)', () => {
    const prk = Buffer.from('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5', 'hex');
    const info = Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex');
    expect(hex(hkdfExpand32(prk, info))).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf',
    );
  });

  // Computed with an independent HKDF (Python hmac/hashlib): HKDF-SHA256(salt "sealmesh/hybrid/v1",
  // IKM = X25519 secret || ML-KEM secret, info = "node-key|" || operator pk || node pk || sha256(node ML-KEM pk)
  // || sha256(ciphertext)), then HKDF-Expand(node key, "sealmesh/sealed/v3|" || context).
  const binding: NodeKeyBinding = {
    operatorPublicKey: fill(32, 3),
    nodePublicKey: fill(32, 4),
    nodeKemPublicKey: fill(1184, 5),
    ciphertext: fill(1088, 6),
  };
  const NODE_KEY = '0720049c4831b84ea47af71b77d604b2b422fed21adb15df33793b8e8a76fbc5';

  test('node key from both shared secrets', () => {
    expect(hex(hybridNodeKey(fill(32, 1), fill(32, 2), binding))).toBe(NODE_KEY);
  });

  test('value key bound to the context', () => {
    expect(hex(valueKey(Buffer.from(NODE_KEY, 'hex'), C))).toBe(
      'ff12aea86a4a963330c2dd1e00bb6e5a5c446ff99d18aff8863a5a5cdc208a57',
    );
  });

  test.each<[string, () => Uint8Array]>([
    ['another X25519 secret', () => hybridNodeKey(fill(32, 9), fill(32, 2), binding)],
    ['another ML-KEM secret', () => hybridNodeKey(fill(32, 1), fill(32, 9), binding)],
    [
      'another ciphertext',
      () => hybridNodeKey(fill(32, 1), fill(32, 2), { ...binding, ciphertext: fill(1088, 7) }),
    ],
    [
      'another operator key',
      () => hybridNodeKey(fill(32, 1), fill(32, 2), { ...binding, operatorPublicKey: fill(32, 8) }),
    ],
    [
      'another node key',
      () => hybridNodeKey(fill(32, 1), fill(32, 2), { ...binding, nodePublicKey: fill(32, 8) }),
    ],
  ])('the node key changes with %s', (_name, derive) => {
    expect(hex(derive())).not.toBe(NODE_KEY);
  });

  test('an ML-KEM-768 key pair from its 64-byte seed (d || z) is the same everywhere', () => {
    const kp = kemKeyPairFromSeed(new Uint8Array(64).map((_, i) => i));
    expect(kp.publicKey.length).toBe(1184);
    expect(createHash('sha256').update(kp.publicKey).digest('hex')).toBe(
      '0b7934c83125c788995e2ba6bd761e33046b3e40571be53e023309a29f398cc9',
    );
  });
});

describe('hybrid sealing between the operator and a node', () => {
  const operator = newBoxKeyPair();
  const node = newBoxKeyPair();
  const nodeKem = newKemKeyPair();
  const psk = newPresharedKey();

  /** What the operator derives (encapsulating) and what the node derives (decapsulating). */
  function exchange(): {
    operatorKey: Uint8Array;
    nodeKey: (ct?: Uint8Array) => Uint8Array;
    ciphertext: Uint8Array;
  } {
    const { ciphertext, sharedKey } = encapsulateTo(kemPublicKey(nodeKem.publicKey));
    const bind = (ct: Uint8Array): NodeKeyBinding => ({
      operatorPublicKey: operator.publicKey,
      nodePublicKey: node.publicKey,
      nodeKemPublicKey: nodeKem.publicKey,
      ciphertext: ct,
    });
    return {
      ciphertext,
      operatorKey: hybridNodeKey(
        x25519Shared(operator.secretKey, node.publicKey),
        sharedKey,
        bind(ciphertext),
      ),
      nodeKey: (ct = ciphertext) =>
        hybridNodeKey(
          x25519Shared(node.secretKey, operator.publicKey),
          decapsulateWith(nodeKem.privateKey, ct),
          bind(ct),
        ),
    };
  }

  test('the node opens what the operator sealed; the value names its key exchange', () => {
    const x = exchange();
    const sealed = sealHybridValue(psk, x.operatorKey, 'kem-1', C);
    expect(isHybridValue(sealed)).toBe(true);
    expect(hybridKemId(sealed)).toBe('kem-1');
    expect(sealed.length).toBeLessThanOrEqual(512);
    expect(hex(openHybridValue(sealed, x.nodeKey(), C))).toBe(hex(psk));
  });

  test('a value sealed under the X25519 secret alone (ML-KEM secret left out) does not open', () => {
    const x = exchange();
    const xOnly = hybridNodeKey(x25519Shared(operator.secretKey, node.publicKey), new Uint8Array(32), {
      operatorPublicKey: operator.publicKey,
      nodePublicKey: node.publicKey,
      nodeKemPublicKey: nodeKem.publicKey,
      ciphertext: x.ciphertext,
    });
    expect(() => openHybridValue(sealHybridValue(psk, xOnly, 'k', C), x.nodeKey(), C)).toThrow(SealError);
  });

  test('a value sealed under the ML-KEM secret alone (X25519 secret left out) does not open', () => {
    const x = exchange();
    const kemOnly = hybridNodeKey(new Uint8Array(32), decapsulateWith(nodeKem.privateKey, x.ciphertext), {
      operatorPublicKey: operator.publicKey,
      nodePublicKey: node.publicKey,
      nodeKemPublicKey: nodeKem.publicKey,
      ciphertext: x.ciphertext,
    });
    expect(() => openHybridValue(sealHybridValue(psk, kemOnly, 'k', C), x.nodeKey(), C)).toThrow(SealError);
  });

  test('a tampered KEM ciphertext gives another node key: the value is refused', () => {
    const x = exchange();
    const sealed = sealHybridValue(psk, x.operatorKey, 'k', C);
    const tampered = new Uint8Array(x.ciphertext);
    tampered[100] = tampered[100]! ^ 1;
    expect(() => openHybridValue(sealed, x.nodeKey(tampered), C)).toThrow(SealError);
  });

  test('a tampered sealed value is refused', () => {
    const x = exchange();
    const sealed = sealHybridValue(psk, x.operatorKey, 'k', C);
    const prefix = 'pq1.k.';
    const raw = Buffer.from(sealed.slice(prefix.length), 'base64');
    raw.writeUInt8(raw[raw.length - 1]! ^ 1, raw.length - 1);
    expect(() => openHybridValue(`${prefix}${raw.toString('base64')}`, x.nodeKey(), C)).toThrow(SealError);
  });

  test.each(['psk|ovl|a|c|7', 'psk|ovl|a|b|8', 'psk|other|a|b|7', 'wg|ovl|a|7'])(
    'a value sealed for %s is refused in another context',
    (other) => {
      const x = exchange();
      expect(() => openHybridValue(sealHybridValue(psk, x.operatorKey, 'k', other), x.nodeKey(), C)).toThrow(
        SealError,
      );
    },
  );

  test('a classical value is not taken for a hybrid one', () => {
    expect(isHybridValue(Buffer.from(fill(72, 1)).toString('base64'))).toBe(false);
    expect(() => openHybridValue('AAAA', fill(32, 1), C)).toThrow(SealError);
  });

  test('malformed keys and ciphertexts are refused with an error that names no key', () => {
    expect(() => kemPublicKey(fill(1183, 1))).toThrow(/1184 bytes/);
    expect(() => decapsulateWith(nodeKem.privateKey, fill(1087, 1))).toThrow(/1088 bytes/);
    expect(() => x25519Shared(operator.secretKey, new Uint8Array(32))).toThrow(SealError);
  });
});
