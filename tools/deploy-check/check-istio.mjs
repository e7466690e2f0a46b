// Validates Istio resources against Istio's CRD schemas (@kubernetes-models/istio).
// Input on stdin: a JSON array of resources (the caller parses the YAML). Output on stdout: a
// JSON array with, for each resource, {kind, name, errors}; `errors` is null when it is
// valid. Exit 0 either way; 2 on bad input or a kind this script has no schema for.
// What these schemas do not check: unknown fields (Istio's CRDs allow them; the API server
// prunes them), and IstioOperator's meshConfig (an open object in its CRD).
import { AuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import { EnvoyFilter } from "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter";
import { VirtualService as VirtualServiceV1beta1 } from "@kubernetes-models/istio/networking.istio.io/v1beta1/VirtualService";
import { IstioOperator } from "@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator";

const MODELS = {
  "security.istio.io/v1 AuthorizationPolicy": AuthorizationPolicy,
  "networking.istio.io/v1alpha3 EnvoyFilter": EnvoyFilter,
  "networking.istio.io/v1beta1 VirtualService": VirtualServiceV1beta1,
  "install.istio.io/v1alpha1 IstioOperator": IstioOperator,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const resources = JSON.parse(input);
const out = [];
for (const resource of resources) {
  const key = `${resource.apiVersion} ${resource.kind}`;
  const Model = MODELS[key];
  if (!Model) {
    console.error(`no schema for ${key}`);
    process.exit(2);
  }
  let errors = null;
  try {
    new Model(resource).validate();
  } catch (err) {
    errors = String(err.message || err);
  }
  out.push({ kind: resource.kind, name: resource.metadata?.name ?? null, errors });
}
console.log(JSON.stringify(out));
