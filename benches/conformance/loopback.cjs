// Preloaded into the suite's origin server (node --require): its server calls
// `listen(port)`, which binds every interface. This makes any listen that names no host
// bind 127.0.0.1 only.
'use strict'
const net = require('node:net')

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const first = args[0]
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback]): add the host when none is given.
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
    args[0] = Number(first)
  } else if (first !== null && typeof first === 'object' && first.path === undefined &&
             first.host === undefined && first.fd === undefined && first._handle === undefined) {
    args[0] = { ...first, host: '127.0.0.1' }
  }
  return listen.apply(this, args)
}
