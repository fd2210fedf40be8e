// A second gRPC stack for bench/bench_grpc_floor.py (grpc-js on Node):
//   node floor.js server [HOLD_MS] -> serves EncoderService.Classify with a canned answer (after HOLD_MS
//                                    milliseconds idle, 0 by default), prints "baseline gRPC server on port n"
//   node floor.js client PORT     -> prints "ready", then for each line of seconds on stdin the JSON
//                                    list of back-to-back Classify latencies (s); "0" ends it.
// The request is the bench's: a 16x64x64x3 uint8 clip (196,608 bytes) for branch b1.
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const def = loader.loadSync('trajlab/encoder/v1/encoder.proto', {includeDirs: [PROTO_ROOT], keepCase: true});
const Service = grpc.loadPackageDefinition(def).trajlab.encoder.v1.EncoderService;
const LIMITS = {'grpc.max_send_message_length': 16 << 20, 'grpc.max_receive_message_length': 16 << 20};
const NAMES = ['linear', 'circular', 'helical', 'parabolic'];

function measureHold(holdMs, n, done) {
  // What the hold really takes here (a timer fires late or early): printed before the port.
  const took = [];
  const once = () => {
    const t0 = performance.now();
    setTimeout(() => {
      took.push(performance.now() - t0);
      if (took.length < n) once();
      else { took.sort((a, b) => a - b); console.log('a hold takes (ms) ' + took[n >> 1].toFixed(4)); done(); }
    }, holdMs);
  };
  once();
}

function serve(holdMs) {
  const server = new grpc.Server(LIMITS);
  const answer = {class_name: NAMES[0], probabilities: [0.25, 0.25, 0.25, 0.25], class_names: NAMES};
  server.addService(Service.service, {
    Classify: (_call, cb) => (holdMs > 0 ? setTimeout(() => cb(null, answer), holdMs) : cb(null, answer)),
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) { console.error(err.message); process.exit(1); }
    console.log('baseline gRPC server on port ' + port);  // encoder_baselines.SERVER_READY
  });
}

async function client(port) {
  const stub = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), LIMITS);
  const clips = [];
  for (let k = 0; k < 16; k++) {
    const b = Buffer.alloc(16 * 64 * 64 * 3);
    for (let i = 0; i < b.length; i++) b[i] = (i * 7 + k * 13) & 255;
    clips.push(b);
  }
  const call = (k) => new Promise((resolve, reject) => stub.Classify(
    {model: {branch: 'b1'}, clip: {frames: 16, height: 64, width: 64, channels: 3, pixels: clips[k % 16], fps: 8}},
    {deadline: Date.now() + 30000}, (e, r) => (e ? reject(e) : resolve(r))));
  for (let k = 0; k < 20; k++) await call(k);  // connected and warm before the clock starts
  console.log('ready');
  const lines = require('readline').createInterface({input: process.stdin});
  for await (const line of lines) {
    const secs = parseFloat(line);
    if (!(secs > 0)) break;
    const out = [];
    const end = performance.now() + secs * 1000;
    for (let k = 0; performance.now() < end; k++) {
      const t0 = performance.now();
      await call(k);
      out.push((performance.now() - t0) / 1000);
    }
    console.log(JSON.stringify(out));
  }
  process.exit(0);
}

if (process.argv[2] === 'server') {
  const holdMs = parseFloat(process.argv[3] || '0');
  if (holdMs > 0) measureHold(holdMs, 100, () => serve(holdMs));
  else serve(0);
}
else if (process.argv[2] === 'client') client(process.argv[3]).catch((e) => { console.error(e.message); process.exit(1); });
else { console.error('usage: node floor.js server [HOLD_MS] | client PORT'); process.exit(2); }
