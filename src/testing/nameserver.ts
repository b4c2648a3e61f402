/**
 * Local UDP "nameservers" for webhook DNS tests: one that swallows every query (a nameserver
 * that never answers), and one that answers A queries with fixed addresses (and AAAA with none,
 * or not at all).
 */
import { createSocket, type RemoteInfo } from 'node:dgram';

export type Nameserver = {
  /** `127.0.0.1:port`, for Resolver.setServers. */
  server: string;
  /** Queries received so far (each try of each lookup counts). */
  queries(): number;
  close(): Promise<void>;
};

type Answer = (query: Buffer) => Buffer | null;

async function start(answer: Answer): Promise<Nameserver> {
  const socket = createSocket('udp4');
  let queries = 0;
  socket.on('message', (msg: Buffer, from: RemoteInfo) => {
    queries++;
    const reply = answer(msg);
    if (reply) socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries: () => queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** A nameserver that receives every query and never answers one. */
export const startSilentNameserver = () => start(() => null);

/** The end of the question section (after QNAME, QTYPE and QCLASS). */
function questionEnd(query: Buffer): number {
  let i = 12;
  while (i < query.length && query[i] !== 0) i += (query[i] ?? 0) + 1;
  return i + 5;
}

/**
 * A nameserver answering every A query with `ipv4`, and AAAA with no record (or, with
 * `dropAaaa`, never: some nameservers and middleboxes drop AAAA queries).
 */
export function startAnsweringNameserver(
  ipv4: string,
  o: { dropAaaa?: boolean } = {},
): Promise<Nameserver> {
  return start((query) => {
    const end = questionEnd(query);
    const isA = query.readUInt16BE(end - 4) === 1;
    if (!isA && o.dropAaaa) return null;
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // the id
    header.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, NOERROR
    header.writeUInt16BE(1, 4); // one question
    header.writeUInt16BE(isA ? 1 : 0, 6); // answers
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    const rdata = Buffer.from(ipv4.split('.').map(Number));
    const question = query.subarray(12, end);
    return Buffer.concat([header, question, ...(isA ? [answer, rdata] : [])]);
  });
}
