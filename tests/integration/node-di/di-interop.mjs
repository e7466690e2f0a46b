// Data Integrity interop driver for tests/integration/test_interop_data_integrity.py.
//   node di-interop.mjs sign   SUITE SEED_HEX   < credential.json   -> signed credential (stdout)
//   node di-interop.mjs verify SUITE            < credential.json   -> {"verified": bool, "error": ...}
// SUITE: eddsa-rdfc-2022 | Ed25519Signature2020. Keys are did:key (Ed25519); documents load only
// from the packages' bundled contexts and the did:key driver (no network).
import * as vc from '@digitalbazaar/vc';
import * as didKey from '@digitalbazaar/did-method-key';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {Ed25519Signature2020} from '@digitalbazaar/ed25519-signature-2020';
import {Ed25519VerificationKey2020} from '@digitalbazaar/ed25519-verification-key-2020';
import {cryptosuite as eddsaRdfc2022} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import * as credentialsContext from '@digitalbazaar/credentials-context';
import * as diContext from '@digitalbazaar/data-integrity-context';
import * as multikeyContext from '@digitalbazaar/multikey-context';
import didContext from 'did-context';
import ed2020Context from 'ed25519-signature-2020-context';

const [mode, suiteName, seedHex] = process.argv.slice(2);
const contexts = new Map([
  ...credentialsContext.contexts, ...diContext.contexts, ...multikeyContext.contexts,
  ...didContext.contexts, ...ed2020Context.contexts,
  ['https://www.w3.org/ns/credentials/examples/v2',
    {'@context': {'@vocab': 'https://www.w3.org/ns/credentials/examples#'}}],
]);
const driver = didKey.driver();
driver.use({multibaseMultikeyHeader: 'z6Mk', fromMultibase: Ed25519Multikey.from});
async function documentLoader(url) {
  if(contexts.has(url)) {
    return {contextUrl: null, documentUrl: url, document: contexts.get(url)};
  }
  if(url.startsWith('did:key:')) {
    return {contextUrl: null, documentUrl: url, document: await driver.get({url})};
  }
  throw new Error(`document not available offline: ${url}`);
}
const read = async () => JSON.parse(await new Promise(resolve => {
  let data = '';
  process.stdin.on('data', c => data += c).on('end', () => resolve(data));
}));

const credential = await read();
if(mode === 'sign') {
  const seed = Uint8Array.from(Buffer.from(seedHex, 'hex'));
  const keyPair = await Ed25519Multikey.generate({seed});
  const did = `did:key:${keyPair.publicKeyMultibase}`;
  keyPair.id = `${did}#${keyPair.publicKeyMultibase}`;
  keyPair.controller = did;
  credential.issuer = did;
  let suite;
  if(suiteName === 'Ed25519Signature2020') {
    const key2020 = await Ed25519VerificationKey2020.from({
      id: keyPair.id, controller: did, type: 'Ed25519VerificationKey2020',
      publicKeyMultibase: keyPair.publicKeyMultibase, privateKeyMultibase: undefined,
    });
    suite = new Ed25519Signature2020({signer: keyPair.signer()});
    suite.verificationMethod = key2020.id;
  } else {
    suite = new DataIntegrityProof({signer: keyPair.signer(), cryptosuite: eddsaRdfc2022});
  }
  const signed = await vc.issue({credential, suite, documentLoader});
  process.stdout.write(JSON.stringify(signed));
} else {
  const suite = suiteName === 'Ed25519Signature2020' ?
    new Ed25519Signature2020() : new DataIntegrityProof({cryptosuite: eddsaRdfc2022});
  const result = await vc.verifyCredential({credential, suite, documentLoader});
  const error = result.error ? String(result.error.errors?.[0]?.message || result.error.message || result.error) : null;
  process.stdout.write(JSON.stringify({verified: result.verified, error}));
}
