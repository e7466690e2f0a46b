#!/usr/bin/env node
// Interop driver for tests/integration/test_interop_did_jwt_vc.py.
//
//   node interop.mjs issue  < {"seed": hex32, "subject": did, "claims": {...}, "types": [...],
//                              "nbf": s, "exp": s, "id": uri, "kid": true|false|"<kid>",
//                              "form": "jwt"|"w3c", "alg": "EdDSA"|"Ed25519", "removeOriginalFields": bool}
//   node interop.mjs verify < {"jwt": "...", "now": seconds?}
//
// Reads one JSON object on stdin and writes one JSON object on stdout; the exit code is 0
// whenever an answer was written (a refused credential is an answer: {"ok": false, ...}),
// 2 for a usage error. Only the pinned npm packages of package.json are used for the VC
// work; node:crypto derives the Ed25519 public key from the seed, so the did:key here is
// computed independently of vcgate's own encoder.

import { createPrivateKey, createPublicKey } from 'node:crypto'
import { EdDSASigner, bytesToMultibase } from 'did-jwt'
import { createVerifiableCredentialJwt, verifyCredential } from 'did-jwt-vc'
import { Resolver } from 'did-resolver'
import { getResolver as keyDidResolver } from 'key-did-resolver'

const CONTEXT_V1 = 'https://www.w3.org/2018/credentials/v1'
// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410): node:crypto imports it from this.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', (c) => chunks.push(c))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

function didKeyFromSeed(seed) {
  const priv = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  })
  const x = createPublicKey(priv).export({ format: 'jwk' }).x
  const publicKey = new Uint8Array(Buffer.from(x, 'base64url'))
  // did:key = "did:key:" + multibase(base58btc, multicodec ed25519-pub 0xed01 + raw key)
  const fingerprint = bytesToMultibase(publicKey, 'base58btc', 'ed25519-pub')
  return { did: `did:key:${fingerprint}`, fingerprint }
}

async function issue(input) {
  const seed = Buffer.from(String(input.seed ?? ''), 'hex')
  if (seed.length !== 32) throw new Error('seed must be 32 bytes of hex')
  const { did, fingerprint } = didKeyFromSeed(seed)
  // did-jwt signs Ed25519 under either JWS alg name: "EdDSA" (RFC 8037) or "Ed25519" (RFC 9864).
  const issuer = { did, signer: EdDSASigner(new Uint8Array(seed)), alg: input.alg ?? 'EdDSA' }

  // did-jwt puts a kid in the header only when it is passed in the header options.
  const options = {}
  if (input.kid === true) options.header = { kid: `${did}#${fingerprint}` }
  else if (typeof input.kid === 'string') options.header = { kid: input.kid }
  // false keeps the W3C fields (issuer, issuanceDate, ...) inside `vc` next to iss/nbf/...
  if (input.removeOriginalFields === false) options.removeOriginalFields = false

  const types = ['VerifiableCredential', ...(input.types ?? [])]
  let payload
  if (input.form === 'w3c') {
    // The W3C data-model shape; did-jwt-vc maps it to iss/sub/jti/nbf/exp itself.
    payload = {
      '@context': [CONTEXT_V1],
      type: types,
      issuer: { id: did },
      issuanceDate: new Date(input.nbf * 1000).toISOString(),
      credentialSubject: { id: input.subject, ...(input.claims ?? {}) },
    }
    if (input.exp !== undefined) payload.expirationDate = new Date(input.exp * 1000).toISOString()
    if (input.id !== undefined) payload.id = input.id
  } else {
    // The VC-JWT shape of VCDM 1.1 section 6.3.1.
    payload = {
      sub: input.subject,
      nbf: input.nbf,
      vc: {
        '@context': [CONTEXT_V1],
        type: types,
        credentialSubject: { ...(input.claims ?? {}) },
      },
    }
    if (input.exp !== undefined) payload.exp = input.exp
    if (input.id !== undefined) payload.jti = input.id
  }
  const jwt = await createVerifiableCredentialJwt(payload, issuer, options)
  return { ok: true, jwt, did }
}

async function verify(input) {
  const resolver = new Resolver({ ...keyDidResolver() })
  const options = {}
  if (typeof input.now === 'number') options.policies = { now: input.now }
  try {
    const result = await verifyCredential(input.jwt, resolver, options)
    return {
      ok: true,
      issuer: result.issuer,
      signer: result.signer,
      payload: result.payload,
      verifiableCredential: result.verifiableCredential,
    }
  } catch (err) {
    return { ok: false, error: String(err?.message ?? err) }
  }
}

const commands = { issue, verify }

async function main() {
  const command = commands[process.argv[2]]
  if (!command) {
    process.stderr.write('usage: node interop.mjs issue|verify < input.json\n')
    process.exit(2)
  }
  const input = JSON.parse(await readStdin())
  process.stdout.write(JSON.stringify(await command(input)) + '\n')
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n')
  process.exit(1)
})
