// One pino logger for every process. Key material must never reach a log line: the redaction paths are a
// second line of defence behind the rule that only fingerprints are ever put into log fields.
import { pino, type Logger } from 'pino';

export type { Logger };

/** Field names that hold key material (private, pre-shared, envelope and sealing secret keys; sealed data). */
const KEY_FIELDS = [
  'privateKey',
  'presharedKey',
  'psk',
  'secretKey',
  'sealingSecretKey',
  'envelopeSecretKey',
  'envelope',
  'sealed',
  'data',
];

/** Each key field at the top level and up to three levels down (pino's wildcards match one level each). */
const redactPaths = KEY_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`]);

export const LOG_REDACTION = { paths: redactPaths, censor: '[redacted]' };

export function newLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, redact: LOG_REDACTION });
}
