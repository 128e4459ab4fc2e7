// Trust (DESIGN.md §3): Ed25519 keys, package signatures, the host's trust store and its policy.
export { generateKeyPair, writeKeyPair, readPrivateKey, parsePublicKey, keyIdOf, type GeneratedKeyPair } from './keys.ts';
export { listPackageFiles, hashPackage, hashPackageFiles, refuseEmptyFolders, hashFile, walkPackage, copyPackage, emptyFileHashes, toFileHashes, SIGNATURE_FILE, LOCAL_FOLDER, type FileHashes, type PackageHashes, type PackageLimits, type PackageTree } from './files.ts';
export { signExtension, verifyExtension, verifyFiles, checkSignatureFile, checkSignatureText, MAX_SIGNATURE_BYTES, signingPayload, SIGNATURE_FORMAT, type SignatureFile, type Verification, type FilesToVerify } from './signature.ts';
export { loadTrustStore, parseTrustStore, emptyTrustStore, scopeAllowing, assertInScope, type TrustStore, type TrustedPublisher } from './store.ts';

export type TrustPolicy = 'required' | 'warn' | 'off';
