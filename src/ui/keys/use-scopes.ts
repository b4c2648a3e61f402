/**
 * Scopes for the table (and key names for the audit trail). The usage rows (SPEC §5.1) do not carry them, so the page reads the key
 * list (GET …/api-keys, 500 a page: two requests at 1,000 keys) once per session and joins by
 * id; a row whose key is not in that list (created since) triggers one fresh read. A key
 * without keys:read still sees its table, with the reason the scopes are hidden. Held above the
 * pages, so going to a key's page and back reads nothing again.
 */
import { useCallback, useRef, useState } from 'preact/hooks';
import type { ApiError, ApiKey, Client } from '../api.ts';
import { asApiError } from '../hooks.ts';

export type Scopes = {
  /** The key's scopes, null while unknown (loading, or not readable with this key). */
  of: (keyId: string) => string[] | null;
  /** The whole key (its name for the audit trail), null while unknown. */
  key: (keyId: string) => ApiKey | null;
  /** Asks for the scopes of these keys; a no-op for those known or already asked for. */
  want: (keyIds: string[]) => void;
  error: ApiError | null;
};

type State = { byId: Map<string, ApiKey>; error: ApiError | null };

export function useScopes(client: Client, orgId: string): Scopes {
  const [state, setState] = useState<State>({ byId: new Map(), error: null });
  const inFlight = useRef(false);
  // Ids a completed read did not find: asked once, never again (no loop on a vanished key).
  const asked = useRef(new Set<string>());

  // A new identity whenever the state changes: a caller that wanted ids during a read asks
  // again when it ends, and gets whatever is still missing.
  const want = useCallback(
    (keyIds: string[]) => {
      if (state.error || inFlight.current) return;
      const missing = keyIds.filter((id) => !state.byId.has(id) && !asked.current.has(id));
      if (missing.length === 0) return;
      inFlight.current = true;
      client
        .keysById(orgId)
        .then(
          (byId) => {
            for (const id of missing) asked.current.add(id);
            setState({ byId, error: null });
          },
          (error: unknown) => setState((s) => ({ ...s, error: asApiError(error) })),
        )
        .finally(() => {
          inFlight.current = false;
        });
    },
    [client, orgId, state],
  );

  return {
    of: (keyId) => state.byId.get(keyId)?.scopes ?? null,
    key: (keyId) => state.byId.get(keyId) ?? null,
    want,
    error: state.error,
  };
}
