// floe-verify: read a floe blob through any gateways, honest or not, and get the right bytes or an error.
// Every sliver is checked against the blob ID before it is used (the WebAssembly module built from
// verifier/, the same hashing and decoding the nodes run); metadata that does not hash to the blob ID is refused.
//
//   import { loadVerifier, verifiedRead } from './floe-verify.mjs';
//   const wasm = await loadVerifier(await (await fetch('floe_verifier.wasm')).arrayBuffer());
//   const { bytes, report } = await verifiedRead({ wasm, gateways: ['http://127.0.0.1:31415'], blobId });
//
// Works in browsers and in Node.js 20+ (fetch, WebAssembly and BigInt are all it needs).

const CODES = { '-1': 'malformed', '-2': 'metadata does not hash to the blob ID', '-3': 'not open',
  '-4': 'not enough verified slivers', '-5': 'slivers are not one codeword' };

/** Instantiates the verifier from the module's bytes (an ArrayBuffer or typed array). */
export async function loadVerifier(bytes) {
  const { instance } = await WebAssembly.instantiate(bytes, {});
  return instance.exports;
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const bin = atob(b64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function put(wasm, bytes) {
  const at = wasm.floe_input(bytes.length);
  new Uint8Array(wasm.memory.buffer, at, bytes.length).set(bytes);
}

/**
 * Reads bytes [start, end) of `blobId` (the whole blob by default) through `gateways`, verifying everything.
 * Sliver index i is asked of gateways[i % gateways.length]; a sliver that fails verification, or a gateway that
 * fails, is skipped and the next index tried. Returns { bytes, report } or throws when k verified slivers of a
 * segment cannot be found.
 */
export async function verifiedRead({ wasm, gateways, blobId, start = 0, end, fetchImpl = fetch }) {
  const report = { metadataRefused: 0, slivers: 0, rejected: 0, failedRequests: 0 };
  const id = fromBase64Url(blobId);
  if (id.length !== 32) throw new Error(`${blobId} is not a blob ID`);
  // The metadata: from the first gateway whose answer hashes to the blob ID.
  let meta = null;
  for (const gw of gateways) {
    try {
      const res = await fetchImpl(`${gw}/v1/blobs/${blobId}/metadata`);
      if (!res.ok) { report.failedRequests++; continue; }
      const m = await res.json();
      const roots = m.segmentRoots.map(fromHex);
      const input = new Uint8Array(32 + 32 * roots.length);
      input.set(id, 0);
      roots.forEach((r, i) => input.set(r, 32 + 32 * i));
      put(wasm, input);
      const opened = Number(wasm.floe_open(m.encodingCode, m.shards, BigInt(m.segmentSize), BigInt(m.blobLength)));
      if (opened === 0) { meta = m; break; }
      report.metadataRefused++;
    } catch {
      report.failedRequests++;
    }
  }
  if (!meta) throw new Error(`no gateway gave metadata that hashes to ${blobId}`);
  const length = meta.blobLength;
  const stop = end === undefined ? length : Math.min(end, length);
  if (start > stop) throw new Error(`range ${start}-${stop} is outside the blob of ${length} bytes`);
  const span = BigInt(wasm.floe_segments_for(BigInt(start), BigInt(stop)));
  const [first, last] = [Number(span & 0xffffffffn), Number(span >> 32n)];
  const need = wasm.floe_need();
  const out = new Uint8Array(stop - start);
  let filled = 0;
  for (let segment = first; segment < last; segment++) {
    for (let index = 0; index < meta.shards && wasm.floe_have(BigInt(segment)) < need; index++) {
      const gw = gateways[index % gateways.length];
      try {
        const res = await fetchImpl(`${gw}/v1/blobs/${blobId}/slivers/${index}?segments=${segment}..${segment + 1}`);
        if (!res.ok) { report.failedRequests++; continue; }
        put(wasm, new Uint8Array(await res.arrayBuffer()));
        const kept = Number(wasm.floe_add_slivers());
        if (kept > 0) report.slivers += kept;
      } catch {
        report.failedRequests++;
      }
    }
    const len = Number(wasm.floe_decode(BigInt(segment)));
    if (len < 0) throw new Error(`segment ${segment}: ${CODES[len] || len}`);
    const bytes = new Uint8Array(wasm.memory.buffer, wasm.floe_output(), len);
    const offset = Number(wasm.floe_segment_offset(BigInt(segment)));
    const from = Math.max(start, offset) - offset;
    const to = Math.min(stop, offset + len) - offset;
    out.set(bytes.subarray(from, to), filled);
    filled += to - from;
  }
  report.rejected = wasm.floe_rejected();
  return { bytes: out, report };
}
