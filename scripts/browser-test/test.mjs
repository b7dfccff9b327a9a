// Browser checks against a running floe devnet, in Debian's headless Chromium driven by playwright-core.
// scripts/browser-test.sh starts the devnet, stores the blobs and runs this; by hand:
//   node test.mjs --gateway http://127.0.0.1:25700 [--gateway …] --text-id ID --text-file FILE --clip-id ID
// Checks: (1) the status page at a gateway's `/` shows what /v1/node/status says; (2) its blob lookup shows the
// text blob readable with one holder row per shard; (3) a page on another origin reads the blob with fetch(),
// whole and by Range, and can read Content-Range and ETag (CORS); (4) a <video> on that page plays the WebM clip
// straight from the gateway and seeks to 2 s; (5) a site published with `floe site publish` loads from a node that
// did not publish it: every file with its media type, its script runs, its image shows, its video seeks, its
// not-found page answers 404, and a second visit comes from the browser's cache (or 304); (6) a page of that
// site reads the clip with the WebAssembly verifier through a gateway that lies (flipped bytes in slivers and
// metadata) and honest ones, and gets the exact bytes; through the liar alone it gets an error; (7) the site by
// its name (`floe site publish --name-key`) on the name's own origin: revalidated with 304 on a second visit, and
// showing the new version after `floe site update`.
// Prints one line per check, then `browser: N passed, M failed`.
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const TOTAL_MS = 110_000; // the whole run, browser start to exit
const CHECK_MS = 30_000; // any one check

const { values: opt } = parseArgs({
  options: {
    gateway: { type: 'string', multiple: true },
    'text-id': { type: 'string' },
    'text-file': { type: 'string' },
    'clip-id': { type: 'string' },
    'site-id': { type: 'string' },
    'site-origin': { type: 'string' },
    'clip-sha256': { type: 'string' },
    'big-id': { type: 'string' },
    'big-sha256': { type: 'string' },
    'name-origin': { type: 'string' },
    'name-key': { type: 'string' },
    'site-dir': { type: 'string' },
    floe: { type: 'string' },
    artifacts: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
for (const k of ['gateway', 'text-id', 'text-file', 'clip-id', 'site-id', 'site-origin', 'clip-sha256', 'big-id',
  'big-sha256', 'name-origin', 'name-key', 'site-dir', 'floe']) {
  if (!opt[k]) {
    console.error(`test.mjs: --${k} is required (see the comment at the top of the file)`);
    process.exit(2);
  }
}
const gateways = opt.gateway.map((g) => g.replace(/\/+$/, ''));
const gw = (i) => gateways[i % gateways.length];
const textId = opt['text-id'];
const clipId = opt['clip-id'];
const siteId = opt['site-id'];
const siteOrigin = opt['site-origin'];
const textBytes = fs.readFileSync(opt['text-file']);

const results = [];
const pageErrors = [];
let browser;
let otherOrigin;

function notRun() {
  while (results.length < 7) {
    console.log(`FAIL ${results.length + 1} not run`);
    results.push({ ok: false });
  }
}

function finish() {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`browser: ${passed} passed, ${failed} failed`);
  return failed === 0 && results.length > 0 ? 0 : 1;
}

const watchdog = setTimeout(async () => {
  console.log(`FAIL the whole test took longer than ${TOTAL_MS / 1000} s; stopping`);
  notRun();
  const code = finish();
  try { await withTimeout(browser?.close(), 3000, 'closing the browser'); } catch {}
  process.exit(code || 1);
}, TOTAL_MS);

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    Promise.resolve(promise).finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms); }),
  ]);
}

async function check(number, name, body) {
  const started = Date.now();
  try {
    const detail = await withTimeout(body(), CHECK_MS, name);
    results.push({ ok: true });
    console.log(`ok   ${number} ${name}${detail ? ': ' + detail : ''} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ ok: false });
    console.log(`FAIL ${number} ${name}: ${e && e.message ? e.message.split('\n')[0] : e} (${Date.now() - started} ms)`);
    if (pageErrors.length) console.log(`     page errors so far: ${pageErrors.slice(-5).join(' | ')}`);
  }
}

function assert(cond, message) { if (!cond) throw new Error(message); }

async function getJson(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/json' } });
  const body = await res.text();
  assert(res.ok, `GET ${url} answered ${res.status}: ${body.slice(0, 200)}`);
  return JSON.parse(body);
}

async function screenshot(page, name) {
  if (!opt.artifacts) return;
  try {
    fs.mkdirSync(opt.artifacts, { recursive: true });
    await page.screenshot({ path: path.join(opt.artifacts, name), fullPage: true, timeout: 5000 });
  } catch {}
}

/// A blank page on an origin that is not the gateway's: 127.0.0.2 (Linux loopback answers all of 127/8), or
/// another port of 127.0.0.1 where that address cannot be bound. Either way scheme+host+port differ.
async function startOtherOrigin() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end('<!doctype html><html><head><meta charset="utf-8"><title>other origin</title>'
      + '<link rel="icon" href="data:,"></head><body><p>a dApp on another origin</p></body></html>');
  });
  for (const host of ['127.0.0.2', '127.0.0.1']) {
    try {
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => { server.off('error', reject); resolve(); });
      });
      return { server, url: `http://${host}:${server.address().port}` };
    } catch {}
  }
  throw new Error('could not start the other-origin page server');
}

async function main() {
  otherOrigin = await startOtherOrigin();
  browser = await withTimeout(chromium.launch({
    executablePath: opt.chromium,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  }), 40_000, 'starting Chromium');
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  context.setDefaultTimeout(15_000);
  const newPage = async (label) => {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
    return page;
  };

  // (1) The status page shows what /v1/node/status says.
  await check(1, 'status page matches /v1/node/status', async () => {
    const page = await newPage('status page');
    try {
      const res = await page.goto(gw(0) + '/', { waitUntil: 'load' });
      assert(res && res.ok(), `GET ${gw(0)}/ answered ${res && res.status()}`);
      assert((await page.title()) === 'floe node', `page title is "${await page.title()}", not "floe node"`);
      await page.waitForFunction(() => document.querySelector('[data-testid="last-updated"]')?.hasAttribute('data-at-ms'));
      const read = () => page.evaluate(() => {
        const q = (id) => document.querySelector(`[data-testid="${id}"]`);
        return {
          peerId: q('peerId').textContent.trim(),
          knownPeers: Number(q('knownPeers').getAttribute('data-value')),
          sliversStored: Number(q('sliversStored').getAttribute('data-value')),
          bytesStored: Number(q('bytesStored').getAttribute('data-bytes')),
          bytesText: q('bytesStored').textContent.trim(),
          updatedAt: q('last-updated').getAttribute('data-at-ms'),
        };
      });
      // The node's figures may move between the page's fetch and ours (a peer found, a sliver stored): compare
      // again after the page's next refresh, a few times, before calling it a mismatch.
      let mismatch = '';
      for (let attempt = 0; attempt < 3; attempt++) {
        const shown = await read();
        const status = await getJson(gw(0) + '/v1/node/status');
        const diffs = ['peerId', 'knownPeers', 'sliversStored', 'bytesStored']
          .filter((k) => shown[k] !== status[k])
          .map((k) => `${k} shows ${JSON.stringify(shown[k])}, node says ${JSON.stringify(status[k])}`);
        if (!diffs.length) {
          assert(status.knownPeers >= gateways.length - 1, `the node knows ${status.knownPeers} peers`);
          return `peer ${shown.peerId.slice(0, 16)}…, ${shown.knownPeers} known peers, ${shown.sliversStored} slivers, `
            + `${shown.bytesText} (${shown.bytesStored} bytes)`;
        }
        mismatch = diffs.join('; ');
        await page.waitForFunction((before) =>
          document.querySelector('[data-testid="last-updated"]').getAttribute('data-at-ms') !== before,
        shown.updatedAt, { timeout: 8000 });
      }
      await screenshot(page, 'status-page.png');
      throw new Error(mismatch);
    } finally {
      await page.close();
    }
  });

  // (2) The lookup shows the text blob readable with one holder row per shard (through another node's page).
  await check(2, 'blob lookup shows the text blob readable with every holder', async () => {
    const page = await newPage('lookup');
    try {
      await page.goto(gw(1) + '/', { waitUntil: 'load' });
      await page.fill('[data-testid="lookup-input"]', textId);
      await page.click('[data-testid="lookup-button"]');
      await page.waitForSelector('[data-testid="lookup-health"], [data-testid="lookup-error"]');
      const err = await page.$('[data-testid="lookup-error"]');
      if (err) {
        await screenshot(page, 'lookup.png');
        throw new Error(`the lookup showed an error: ${(await err.textContent()).trim()}`);
      }
      const status = await getJson(`${gw(1)}/v1/blobs/${textId}/status`);
      const shown = await page.evaluate(() => {
        const q = (id) => document.querySelector(`[data-testid="${id}"]`);
        return {
          readable: q('lookup-health').getAttribute('data-readable'),
          health: q('lookup-health').textContent.trim(),
          size: Number(q('lookup-size')?.getAttribute('data-bytes')),
          contentType: q('lookup-content-type')?.textContent.trim(),
          rows: document.querySelectorAll('[data-testid="holder-row"]').length,
        };
      });
      if (shown.readable !== 'true' || shown.rows !== status.shards || shown.size !== textBytes.length) {
        await screenshot(page, 'lookup.png');
      }
      assert(shown.readable === 'true', `health shows "${shown.health}" (data-readable=${shown.readable})`);
      assert(shown.size === textBytes.length, `size shows ${shown.size}, the blob has ${textBytes.length} bytes`);
      assert(shown.rows === status.shards, `${shown.rows} holder rows, the blob has ${status.shards} shards`);
      return `"${shown.health}", ${shown.rows} holder rows = ${status.shards} shards, content type ${shown.contentType}`;
    } finally {
      await page.close();
    }
  });

  // (3) Another origin reads the blob with fetch(): whole, by Range, and sees Content-Range and ETag.
  await check(3, 'cross-origin fetch: whole blob, Range 2-5, Content-Range and ETag readable', async () => {
    const page = await newPage('other origin');
    try {
      await page.goto(otherOrigin.url + '/', { waitUntil: 'load' });
      const url = `${gw(2)}/v1/blobs/${textId}`;
      const got = await page.evaluate(async (url) => {
        const out = { origin: location.origin };
        try {
          const whole = await fetch(url, { cache: 'no-store' });
          out.wholeStatus = whole.status;
          out.wholeType = whole.headers.get('content-type');
          out.etag = whole.headers.get('etag');
          out.wholeBytes = Array.from(new Uint8Array(await whole.arrayBuffer()));
          const part = await fetch(url, { cache: 'no-store', headers: { Range: 'bytes=2-5' } });
          out.rangeStatus = part.status;
          out.contentRange = part.headers.get('content-range');
          out.rangeEtag = part.headers.get('etag');
          out.rangeBytes = Array.from(new Uint8Array(await part.arrayBuffer()));
        } catch (e) {
          out.error = String(e && e.message || e);
        }
        return out;
      }, url);
      assert(got.origin !== new URL(url).origin, `the page's origin ${got.origin} is the gateway's`);
      assert(!got.error, `fetch from ${got.origin} failed: ${got.error} (CORS headers missing?)`);
      assert(got.wholeStatus === 200, `whole fetch answered ${got.wholeStatus}`);
      assert(Buffer.from(got.wholeBytes).equals(textBytes),
        `whole fetch returned ${got.wholeBytes.length} bytes that differ from the ${textBytes.length} stored`);
      assert(got.rangeStatus === 206, `Range fetch answered ${got.rangeStatus}, not 206`);
      const want = textBytes.subarray(2, 6);
      assert(Buffer.from(got.rangeBytes).equals(want),
        `Range fetch returned ${JSON.stringify(Buffer.from(got.rangeBytes).toString())}, want ${JSON.stringify(want.toString())}`);
      const wantRange = `bytes 2-5/${textBytes.length}`;
      assert(got.contentRange === wantRange, `Content-Range read by JS is ${JSON.stringify(got.contentRange)}, want "${wantRange}"`);
      assert(got.etag, 'the ETag header is not readable by JS (Access-Control-Expose-Headers?)');
      return `from ${got.origin}: ${got.wholeBytes.length} bytes equal, 206 "${got.contentRange}", ETag ${got.etag}, `
        + `Content-Type ${got.wholeType}`;
    } finally {
      await page.close();
    }
  });

  // (4) A <video> on another origin plays the WebM clip from the gateway and seeks to 2 s.
  await check(4, 'cross-origin <video> plays the clip and seeks to 2 s', async () => {
    const page = await newPage('video');
    try {
      await page.goto(otherOrigin.url + '/', { waitUntil: 'load' });
      const src = `${gw(3)}/v1/blobs/${clipId}`;
      // What the media stack asked the gateway for: Chromium opens media with `Range: bytes=0-` and expects 206.
      const media = [];
      page.on('response', async (r) => {
        if (r.url() !== src) return;
        const range = await r.request().headerValue('range').catch(() => null);
        media.push(`${r.request().method()} ${range || 'no Range'} -> ${r.status()}`);
      });
      const got = await page.evaluate(async (src) => {
        const log = [];
        const video = document.createElement('video');
        video.muted = true;
        video.playsInline = true;
        video.preload = 'auto';
        // CORS mode, as a dApp that draws frames to a canvas would use it: the gateway's
        // Access-Control-Allow-Origin has to be on the media's Range answers too.
        video.crossOrigin = 'anonymous';
        for (const ev of ['loadedmetadata', 'canplay', 'playing', 'seeking', 'seeked', 'error', 'stalled']) {
          video.addEventListener(ev, () => log.push(`${ev}@${video.currentTime.toFixed(2)}`));
        }
        document.body.appendChild(video);
        const failed = () => video.error ? `media error ${video.error.code}: ${video.error.message}` : null;
        const waitFor = (cond, ms, what) => new Promise((resolve, reject) => {
          const started = performance.now();
          const tick = () => {
            if (failed()) return reject(new Error(failed()));
            if (cond()) return resolve();
            if (performance.now() - started > ms) return reject(new Error(`${what} within ${ms / 1000} s`));
            setTimeout(tick, 50);
          };
          tick();
        });
        try {
          let playing = false;
          video.addEventListener('playing', () => { playing = true; });
          video.src = src;
          video.play().catch((e) => log.push(`play() rejected: ${e.name}`));
          await waitFor(() => playing && video.currentTime > 0, 12000, 'no playback');
          const playedTo = video.currentTime;
          video.pause();
          let seekedAt = null;
          video.addEventListener('seeked', () => { seekedAt = video.currentTime; }, { once: true });
          video.currentTime = 2;
          await waitFor(() => seekedAt !== null, 10000, 'no seeked event');
          // Playback goes on from the new position.
          video.play().catch((e) => log.push(`play() rejected: ${e.name}`));
          await waitFor(() => video.currentTime > seekedAt + 0.1, 8000, 'no playback after the seek');
          return { ok: true, playedTo, seekedAt, after: video.currentTime, duration: video.duration,
            size: `${video.videoWidth}x${video.videoHeight}`, log };
        } catch (e) {
          return { ok: false, error: String(e.message || e), readyState: video.readyState,
            networkState: video.networkState, currentTime: video.currentTime, log };
        }
      }, src);
      if (!got.ok) {
        await screenshot(page, 'video.png');
        throw new Error(`${got.error} (readyState ${got.readyState}, networkState ${got.networkState}, `
          + `currentTime ${got.currentTime}; events ${got.log.join(' ')}; requests ${media.join(', ') || 'none seen'})`);
      }
      assert(Math.abs(got.seekedAt - 2) < 0.25, `seeked to ${got.seekedAt}, not about 2 s`);
      assert(media.some((m) => m.endsWith('-> 206')), `no media request was answered 206: ${media.join(', ') || 'none seen'}`);
      return `${got.size}, ${got.duration.toFixed(2)} s; played to ${got.playedTo.toFixed(2)} s, `
        + `seeked to ${got.seekedAt.toFixed(2)} s, went on to ${got.after.toFixed(2)} s; requests ${media.join(', ')}`;
    } finally {
      await page.close();
    }
  });
  await checkSite(context, newPage);
  await checkVerifier(newPage);
  await checkName(context, newPage);
}

/// (5) The site, from node 3 (node 0 published it).
async function checkSite(context, newPage) {
  await check(5, 'a site loads from another node: types, script, image, video seek, 404 page, cached revisit', async () => {
    const page = await newPage('site');
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const seen = new Map(); // url -> {status, type, cached}
    const fromCache = new Set(); // request IDs the browser answered from its cache
    cdp.on('Network.requestServedFromCache', (e) => fromCache.add(e.requestId));
    cdp.on('Network.responseReceived', (e) => {
      const r = e.response;
      seen.set(r.url, { status: r.status, type: r.mimeType,
        cached: Boolean(r.fromDiskCache || r.fromMemoryCache || fromCache.has(e.requestId)),
        sent: Object.keys(r.requestHeaders || {}).join(' ') });
    });
    try {
      // On the gateway's origin a site's pages are sandboxed (an opaque origin of their own).
      const shared = `${gw(3)}/v1/sites/${siteId}/`;
      const sandboxed = await page.goto(shared, { waitUntil: 'load' });
      assert(sandboxed && sandboxed.status() === 200, `GET ${shared} answered ${sandboxed && sandboxed.status()}`);
      const csp = sandboxed.headers()['content-security-policy'] || '';
      assert(csp.includes('sandbox') && !csp.includes('allow-same-origin'), `the shared-origin page's policy is "${csp}"`);
      assert(await page.evaluate(() => document.body.dataset.script) === 'ran', 'the script did not run in the sandbox');
      // On its own origin (node 3's gateway, {label}.localhost) the site is what the rest checks.
      const base = siteOrigin;
      seen.clear();
      const res = await page.goto(base, { waitUntil: 'load' });
      assert(res && res.status() === 200, `GET ${base} answered ${res && res.status()}`);
      assert(!(res.headers()['content-security-policy'] || '').includes('sandbox'), 'the own-origin page is sandboxed');
      const got = await page.evaluate(async () => {
        const video = document.getElementById('clip');
        const logo = document.getElementById('logo');
        const waitFor = (cond, ms, what) => new Promise((resolve, reject) => {
          const started = performance.now();
          const tick = () => {
            if (video.error) return reject(new Error(`media error ${video.error.code}`));
            if (cond()) return resolve();
            if (performance.now() - started > ms) return reject(new Error(`${what} within ${ms / 1000} s`));
            setTimeout(tick, 50);
          };
          tick();
        });
        try {
          video.play().catch(() => {});
          await waitFor(() => video.currentTime > 0, 12000, 'no playback');
          video.pause();
          let seekedAt = null;
          video.addEventListener('seeked', () => { seekedAt = video.currentTime; }, { once: true });
          video.currentTime = 2;
          await waitFor(() => seekedAt !== null, 10000, 'no seeked event');
          return { ok: true, script: document.body.dataset.script, logo: logo.naturalWidth,
            color: getComputedStyle(document.querySelector('h1')).color, seekedAt, origin: String(location.origin) };
        } catch (e) {
          return { ok: false, error: String(e.message || e) };
        }
      });
      if (!got.ok) { await screenshot(page, 'site.png'); throw new Error(got.error); }
      assert(got.script === 'ran', 'the site\'s script did not run');
      assert(got.logo === 40, `the logo is ${got.logo} px wide, not 40`);
      assert(got.color === 'rgb(0, 128, 128)', `the stylesheet did not apply (h1 is ${got.color})`);
      assert(Math.abs(got.seekedAt - 2) < 0.25, `seeked to ${got.seekedAt}`);
      const want = { '': 'text/html', 'style.css': 'text/css', 'app.js': 'text/javascript', 'logo.svg': 'image/svg+xml',
        'media/clip.webm': 'video/webm' };
      for (const [file, type] of Object.entries(want)) {
        const r = seen.get(base + file);
        assert(r, `the browser never fetched ${file || '/'}`);
        assert(r.type === type, `${file || '/'} arrived as ${r.type}, not ${type}`);
      }
      const missing = await page.goto(base + 'no/such/page', { waitUntil: 'load' });
      assert(missing.status() === 404, `a missing page answered ${missing.status()}`);
      assert(await page.$('#missing'), 'the site\'s 404 page was not shown');
      // A second visit: every file from the browser's cache, or revalidated with 304.
      seen.clear();
      await page.goto(base, { waitUntil: 'load' });
      const again = ['', 'style.css', 'app.js', 'logo.svg'].map((f) => [f, seen.get(base + f)]);
      const fetched = again.filter(([, r]) => r && !r.cached && r.status !== 304).map(([f, r]) => `${f || '/'} ${r.status} ${JSON.stringify(r)}`);
      assert(!fetched.length, `fetched again in full on the second visit: ${fetched.join(', ')}`);
      const how = again.map(([f, r]) => `${f || '/'} ${r ? (r.cached ? 'cache' : r.status) : 'no request (cache)'}`);
      return `origin ${got.origin}, script ran, logo 40 px, video seeked to ${got.seekedAt.toFixed(2)} s; second visit: ${how.join(', ')}`;
    } finally {
      await page.close();
    }
  });
}

/// A gateway that lies: forwards to `upstream` and flips a byte in every sliver answer and in the metadata's first
/// segment root. Answers reads from any origin, as a gateway does.
async function startLiar(upstream) {
  const server = http.createServer(async (req, res) => {
    try {
      const got = await fetch(upstream + req.url);
      let body = Buffer.from(await got.arrayBuffer());
      if (req.url.includes('/slivers/') && body.length > 0) {
        body[body.length >> 1] ^= 0x01;
      } else if (req.url.endsWith('/metadata') && got.ok) {
        const meta = JSON.parse(body.toString());
        meta.segmentRoots[0] = (meta.segmentRoots[0][0] === '0' ? '1' : '0') + meta.segmentRoots[0].slice(1);
        body = Buffer.from(JSON.stringify(meta));
      }
      res.writeHead(got.status, { 'content-type': got.headers.get('content-type') || 'application/octet-stream',
        'access-control-allow-origin': '*' });
      res.end(body);
    } catch (e) {
      res.writeHead(502, { 'access-control-allow-origin': '*' });
      res.end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/// (6) A page of the site verifies the clip through a liar and honest gateways.
async function checkVerifier(newPage) {
  await check(6, 'a site page reads the clip with the WebAssembly verifier through a lying gateway', async () => {
    const liar = await startLiar(gw(0));
    const page = await newPage('verifier');
    try {
      await page.goto(siteOrigin + 'verify.html', { waitUntil: 'load' });
      await page.waitForFunction(() => document.getElementById('state')?.textContent === 'ready');
      const honest = await page.evaluate(([gateways, id]) => window.verify(gateways, id),
        [[liar.url, gw(1), gw(2), gw(3)], clipId]);
      assert(honest.ok, `the verified read failed: ${honest.error}`);
      assert(honest.sha256 === opt['clip-sha256'], `the verified read returned other bytes (sha256 ${honest.sha256})`);
      assert(honest.report.rejected >= 1, 'no sliver from the liar was refused');
      assert(honest.report.metadataRefused === 1, `the liar's metadata was refused ${honest.report.metadataRefused} times`);
      const lied = await page.evaluate(([gateways, id]) => window.verify(gateways, id), [[liar.url], clipId]);
      assert(!lied.ok, 'a read through the liar alone returned bytes');
      // 16 MiB, for the throughput.
      const big = await page.evaluate(([gateways, id]) => window.verify(gateways, id),
        [[liar.url, gw(1), gw(2), gw(3)], opt['big-id']]);
      assert(big.ok, `the verified read of 16 MiB failed: ${big.error}`);
      assert(big.sha256 === opt['big-sha256'], 'the verified read of 16 MiB returned other bytes');
      return `clip: ${honest.length} bytes exact, ${honest.report.rejected} sliver(s) and the liar's metadata refused; `
        + `16 MiB: exact in ${big.seconds.toFixed(2)} s (${(big.length / 1e6 / big.seconds).toFixed(1)} MB/s, `
        + `${big.report.rejected} refused); the liar alone: ${lied.error}`;
    } finally {
      await page.close();
      liar.server.close();
      liar.server.closeAllConnections?.();
    }
  });
}

let code = 1;
try {
  await main();
} catch (e) {
  console.log(`FAIL setting up: ${e && e.message ? e.message.split('\n')[0] : e}`);
} finally {
  notRun();
  code = finish();
  clearTimeout(watchdog);
  try { await withTimeout(browser?.close(), 5000, 'closing the browser'); } catch {}
  otherOrigin?.server.close();
  otherOrigin?.server.closeAllConnections?.();
}
process.exit(code);

async function checkName(context, newPage) {
  await check(7, 'a named site: its own origin, revalidated on a second visit, the new version after an update', async () => {
    const base = opt['name-origin'];
    const page = await newPage('named site');
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const seen = new Map();
    const fromCache = new Set();
    cdp.on('Network.requestServedFromCache', (e) => fromCache.add(e.requestId));
    // What the network answered: a revalidated navigation reaches the page as the cached 200, the raw 304 only
    // in the extra info.
    const raw = new Map(); // requestId -> status on the wire
    cdp.on('Network.responseReceivedExtraInfo', (e) => raw.set(e.requestId, e.statusCode));
    cdp.on('Network.responseReceived', (e) => {
      const r = e.response;
      seen.set(r.url, { id: e.requestId, status: r.status,
        cached: Boolean(r.fromDiskCache || r.fromMemoryCache || fromCache.has(e.requestId)) });
    });
    const wire = (r) => (r && raw.has(r.id) ? raw.get(r.id) : r && r.status);
    try {
      const res = await page.goto(base, { waitUntil: 'load' });
      assert(res && res.status() === 200, `GET ${base} answered ${res && res.status()}`);
      assert(res.headers()['cache-control'] === 'public, no-cache', `a page by name has Cache-Control "${res.headers()['cache-control']}"`);
      const first = await page.textContent('h1');
      assert(first === 'A site from the swarm', `the named site's heading is "${first}"`);
      // A second visit revalidates (a name moves) and gets 304: nothing is sent again.
      seen.clear();
      await page.goto(base, { waitUntil: 'load' });
      const again = ['', 'style.css', 'app.js'].map((f) => [f, seen.get(base + f)]);
      const full = again.filter(([, r]) => r && !r.cached && wire(r) !== 304).map(([f, r]) => `${f || '/'} ${wire(r)}`);
      assert(!full.length, `fetched again in full on the second visit: ${full.join(', ')}`);
      // A new version through node 3 (which then knows the move at once); the same address shows it.
      const index = path.join(opt['site-dir'], 'index.html');
      fs.writeFileSync(index, fs.readFileSync(index, 'utf8').replace('A site from the swarm', 'Version two'));
      const out = execFileSync(opt.floe, ['--json', 'site', 'update', opt['site-dir'], '--name-key', opt['name-key'],
        '--gateway', gw(3)], { timeout: 20_000 });
      const moved = JSON.parse(out.toString());
      assert(moved.name && moved.name.sequence === 2, `floe site update answered ${out}`);
      const after = await page.goto(base, { waitUntil: 'load' });
      assert(after && after.status() === 200, `after the update ${base} answered ${after && after.status()}`);
      const second = await page.textContent('h1');
      assert(second === 'Version two', `after the update the heading is "${second}"`);
      const how = again.map(([f, r]) => `${f || '/'} ${r ? (r.cached ? 'cache' : wire(r)) : 'cache'}`);
      return `second visit: ${how.join(', ')}; after floe site update: "${second}" (sequence 2)`;
    } finally {
      await page.close();
    }
  });
}
