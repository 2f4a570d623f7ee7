import nacl from 'tweetnacl';
import {
  KeyError,
  decodeKey,
  decodePublicKey,
  encodeKey,
  fingerprint,
  generateKeyPair,
  generatePresharedKey,
  isKey,
  isSmallOrderPoint,
  publicKeyOf,
  validateKey,
} from './keys.js';

// RFC 7748 section 6.1: Alice's X25519 private and public key.
const alicePrivate = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
const alicePublic = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';

describe('validateKey', () => {
  test.each([
    ['31 bytes', new Uint8Array(31).fill(1), /must be 32 bytes, got 31/],
    ['33 bytes', new Uint8Array(33).fill(1), /must be 32 bytes, got 33/],
    ['empty', new Uint8Array(0), /must be 32 bytes, got 0/],
    ['all zero', new Uint8Array(32), /is all zero/],
  ])('rejects %s', (_name, key, message) => {
    expect(() => validateKey(key, 'psk for a/b')).toThrow(KeyError);
    expect(() => validateKey(key, 'psk for a/b')).toThrow(message);
  });

  test('accepts 32 bytes with any non-zero byte', () => {
    const key = new Uint8Array(32);
    key[31] = 1;
    expect(validateKey(key)).toBe(key);
  });
});

describe('decodeKey', () => {
  test('decodes a canonical base64 key', () => {
    expect(Buffer.from(decodeKey(alicePublic)).toString('hex')).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
  });

  test.each([
    ['too short', alicePublic.slice(1)],
    ['too long', `A${alicePublic}`],
    ['no padding', alicePublic.slice(0, 43)],
    ['non-canonical last character', `${alicePublic.slice(0, 42)}n=`],
    ['invalid character', `*${alicePublic.slice(1)}`],
    ['all zero', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='],
    ['empty', ''],
  ])('rejects %s, without quoting the value', (_name, encoded) => {
    let message = '';
    try {
      decodeKey(encoded, 'pre-shared key');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^pre-shared key /);
    if (encoded.length > 4) expect(message).not.toContain(encoded.slice(2, -2));
    expect(isKey(encoded)).toBe(false);
  });

  test('round-trips with encodeKey', () => {
    const psk = generatePresharedKey();
    expect(decodeKey(encodeKey(psk))).toEqual(psk);
  });
});

describe('key generation', () => {
  test('publicKeyOf matches the RFC 7748 test vector (what `wg pubkey` prints)', () => {
    expect(publicKeyOf(new Uint8Array(alicePrivate))).toBe(alicePublic);
  });

  test('generateKeyPair derives the public key from the random private key', () => {
    const pair = generateKeyPair(() => new Uint8Array(alicePrivate));
    expect(pair.publicKey).toBe(alicePublic);
    expect(pair.privateKey).toEqual(new Uint8Array(alicePrivate));
  });

  test('fresh key pairs and PSKs differ and are valid', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect(a.publicKey).not.toBe(b.publicKey);
    expect(isKey(a.publicKey)).toBe(true);
    expect(generatePresharedKey()).not.toEqual(generatePresharedKey());
  });

  test('a broken random source is refused, not turned into a key', () => {
    expect(() => generatePresharedKey(() => new Uint8Array(32))).toThrow(/all zero/);
    expect(() => generateKeyPair(() => new Uint8Array(16))).toThrow(/must be 32 bytes/);
  });
});

describe('fingerprint', () => {
  test('is the first 8 bytes of SHA-256 over the raw key, as hex', () => {
    expect(fingerprint(new Uint8Array(alicePrivate))).toBe('c9ccbbf12f7c2cf4');
  });

  test('is the same for the bytes and the base64 form', () => {
    const psk = generatePresharedKey();
    expect(fingerprint(encodeKey(psk))).toBe(fingerprint(psk));
    expect(fingerprint(psk)).toMatch(/^[0-9a-f]{16}$/);
  });

  test('differs between keys and never contains the key', () => {
    const a = generatePresharedKey();
    const b = generatePresharedKey();
    expect(fingerprint(a)).not.toBe(fingerprint(b));
    expect(encodeKey(a)).not.toContain(fingerprint(a));
  });

  test('rejects what is not a key', () => {
    expect(() => fingerprint('not-a-key')).toThrow(KeyError);
    expect(() => fingerprint(new Uint8Array(32))).toThrow(KeyError);
  });
});

describe('public keys of small order', () => {
  const points = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ].flatMap((hex) => {
    const low = Buffer.from(hex, 'hex');
    const high = Buffer.from(low);
    high[31]! |= 0x80; // X25519 ignores the top bit: the same point
    return [low, high];
  });

  test.each(points.map((p) => [p.toString('hex').slice(0, 12), p]))(
    '%s…: any private key gives an all-zero shared secret, so it is refused',
    (_name, point) => {
      expect(nacl.scalarMult(generateKeyPair().privateKey, point).every((b) => b === 0)).toBe(true);
      expect(isSmallOrderPoint(point)).toBe(true);
      if (point.some((b) => b !== 0)) {
        expect(() => decodePublicKey(point.toString('base64'), 'envelope key of n1')).toThrow(
          'envelope key of n1 is a small-order point',
        );
      }
    },
  );

  test('a real public key is accepted, with or without its top bit', () => {
    const { publicKey } = generateKeyPair();
    expect(fingerprint(decodePublicKey(publicKey))).toBe(fingerprint(publicKey));
    const raw = Buffer.from(publicKey, 'base64');
    expect(isSmallOrderPoint(raw)).toBe(false);
    expect(nacl.scalarMult(generateKeyPair().privateKey, raw).some((b) => b !== 0)).toBe(true);
  });
});
