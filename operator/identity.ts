// The operator's sealing identity: an X25519 key pair created once and kept in a Secret in the operator's
// namespace. The public half is published in a ConfigMap of the same name in the key namespace, which agents
// read to check that sealed material came from the operator. Agents may list Secrets in the key namespace
// only, never in the operator's: the private half must not be readable by any node. Two replicas racing to create it resolve through the API server:
// the loser of the create reads the winner's key.
import { type CoreV1Api } from '@kubernetes/client-node';
import { boxKeyPairFromSecret, newBoxKeyPair, type BoxKeyPair } from '../lib/seal.js';
import { fingerprint } from '../lib/keys.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../lib/contract/identity.js';
import { describeError, isAlreadyExists, isNotFound } from '../lib/kube.js';
import type { Logger } from '../lib/log.js';

const SECRET_KEY = 'sealingSecretKey';

export interface OperatorIdentity {
  keyPair: BoxKeyPair;
  publicKey: string;
  fingerprint: string;
}

function fromSecretData(data: Record<string, string> | undefined): BoxKeyPair | undefined {
  const raw = data?.[SECRET_KEY];
  if (raw === undefined) return undefined;
  try {
    return boxKeyPairFromSecret(new Uint8Array(Buffer.from(raw, 'base64')));
  } catch {
    return undefined;
  }
}

export async function loadOrCreateIdentity(
  core: CoreV1Api,
  namespace: string,
  publicNamespace: string,
): Promise<OperatorIdentity> {
  let keyPair: BoxKeyPair | undefined;
  try {
    const secret = await core.readNamespacedSecret({ namespace, name: IDENTITY_NAME });
    keyPair = fromSecretData(secret.data);
    if (!keyPair) {
      // Never silently replace an identity: every sealed Secret depends on it. An operator that cannot read
      // its own key must be fixed by a person (delete the Secret to start over with new keys).
      throw new Error(`Secret ${namespace}/${IDENTITY_NAME} exists but holds no valid sealing key`);
    }
  } catch (err) {
    if (!isNotFound(err))
      throw new Error(`failed to read operator identity: ${describeError(err)}`, { cause: err });
  }
  if (!keyPair) {
    const fresh = newBoxKeyPair();
    try {
      await core.createNamespacedSecret({
        namespace,
        body: {
          metadata: { name: IDENTITY_NAME, labels: { 'app.kubernetes.io/managed-by': 'sealmesh' } },
          type: 'Opaque',
          data: { [SECRET_KEY]: Buffer.from(fresh.secretKey).toString('base64') },
        },
      });
      keyPair = fresh;
    } catch (err) {
      if (!isAlreadyExists(err))
        throw new Error(`failed to create operator identity: ${describeError(err)}`, { cause: err });
      return loadOrCreateIdentity(core, namespace, publicNamespace);
    }
  }
  const publicKey = Buffer.from(keyPair.publicKey).toString('base64');
  await publishPublicKey(core, publicNamespace, publicKey);
  return { keyPair, publicKey, fingerprint: fingerprint(keyPair.publicKey) };
}

/**
 * Publishes (or restores) the public half in the ConfigMap agents read. Resolves to true when it had to write:
 * the ConfigMap was missing or held another key (agents that pinned the real key report the change; the
 * operator puts it back, see watchPublishedIdentity).
 */
export async function publishPublicKey(
  core: CoreV1Api,
  namespace: string,
  publicKey: string,
): Promise<boolean> {
  try {
    const cm = await core.readNamespacedConfigMap({ namespace, name: IDENTITY_NAME });
    if (cm.data?.[IDENTITY_PUBLIC_KEY] === publicKey) return false;
    await core.replaceNamespacedConfigMap({
      namespace,
      name: IDENTITY_NAME,
      body: { ...cm, data: { ...cm.data, [IDENTITY_PUBLIC_KEY]: publicKey } },
    });
    return true;
  } catch (err) {
    if (!isNotFound(err))
      throw new Error(`failed to publish operator public key: ${describeError(err)}`, { cause: err });
    try {
      await core.createNamespacedConfigMap({
        namespace,
        body: {
          metadata: { name: IDENTITY_NAME, labels: { 'app.kubernetes.io/managed-by': 'sealmesh' } },
          data: { [IDENTITY_PUBLIC_KEY]: publicKey },
        },
      });
    } catch (e) {
      if (!isAlreadyExists(e))
        throw new Error(`failed to publish operator public key: ${describeError(e)}`, { cause: e });
    }
    return true;
  }
}

/**
 * Checks the published identity every `intervalMs` and restores it when someone changed or deleted it; the
 * returned function stops the checks. Failures are logged and retried at the next check.
 */
export function watchPublishedIdentity(o: {
  core: CoreV1Api;
  namespace: string;
  identity: OperatorIdentity;
  intervalMs: number;
  logger: Logger;
  active: () => boolean;
}): () => void {
  const timer = setInterval(() => {
    if (!o.active()) return;
    publishPublicKey(o.core, o.namespace, o.identity.publicKey).then(
      (restored) => {
        if (restored)
          o.logger.warn(
            { sealingKey: o.identity.fingerprint, configMap: `${o.namespace}/${IDENTITY_NAME}` },
            "the published sealing key was changed or removed; restored the operator's own",
          );
      },
      (err: unknown) =>
        o.logger.warn({ err: describeError(err) }, 'failed to check the published sealing key'),
    );
  }, o.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
