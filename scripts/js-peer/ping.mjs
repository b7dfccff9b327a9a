// A js-libp2p peer that dials a floe node, pings it three times on the fresh connection and prints the agent
// version that identify reported. Exits non-zero if any ping fails or nothing succeeded within 20 s.
//
//   cd scripts/js-peer && npm ci && node ping.mjs /ip4/127.0.0.1/tcp/PORT/p2p/PEERID
//
// Ping and identify run with js-libp2p's default settings on purpose: this is what any js peer does.

// js-libp2p 3.x calls Promise.withResolvers, which Node 20 lacks. Static imports are hoisted, so libp2p is
// imported dynamically below, after this polyfill.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const PINGS = 3
const DEADLINE_MS = 20_000

const target = process.argv[2]
if (target == null || !target.includes('/p2p/')) {
  console.error('usage: node ping.mjs /ip4/127.0.0.1/tcp/PORT/p2p/PEERID')
  process.exit(2)
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { multiaddr } = await import('@multiformats/multiaddr')

let failed = false
const deadline = setTimeout(() => {
  console.error(`FAIL: not done within ${DEADLINE_MS / 1000} s`)
  process.exit(1)
}, DEADLINE_MS)
deadline.unref()

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})

try {
  const addr = multiaddr(target)
  const identified = new Promise(resolve => {
    node.addEventListener('peer:identify', evt => resolve(evt.detail))
  })
  const started = Date.now()
  const connection = await node.dial(addr)
  const peer = connection.remotePeer
  console.log(`connected to ${peer} in ${Date.now() - started} ms (${connection.remoteAddr})`)

  let ok = 0
  for (let i = 1; i <= PINGS; i++) {
    try {
      const rtt = await node.services.ping.ping(peer)
      ok++
      console.log(`ping ${i}: ok, ${rtt} ms`)
    } catch (err) {
      failed = true
      console.log(`ping ${i}: FAILED: ${err?.name}: ${err?.message}`)
    }
  }

  // Identify runs by itself on every new connection; wait a little for it if it has not finished yet.
  await Promise.race([identified, new Promise(resolve => setTimeout(resolve, 2_000))])
  let agent = '(unknown)'
  try {
    const record = await node.peerStore.get(peer)
    const raw = record.metadata.get('AgentVersion')
    if (raw != null) agent = new TextDecoder().decode(raw)
  } catch (err) {
    agent = `(not in peer store: ${err?.message})`
  }
  console.log(`remote agent version: ${agent}`)
  console.log(`connections to peer: ${node.getConnections(peer).length}`)
  if (ok === 0) failed = true
  console.log(failed ? `FAIL: ${ok} of ${PINGS} pings answered` : `OK: ${ok} of ${PINGS} pings answered`)
} catch (err) {
  failed = true
  console.error(`FAIL: ${err?.name}: ${err?.message}`)
} finally {
  await node.stop().catch(() => {})
}
process.exit(failed ? 1 : 0)
