/**
 * SPEC §9: property-based fuzzing of every operation of the served OpenAPI document. Whatever
 * arrives, the answer is never a 5xx, every error is problem+json with a stable code, and no
 * answer carries key material. A new endpoint in the document is fuzzed without a new test.
 *
 * Deterministic: the seed is fixed unless FUZZ_SEED is set; FUZZ_RUNS changes the runs per
 * property. A failure prints the shrunk request, its answer and the seed to rerun with.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiDocument } from '../src/http/openapi.ts';
import { generateKey } from '../src/keys/key-format.ts';
import { createOrg, type TestOrg } from '../src/testing/factories.ts';
import { useTestApp } from '../src/testing/harness.ts';
import { documentOperations, type Operation } from '../src/testing/openapi-fuzz.ts';
import {
  echoFailures,
  exchange,
  exchangeFailures,
  failureReport,
  leakingFields,
  reportFailures,
} from '../src/testing/openapi-fuzz-checks.ts';
import { fixturesFor, withTargetKey, type Fx } from '../src/testing/openapi-fuzz-fixtures.ts';
import {
  framingCases,
  framingFailures,
  framingReport,
} from '../src/testing/openapi-fuzz-framing.ts';
import { edgeCases, reflections } from '../src/testing/openapi-fuzz-matrices.ts';
import { CATEGORIES } from '../src/testing/openapi-fuzz-requests.ts';

const app = useTestApp();
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 20_240_611);
const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

function seedOf(name: string): number {
  let h = BASE_SEED | 0;
  for (const c of name) h = (Math.imul(h, 31) + c.charCodeAt(0)) | 0;
  return h;
}

const NAMED = documentOperations(openApiDocument() as never);
let served: Operation[] = [];
let foreign: TestOrg;
const unknownKey = generateKey('live').plaintext;
/** What each framing case got, across operations: printed once, for the report. */
const framingSeen = new Map<string, Set<string>>();

describe('fuzzing every operation of /openapi.json (SPEC §9)', () => {
  beforeAll(async () => {
    const res = await app().client.get('/openapi.json');
    served = documentOperations(res.body);
    foreign = await createOrg(app().client, 'Fuzz foreign');
  });

  afterAll(() => {
    console.log(framingReport(framingSeen));
  });

  it('fuzzes what the app serves: every operation it documents', () => {
    expect(served.length).toBeGreaterThanOrEqual(10);
    expect(served.map((o) => o.id)).toEqual(NAMED.map((o) => o.id));
  });

  describe.each(NAMED.map((o) => [o.id]))('%s', (id) => {
    const op = () => served.find((o) => o.id === id) ?? expect.fail(`${id} is not served`);
    let fx: Fx;
    beforeAll(async () => {
      fx = await fixturesFor(app(), op(), { foreignKey: foreign.adminKey, unknownKey });
    });

    // First, while the fixture keys are still active (the fuzzing below revokes and rotates them).
    it('answers every declared input at its boundary values without 5xx, as problem+json', async () => {
      const failures = await exchangeFailures(app().baseUrl, edgeCases(op(), fx), fx.names);
      reportFailures(`${id}: boundary values answered badly`, failures);
    });

    it.each(Object.keys(CATEGORIES))(
      'answers hostile %s input without 5xx, as problem+json, without key material',
      async (category) => {
        // A fresh target key per category: an earlier category may have revoked the last one.
        const local = await withTargetKey(app().client, fx, category);
        const arb = CATEGORIES[category as keyof typeof CATEGORIES](op(), local);
        const details = await fc.check(
          fc.asyncProperty(arb, async (req) => {
            const failure = await exchange(app().baseUrl, req, local.names);
            if (failure) throw new Error(failure);
          }),
          {
            seed: seedOf(`${id} ${category}`),
            numRuns: RUNS,
            interruptAfterTimeLimit: 40_000,
            markInterruptAsFailure: false,
          },
        );
        if (details.failed) expect.fail(`${id} [${category}] ${failureReport(details, BASE_SEED)}`);
      },
    );

    it('never echoes key material the client sent, wherever it sent it', async () => {
      const failures: string[] = [];
      for (const key of [fx.org.adminKey, `sk_test_${'B'.repeat(38)}`]) {
        failures.push(...(await echoFailures(app().baseUrl, reflections(op(), fx, key), fx.names)));
      }
      reportFailures(`${id}: key material echoed`, failures);
    });

    it('answers malformed or oversized HTTP framing without 5xx or a hang', async () => {
      const cases = framingCases(op(), fx);
      const failures = await framingFailures(app().baseUrl, op().method, cases, framingSeen);
      reportFailures(`${id}: framing answered badly`, failures);
    });
  });

  it('writes no key material to its logs while fuzzed', () => {
    const fields = app().logs.flatMap((line) => {
      const parsed = JSON.parse(line) as { msg?: string };
      return leakingFields(parsed).map((f) => `${parsed.msg ?? '?'}: ${f}`);
    });
    expect([...new Set(fields)]).toEqual([]);
  });
});
