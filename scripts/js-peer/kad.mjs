// A js-libp2p peer that joins a floe swarm through one floe node: it dials that node, pings it, then walks floe's
// Kademlia (protocol /floe/kad/1, js-libp2p's kad-dht in client mode) for the peers closest to its own ID and looks
// one named floe peer up by ID. Prints what it found; exits non-zero unless it pinged the bootstrap node, learnt
// at least MIN_PEERS other peers through the DHT and found the named peer, all within 45 s.
//
//   cd scripts/js-peer && npm ci && node kad.mjs /ip4/.../tcp/4001/p2p/BOOTSTRAP TARGET_PEER_ID MIN_PEERS

// js-libp2p 3.x calls Promise.withResolvers, which Node 20 lacks; libp2p is imported after this polyfill.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const DEADLINE_MS = 45_000
const [bootstrap, target, minText] = process.argv.slice(2)
const minPeers = Number(minText ?? '1')
if (bootstrap == null || !bootstrap.includes('/p2p/') || target == null || !(minPeers >= 1)) {
  console.error('usage: node kad.mjs /ip4/.../tcp/PORT/p2p/BOOTSTRAP TARGET_PEER_ID MIN_PEERS')
  process.exit(2)
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')

const deadline = setTimeout(() => {
  console.error(`FAIL: not done within ${DEADLINE_MS / 1000} s`)
  process.exit(1)
}, DEADLINE_MS)
deadline.unref()

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    // kad-dht checks new routing table contacts with a ping of its own; with the default of one outbound ping
    // stream per connection ours would wait behind it.
    ping: ping({ maxOutboundStreams: 4 }),
    // floe's own DHT, never the public one; the testbed's addresses are all private or reserved, so keep them.
    dht: kadDHT({ protocol: '/floe/kad/1', clientMode: true, peerInfoMapper: passthroughMapper })
  }
})

let failed = false
try {
  const connection = await node.dial(multiaddr(bootstrap))
  const boot = connection.remotePeer
  console.log(`connected to ${boot} (${connection.remoteAddr})`)
  // A ping racing kad-dht's own first contact with the peer can stall; it is retried on a fresh stream.
  let rtt
  for (let attempt = 1; rtt == null; attempt++) {
    try {
      rtt = await node.services.ping.ping(boot, { signal: AbortSignal.timeout(3_000) })
    } catch (err) {
      console.log(`ping attempt ${attempt}: ${err?.name}: ${err?.message}`)
      if (attempt === 3) throw err
    }
  }
  console.log(`ping: ${rtt} ms`)

  // Kademlia learns the bootstrap node's protocols from identify; give it a moment to enter the routing table.
  for (let i = 0; i < 50 && node.services.dht.routingTable.size === 0; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  console.log(`routing table after identify: ${node.services.dht.routingTable.size} peer(s)`)

  const found = new Set()
  for await (const event of node.services.dht.getClosestPeers(node.peerId.toMultihash().bytes)) {
    if (event.name === 'PEER_RESPONSE') {
      console.log(`  ${event.from} answered with ${event.closer.length} closer peer(s)`)
      for (const peer of event.closer) found.add(peer.id.toString())
    } else if (event.name === 'FINAL_PEER') {
      found.add(event.peer.id.toString())
    }
  }
  found.delete(node.peerId.toString())
  found.delete(boot.toString())
  console.log(`peers learnt through floe's DHT besides the bootstrap node: ${found.size}`)

  const info = await node.peerRouting.findPeer(peerIdFromString(target)).catch(err => err)
  const addrs = info instanceof Error ? [] : info.multiaddrs.map(String)
  console.log(addrs.length > 0
    ? `found ${target} at ${addrs.join(', ')}`
    : `FAILED to find ${target}: ${info?.message ?? 'no addresses'}`)

  if (found.size < minPeers) {
    console.log(`FAIL: learnt ${found.size} peers, wanted at least ${minPeers}`)
    failed = true
  }
  if (addrs.length === 0) failed = true
  console.log(failed ? 'FAIL' : 'OK')
} catch (err) {
  failed = true
  console.error(`FAIL: ${err?.name}: ${err?.message}`)
} finally {
  await node.stop().catch(() => {})
}
process.exit(failed ? 1 : 0)
