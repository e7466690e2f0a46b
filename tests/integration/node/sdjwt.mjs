#!/usr/bin/env node
// SD-JWT VC interop driver for tests/integration/test_interop_sdjwt.py (@sd-jwt/* from npm).
//
//   node sdjwt.mjs issue   < {"issuerJwk": private P-256 JWK, "kid": "...", "payload": {...},
//                             "disclosable": [claim, ...]}                -> {"sdjwt": "..."}
//   node sdjwt.mjs present < {"sdjwt": "...", "frame": {claim: true}, "holderJwk": private JWK,
//                             "aud": "...", "nonce": "...", "iat": s}     -> {"presentation": "..."}
//   node sdjwt.mjs verify  < {"token": "...", "issuerJwk": public JWK, "nonce": "...", "now": s,
//                             "requireKb": bool}        -> {"ok": true, "payload": {...}} | {"ok": false, "error": "..."}
//   node sdjwt.mjs statuslist < {"issuerJwk": private JWK, "kid": "...", "payload": {...},
//                                "statuses": [int, ...], "bits": 1|2|4|8}   -> {"jwt": "..."}
//   node sdjwt.mjs status  < {"jwt": "...", "idx": n}   -> {"status": n}
//
// One JSON object in, one out; exit 0 whenever an answer was written, 2 on a usage error.
// The did:jwk of the issuer is computed here from its public JWK, independently of vcgate.

import { SDJwtVcInstance } from '@sd-jwt/sd-jwt-vc'
import { ES256, digest, generateSalt } from '@sd-jwt/crypto-nodejs'
import { StatusList, createHeaderAndPayload, getListFromStatusListJWT } from '@sd-jwt/jwt-status-list'
import { createPrivateKey, sign as nodeSign } from 'node:crypto'

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', (c) => chunks.push(c))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}


function instance(extra = {}) {
  return new SDJwtVcInstance({ hasher: digest, hashAlg: 'sha-256', saltGenerator: generateSalt, ...extra })
}

async function issue(input) {
  const sd = instance({ signer: await ES256.getSigner(input.issuerJwk), signAlg: 'ES256' })
  const frame = { _sd: input.disclosable ?? [] }
  const sdjwt = await sd.issue(input.payload, frame, { header: { kid: input.kid } })
  return { sdjwt }
}

async function present(input) {
  const sd = instance({ kbSigner: await ES256.getSigner(input.holderJwk), kbSignAlg: 'ES256' })
  const presentation = await sd.present(input.sdjwt, input.frame, {
    kb: { payload: { aud: input.aud, nonce: input.nonce, iat: input.iat } },
  })
  return { presentation }
}

async function verify(input) {
  const sd = instance({
    verifier: await ES256.getVerifier(input.issuerJwk),
    kbVerifier: async (data, sig, payload) => (await ES256.getVerifier(payload.cnf.jwk))(data, sig),
  })
  try {
    const res = await sd.verify(input.token, {
      keyBindingNonce: input.nonce,
      currentDate: input.now,
      requiredClaimKeys: [],
      ...(input.requireKb ? { keyBindingNonce: input.nonce } : {}),
    })
    if (input.requireKb && !res.kb) return { ok: false, error: 'no key binding' }
    return { ok: true, payload: res.payload, kb: res.kb?.payload ?? null }
  } catch (e) {
    return { ok: false, error: String(e?.message ?? e) }
  }
}

async function statuslist(input) {
  const list = new StatusList(input.statuses, input.bits)
  const { header, payload } = createHeaderAndPayload(list, input.payload, { alg: 'ES256', typ: 'statuslist+jwt', kid: input.kid })
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const signingInput = `${b64(header)}.${b64(payload)}`
  const key = createPrivateKey({ key: input.issuerJwk, format: 'jwk' })
  const sig = nodeSign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' })
  return { jwt: `${signingInput}.${sig.toString('base64url')}` }
}

async function status(input) {
  return { status: getListFromStatusListJWT(input.jwt).getStatus(input.idx) }
}

const commands = { issue, present, verify, statuslist, status }
const command = commands[process.argv[2]]
if (!command) {
  process.stderr.write(`usage: sdjwt.mjs ${Object.keys(commands).join('|')} < request.json\n`)
  process.exit(2)
}
const out = await command(JSON.parse(await readStdin()))
process.stdout.write(JSON.stringify(out))
