// The verifier against a real devnet and a lying gateway (scripts/verifier-test.sh runs it):
//   node test.mjs --wasm PATH --gateway URL… --blob-id ID --blob-file FILE
// A proxy in front of the first gateway flips one byte of every sliver answer and of every metadata answer's
// first segment root. Checks: (1) reading through the liar and the honest gateways returns the blob's exact
// bytes, with the liar's slivers refused; (2) a range read does too; (3) with the liar alone the read fails
// and returns no bytes; (4) so it does through a gateway that gives true metadata and corrupts every sliver.
// Reports the throughput of (1). Exits non-zero on any failure.
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { loadVerifier, verifiedRead } from './floe-verify.mjs';

const { values: opt } = parseArgs({ options: {
  wasm: { type: 'string' }, gateway: { type: 'string', multiple: true },
  'blob-id': { type: 'string' }, 'blob-file': { type: 'string' } } });
const expected = fs.readFileSync(opt['blob-file']);
const wasm = await loadVerifier(fs.readFileSync(opt.wasm));
const [honestFirst, ...others] = opt.gateway;

// What the first honest gateway that answers `path` with 200 says (the last answer if none does): a liar must
// always have a sliver to corrupt, or check (1) would depend on whether one busy gateway served it in time.
const firstAnswer = async (path) => {
  let last = null;
  for (const gw of [honestFirst, ...others]) {
    await last?.body?.cancel();
    try {
      last = await fetch(gw + path);
      if (last.ok) return last;
    } catch {
      last = null;
    }
  }
  return last;
};

// A store ends with receipts from two thirds of the holders, so the last holder's sliver may still be on its way
// when the test starts; check (1) needs the liar's sliver (index 0) to be there. Wait until some gateway serves
// every index, and say so if one never comes.
const metaAnswer = await firstAnswer(`/v1/blobs/${opt['blob-id']}/metadata`);
if (!metaAnswer?.ok) throw new Error(`no gateway serves the metadata of ${opt['blob-id']}`);
const { shards } = await metaAnswer.json();
for (let index = 0; index < shards; index++) {
  const path = `/v1/blobs/${opt['blob-id']}/slivers/${index}`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    const answer = await firstAnswer(path);
    await answer?.body?.cancel();
    if (answer?.ok) break;
    if (performance.now() > deadline) {
      throw new Error(`no gateway served sliver ${index} within 60 s of the store (last status ${answer?.status})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// A liar: forwards to a real gateway and corrupts what it sends back (its metadata too, if `metadata`).
const makeLiar = (metadata) => http.createServer(async (req, res) => {
  const upstream = await firstAnswer(req.url);
  let body;
  try {
    body = upstream && Buffer.from(await upstream.arrayBuffer());
  } catch {
    body = null;
  }
  if (!body) {
    res.writeHead(502);
    res.end('no honest gateway answered');
    return;
  }
  if (req.url.includes('/slivers/') && body.length > 0) {
    body = Buffer.from(body);
    body[body.length >> 1] ^= 0x01;
  } else if (metadata && req.url.endsWith('/metadata') && upstream.ok) {
    const meta = JSON.parse(body.toString());
    meta.segmentRoots[0] = (meta.segmentRoots[0][0] === '0' ? '1' : '0') + meta.segmentRoots[0].slice(1);
    body = Buffer.from(JSON.stringify(meta));
  }
  res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') || 'application/octet-stream' });
  res.end(body);
});
const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
};
const liar = makeLiar(true);
const liarUrl = await listen(liar);
// One that tells the truth about the metadata and lies in every sliver.
const sliverLiar = makeLiar(false);
const sliverLiarUrl = await listen(sliverLiar);

let failed = 0;
const check = async (name, body) => {
  try { console.log(`ok   ${name}: ${await body()}`); } catch (e) { failed++; console.log(`FAIL ${name}: ${e.message}`); }
};
const same = (a, b) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

await check('whole blob through a liar and honest gateways', async () => {
  const started = performance.now();
  const { bytes, report } = await verifiedRead({ wasm, gateways: [liarUrl, ...others], blobId: opt['blob-id'] });
  const secs = (performance.now() - started) / 1000;
  if (!same(bytes, expected)) throw new Error(`${bytes.length} bytes that differ from the ${expected.length} stored`);
  if (report.rejected === 0) {
    throw new Error(`the liar's slivers were not refused (${report.slivers} verified, `
      + `${report.failedRequests} requests failed)`);
  }
  if (report.metadataRefused !== 1) throw new Error(`metadata refused ${report.metadataRefused} times, not once`);
  return `${expected.length} bytes exact in ${secs.toFixed(2)} s (${(expected.length / 1e6 / secs).toFixed(1)} MB/s); `
    + `${report.slivers} slivers verified, ${report.rejected} refused, liar's metadata refused`;
});

await check('a range through the same gateways', async () => {
  const [start, end] = [123_457, 2_000_003];
  const { bytes } = await verifiedRead({ wasm, gateways: [liarUrl, ...others], blobId: opt['blob-id'], start, end });
  if (!same(bytes, expected.subarray(start, end))) throw new Error('the range differs');
  return `bytes ${start}-${end} exact`;
});

await check('the liar alone gives an error, never bytes', async () => {
  try {
    await verifiedRead({ wasm, gateways: [liarUrl], blobId: opt['blob-id'] });
  } catch (e) {
    return `refused: ${e.message}`;
  }
  throw new Error('a read through the liar alone returned bytes');
});

await check('a gateway whose every sliver lies gives an error, never bytes', async () => {
  try {
    await verifiedRead({ wasm: await loadVerifier(fs.readFileSync(opt.wasm)), gateways: [sliverLiarUrl],
      blobId: opt['blob-id'] });
  } catch (e) {
    return `refused: ${e.message}`;
  }
  throw new Error('a read through a gateway that corrupts every sliver returned bytes');
});

liar.close();
sliverLiar.close();
console.log(`verifier: ${4 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
