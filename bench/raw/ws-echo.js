// Baseline for bench/control.bench.ts: the least a WebSocket JSON-RPC server can do — parse each message and
// answer its params as the result. Prints its port on stdout.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { output: m.params?.input ?? null } }));
  });
});
wss.on('listening', () => console.log(JSON.stringify({ port: wss.address().port })));
