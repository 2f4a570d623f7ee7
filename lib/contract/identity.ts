// The operator's sealing identity as agents find it: a ConfigMap of this name in the key namespace holds the
// operator's X25519 public key under IDENTITY_PUBLIC_KEY (operator/identity.ts creates it; agents read it to
// open what the operator sealed to them).
export const IDENTITY_NAME = 'sealmesh-operator-identity';
export const IDENTITY_PUBLIC_KEY = 'sealingPublicKey';
