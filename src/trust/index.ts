// Trust (DESIGN.md §3): Ed25519 keys, package signatures, the host's trust store and its policy.
export { generateKeyPair, writeKeyPair, readPrivateKey, parsePublicKey, keyIdOf, type GeneratedKeyPair } from './keys.ts';
export { listPackageFiles, hashPackageFiles, SIGNATURE_FILE } from './files.ts';
export { signExtension, verifyExtension, signingPayload, SIGNATURE_FORMAT, type SignatureFile, type Verification } from './signature.ts';
export { loadTrustStore, parseTrustStore, emptyTrustStore, scopeAllowing, assertInScope, type TrustStore, type TrustedPublisher } from './store.ts';

export type TrustPolicy = 'required' | 'warn' | 'off';
