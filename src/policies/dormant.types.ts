export const DORMANT_ACTIONS = ['notify', 'revoke'] as const;
export type DormantAction = (typeof DORMANT_ACTIONS)[number];

/** A policy's bounds (SPEC §10): a week to ten years. */
export const MIN_AFTER_DAYS = 7;
export const MAX_AFTER_DAYS = 3650;

/** The org's policy as stored (snake case: it is also the API's shape). */
export type StoredPolicy = {
  enabled: boolean;
  after_days: number;
  action: DormantAction;
  exclude_environments: string[];
  exclude_scopes: string[];
  /** Scopes of the key that set it; null when that key was an org:admin key (covers all). */
  acting_scopes: string[] | null;
  updated_at: Date;
  updated_by_key_id: string | null;
};

/** What selects the keys a run acts on. */
export type DormantRule = {
  afterDays: number;
  excludeEnvironments: string[];
  excludeScopes: string[];
  /** Only keys whose scopes are all in this list; null: every key. */
  coveredBy: string[] | null;
};
