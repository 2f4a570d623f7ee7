import { Writable } from 'node:stream';
import { pino } from 'pino';
import { encodeKey, generateKeyPair, generatePresharedKey } from './keys.js';
import { LOG_REDACTION } from './log.js';
import { newBoxKeyPair } from './seal.js';

function capture(): { logger: pino.Logger; text: () => string } {
  const lines: string[] = [];
  const logger = pino(
    { level: 'debug', redact: LOG_REDACTION },
    new Writable({
      write: (chunk: Buffer, _e, cb) => {
        lines.push(chunk.toString());
        cb();
      },
    }),
  );
  return { logger, text: () => lines.join('') };
}

test('key fields are redacted at the top level and up to three levels down', () => {
  const { logger, text } = capture();
  const wg = encodeKey(generateKeyPair().privateKey);
  const psk = encodeKey(generatePresharedKey());
  const envelope = encodeKey(newBoxKeyPair().secretKey);
  const sealing = encodeKey(newBoxKeyPair().secretKey);
  const secrets = [wg, psk, envelope, sealing];
  logger.info({ privateKey: wg, presharedKey: psk, envelope, sealingSecretKey: sealing }, 'top');
  logger.info({ peer: { psk, envelopeSecretKey: envelope } }, 'one level');
  logger.info({ pass: { peer: { privateKey: wg, sealed: psk } } }, 'two levels');
  logger.info({ a: { b: { c: { secretKey: sealing, data: envelope } } } }, 'three levels');
  const out = text();
  expect(out.match(/\[redacted\]/g)).toHaveLength(10);
  for (const s of secrets) expect(out).not.toContain(s);
  // fingerprints and other fields stay readable
  logger.info({ peer: 'n2', pskFingerprint: 'abcd1234abcd1234' }, 'fine');
  expect(text()).toContain('abcd1234abcd1234');
});
