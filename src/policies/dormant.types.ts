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
  /** When the daily run last applied the policy, and what it did (null: never). */
  last_run_at: Date | null;
  last_run: PolicyRun | null;
};

/** What one daily run did with an org's policy. */
export type PolicyRun = {
  action: DormantAction;
  /** Keys revoked (or notified about). */
  acted: number;
  /** Dormant keys a revoking run left alone (the last org:admin key, the policy's own key). */
  spared: number;
  /** Why a revoking policy only notified. */
  downgraded: string | null;
  /** Why the run did not apply the policy (usage not complete, a failure); null: it did. */
  skipped: string | null;
};

export type PolicyInput = Pick<
  StoredPolicy,
  'enabled' | 'after_days' | 'action' | 'exclude_environments' | 'exclude_scopes'
>;
export type PolicyView = Omit<StoredPolicy, 'updated_at'> & { updated_at: Date | null };

/** What selects the keys a run acts on. */
export type DormantRule = {
  afterDays: number;
  excludeEnvironments: string[];
  excludeScopes: string[];
  /** Only keys whose scopes are all in this list; null: every key. */
  coveredBy: string[] | null;
};

/**
 * Why a revoking run leaves a dormant key alone: the org's last active `org:admin` key (SPEC §9:
 * an org never locks itself out), or the key the policy acts for (revoking it would end the
 * policy's authority).
 */
export const SPARE_REASONS = {
  last_admin_key: "the org's last active org:admin key",
  policy_author: 'the key that saved the policy: the policy acts with its authority',
} as const;
export type SpareReason = keyof typeof SPARE_REASONS;
