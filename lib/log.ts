// One pino logger for every process. Key material must never reach a log line: the redaction paths are a
// second line of defence behind the rule that only fingerprints are ever put into log fields.
import { pino, type Logger } from 'pino';

export type { Logger };

const redactPaths = [
  'privateKey',
  '*.privateKey',
  'presharedKey',
  '*.presharedKey',
  'psk',
  '*.psk',
  'secretKey',
  '*.secretKey',
  'data',
  '*.data',
];

export function newLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, redact: { paths: redactPaths, censor: '[redacted]' } });
}
