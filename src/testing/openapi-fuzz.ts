/**
 * Test helpers driven by the served OpenAPI document: the operations it lists and the wire form
 * of the values sent to them. The raw HTTP client (openapi-fuzz-wire.ts) and the answer checks
 * (openapi-fuzz-checks.ts) are re-exported, since tests such as authz-matrix import them here.
 */
export {
  send,
  sendBytes,
  serialise,
  type WireRequest,
  type WireResponse,
} from './openapi-fuzz-wire.ts';
export {
  answerViolations,
  describeExchange,
  leaks,
  problemViolations,
} from './openapi-fuzz-checks.ts';

export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  $ref?: string;
};

export type QueryParam = { name: string; required: boolean; schema: JsonSchema };

export type Operation = {
  /** `GET /api/orgs/{orgId}`: the name tests and failures use. */
  id: string;
  method: string;
  path: string;
  pathParams: string[];
  query: QueryParam[];
  body: JsonSchema | undefined;
  /** The security schemes the operation accepts; empty for public operations. */
  schemes: string[];
  /** `x-required-scopes`, the machine-readable form; undefined when the document lacks it. */
  declaredScopes: string[] | undefined;
  /** The scope named by the description's "Requires scope `x`" sentence, if any. */
  describedScopes: string[] | undefined;
};

const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'options', 'head', 'trace'];
type Doc = {
  paths: Record<string, Record<string, any>>;
  components?: { schemas?: Record<string, JsonSchema> };
  security?: Record<string, string[]>[];
};

/** Inlines `#/components/schemas/…` references (the document has no cycles; depth-guarded). */
function deref(doc: Doc, schema: JsonSchema | undefined, depth = 0): JsonSchema | undefined {
  if (!schema || depth > 20) return schema;
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    return deref(doc, doc.components?.schemas?.[name], depth + 1);
  }
  const out: JsonSchema = { ...schema };
  if (schema.properties) {
    out.properties = Object.fromEntries(
      Object.entries(schema.properties).map(([k, v]) => [k, deref(doc, v, depth + 1) ?? {}]),
    );
  }
  if (schema.items) out.items = deref(doc, schema.items, depth + 1);
  for (const key of ['anyOf', 'oneOf'] as const) {
    if (schema[key]) out[key] = schema[key].map((s) => deref(doc, s, depth + 1) ?? {});
  }
  return out;
}

const SCOPE_SENTENCE = /Requires scope `([^`]+)`/g;

/** Every operation of the document: paths × methods, in document order. */
export function documentOperations(doc: Doc): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params: any[] = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const security: Record<string, string[]>[] = op.security ?? doc.security ?? [];
      const described = [...String(op.description ?? '').matchAll(SCOPE_SENTENCE)].map(
        (m) => m[1] ?? '',
      );
      const declared: unknown = op['x-required-scopes'];
      ops.push({
        id: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        pathParams: [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] ?? ''),
        query: params
          .filter((p) => p.in === 'query')
          .map((p) => ({
            name: p.name,
            required: !!p.required,
            schema: deref(doc, p.schema) ?? {},
          })),
        body: deref(doc, op.requestBody?.content?.['application/json']?.schema),
        schemes: [...new Set(security.flatMap((s) => Object.keys(s)))],
        declaredScopes: Array.isArray(declared) ? declared.map(String) : undefined,
        describedScopes: described.length > 0 ? described : undefined,
      });
    }
  }
  return ops;
}

/** Substitutes `{name}` with the given wire text (already percent-encoded as the test wants). */
export function fillPath(template: string, values: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => values[name] ?? '');
}

/** Percent-encodes every byte of the UTF-8 form outside unreserved (lone surrogates → U+FFFD). */
export function wireEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
