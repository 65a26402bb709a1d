// Node smtp-server as a discard sink for the benchmark: onData reads the stream to the end.
//   node sink.js --port 2525 [--cert c.pem --key k.pem] [--no-greeting-delay]
// Prints "READY <port>" once listening; SIGTERM/SIGINT end it.
'use strict';
const fs = require('fs');
const { SMTPServer } = require('smtp-server');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = opt('host', '127.0.0.1');
const port = Number(opt('port', '2525'));
const options = {
  name: 'bench.local',
  disableReverseLookup: true,
  authOptional: true,
  size: 64 * 1024 * 1024,
  logger: false,
  onData(stream, session, callback) {
    let total = 0;
    stream.on('data', (chunk) => { total += chunk.length; });
    stream.on('end', () => callback());
  },
};
if (opt('cert')) {
  options.cert = fs.readFileSync(opt('cert'));
  options.key = fs.readFileSync(opt('key'));
}
if (args.includes('--no-greeting-delay')) {
  // smtp-server waits a fixed 100 ms before the greeting to catch early talkers; this
  // variant greets at once (the same init() without the timer), to show what the delay costs.
  const { SMTPConnection } = require('smtp-server/lib/smtp-connection');
  SMTPConnection.prototype.init = function init() {
    this._setListeners(() => {
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      this.connectionReady();
    });
  };
}
const server = new SMTPServer(options);
server.on('error', (err) => { console.error('server error', err.message); });
server.listen(port, host, 4096, () => {
  console.log('READY ' + server.server.address().port);
});
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
