/**
 * A real local HTTP receiver for webhook tests: it records every request and answers as the
 * test scripts it (a status, a redirect, or no answer at all until released).
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Received = { headers: IncomingHttpHeaders; body: string; path: string; at: number };
/** What to answer the n-th request (0-based): a status, a redirect, or 'hang'. */
export type Script = (n: number, r: Received) => number | 'hang' | { redirect: string };

export type Receiver = {
  url: string;
  received: Received[];
  /** Ids of the deliveries received, in order (webhook-id headers). */
  ids(): string[];
  script: Script;
  /** Answers 200 to every request left hanging. */
  release(): void;
  close(): Promise<void>;
};

export async function startReceiver(script: Script = () => 200): Promise<Receiver> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const receiver: Receiver = {
    url: '',
    received,
    ids: () => received.map((r) => String(r.headers['webhook-id'])),
    script,
    release: () => {
      for (const res of hanging.splice(0)) if (!res.destroyed) res.writeHead(200).end();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = {
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        path: req.url ?? '/',
        at: Date.now(),
      };
      const answer = receiver.script(received.length, r);
      received.push(r);
      if (answer === 'hang') hanging.push(res);
      else if (typeof answer === 'number') res.writeHead(answer).end();
      else res.writeHead(302, { location: answer.redirect }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}
