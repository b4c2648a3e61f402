/**
 * A request the parser refuses, pipelined behind one still being answered on the same keep-alive
 * connection: the answer in flight is the only one the client gets, whole, and the connection
 * then closes. A 400 written at the parser error would be read as the earlier request's answer.
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpServer } from './server.ts';

let close: (() => Promise<void>) | undefined;
afterEach(async () => close?.());

/** A server whose POST answers only after the parser refused what followed it. */
async function serve(answer: (res: ServerResponse, refused: Promise<unknown>) => Promise<void>) {
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => void answer(res, refused));
  });
  const refused = once(server, 'clientError');
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return (server.address() as AddressInfo).port;
}

/**
 * Sends `bytes`, then `afterFirstData` once the server has started answering; returns all the
 * bytes received until the server closes.
 */
function exchange(port: number, bytes: string, afterFirstData?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      if (chunks.length === 0 && afterFirstData !== undefined) socket.write(afterFirstData);
      chunks.push(c);
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(bytes);
  });
}

const POST = 'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi';
const GARBAGE = 'NOT HTTP AT ALL\r\n\r\n';

describe('a malformed request pipelined behind one in flight', () => {
  it('sends the earlier request its own answer, never the 400, then closes', async () => {
    const port = await serve(async (res, refused) => {
      await refused;
      res.end('answered');
    });
    const received = await exchange(port, POST + GARBAGE);
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).toMatch(/\r\nConnection: close\r\n/i);
    expect(received.endsWith('\r\n\r\nanswered')).toBe(true);
    expect(received).not.toContain(' 400 ');
  });

  it('lets an answer whose head is already out finish before closing', async () => {
    const port = await serve(async (res, refused) => {
      res.writeHead(200, { 'content-length': '12' });
      res.write('first ');
      await refused;
      res.end('second');
    });
    const received = await exchange(port, POST, GARBAGE);
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received.endsWith('\r\n\r\nfirst second')).toBe(true);
    expect(received).not.toContain(' 400 ');
  });
});
