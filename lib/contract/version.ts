// Which release an agent runs and which key-Secret payloads it reads, as it publishes them in its NodeTunnel
// status (status.agent), and the skew the operator accepts. The agent writes AGENT_INFO; the operator judges
// every member's with operator/plan/skew.ts.
//
// The policy (README "Version skew"): an agent may be one minor release older or newer than the operator
// (0.x: the minor number is the release), and must read the key payload version the operator writes. An agent
// that publishes no version predates 0.2.0, the first release that published one: its key payload cannot be
// known, so it is treated as unsupported until it is upgraded.

/** The release of this build; package.json, the Helm chart and this constant move together (a unit test). */
export const RELEASE = '0.2.0';

/** The key-Secret payload version the operator writes (lib/contract/keysecret.ts). */
export const KEY_PAYLOAD_VERSION = 2;

/** The key-Secret payload versions this build's agent reads. */
export const KEY_PAYLOADS_READ: readonly number[] = [2];

/** What an agent publishes about itself in status.agent. */
export interface AgentInfo {
  version: string;
  keyPayloads: number[];
}

export const AGENT_INFO: AgentInfo = { version: RELEASE, keyPayloads: [...KEY_PAYLOADS_READ] };

export interface Release {
  major: number;
  minor: number;
  patch: number;
}

/** A release as published (`MAJOR.MINOR.PATCH`, an optional pre-release or build suffix), or undefined. */
export function parseRelease(v: string): Release | undefined {
  const m = /^v?(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:[-+][0-9A-Za-z.+-]*)?$/.exec(v);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

/**
 * How many releases apart two versions are: minor releases count while the major is 0 or the same; a different
 * major version is always out of reach (Infinity).
 */
export function releasesApart(a: Release, b: Release): number {
  if (a.major !== b.major) return Infinity;
  return Math.abs(a.minor - b.minor);
}

/** The releases an agent may be away from its operator, in either direction. */
export const SUPPORTED_SKEW = 1;
